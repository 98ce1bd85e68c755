"""``python -m training train|predict|evaluate ...`` (the same commands as ``grammar-engine``)."""

import sys

from .cli import main

sys.exit(main())
