"""Recovery on noisy instructions: how often a reading with skipped words is right, and how often wrong.

Each recorded instruction with gold calls gets one word inserted at a random place, and
:func:`grammar_engine.parse_with_recovery` reads it twice: as shipped (words that carry meaning,
:func:`grammar_engine.recovery.keeps_meaning`, are never skipped) and with ``skip_meaningful=True``
(any word may go). Two kinds of inserted word:

``filler``
    A word that adds nothing (``um``, ``basically``, ``kindly``): a right reading skips it.
``meaning``
    A word that changes the request (``not``, a number, an identifier such as ``donor_id``): no
    reading of the text is the gold one, so every answer counts as wrong, and declining is right.

Per domain, kind and setting it counts the instructions answered, right and wrong (answered with
calls other than the gold ones)::

    python benchmarks/bench_recovery.py [--domains singlecell chem] [--seeds 0] [--json OUT]  # 3 min
    python benchmarks/bench_recovery.py --seeds 0 1 2                                        # 8 min
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grammar_engine  # noqa: E402
from grammar_engine import InstructionParseError, parse_with_recovery  # noqa: E402
from grammar_engine.recordings import Record, read_instructions  # noqa: E402

FILLERS = ("um", "basically", "kindly", "quickly", "now", "really", "also", "hmm", "ok", "just")
MEANINGFUL = ("not", "never", "without", "3", "0.25", "donor_id", "CD8A")


def _key(calls: list[dict[str, Any]], grammar: grammar_engine.Grammar) -> str:
    return json.dumps(grammar.tools.normalize_calls(calls), sort_keys=True)


def measure(domain: str, seeds: list[int]) -> dict[str, dict[str, dict[str, int]]]:
    """Counts of answered, right and wrong readings per kind of inserted word and setting."""
    grammar = grammar_engine.load(ROOT / "grammars" / domain)
    records = [item for item in read_instructions(grammar.recorded_path, require_calls=True)
               if isinstance(item, Record) and item.calls]
    out: dict[str, dict[str, dict[str, int]]] = {}
    for kind, words in (("filler", FILLERS), ("meaning", MEANINGFUL)):
        for skip_meaningful in (False, True):
            counts = {"instructions": 0, "answered": 0, "right": 0, "wrong": 0}
            for seed in seeds:
                rng = random.Random(seed)
                for record in records:
                    tokens = record.instruction.split()
                    tokens.insert(rng.randrange(1, len(tokens) + 1), rng.choice(words))
                    counts["instructions"] += 1
                    try:
                        calls = parse_with_recovery(grammar, " ".join(tokens), skip_meaningful=skip_meaningful).calls
                    except InstructionParseError:
                        continue
                    counts["answered"] += 1
                    right = kind == "filler" and _key(calls, grammar) == _key(record.calls, grammar)
                    counts["right" if right else "wrong"] += 1
            out.setdefault(kind, {})["any word may go" if skip_meaningful else "shipped"] = counts
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", nargs="+", default=["singlecell", "chem"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="one pass over the recordings per seed, each with its own inserted words")
    parser.add_argument("--json", type=Path, default=None, help="write every count here")
    args = parser.parse_args(argv)
    results = {domain: measure(domain, args.seeds) for domain in args.domains}
    print("| domain | inserted word | setting | instructions | answered | right | wrong |")
    print("|---|---|---|---:|---:|---:|---:|")
    for domain, kinds in results.items():
        for kind, settings in kinds.items():
            for setting, c in settings.items():
                print(f"| {domain} | {kind} | {setting} | {c['instructions']} | {c['answered']} | {c['right']} "
                      f"| {c['wrong']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
