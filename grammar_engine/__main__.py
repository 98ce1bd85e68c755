"""``python -m grammar_engine`` runs the command line."""

from .cli import main

raise SystemExit(main())
