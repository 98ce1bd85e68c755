"""Instructions parsed per second: ``grammar.parse`` against plain Lark on the same grammar and input.

The overhead of typing and call extraction (expansion recording, position tracking, value
conversion, schema validation) over Lark itself must stay under 25%. On Earley grammars
``grammar.parse`` answers with the pruned Earley parser whenever that finds one derivation (the
full parser's tree, built over only the rules that can complete on the text), so there it is
faster than plain Lark, and the ratio shows by how much. Both sides run in this one process,
interleaved, on the same instructions; the ratio is what is reported.

    python benchmarks/bench_parse.py [--domains example chem singlecell] [--rounds 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import lark

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grammar_engine  # noqa: E402
from grammar_engine.recordings import Record, read_instructions  # noqa: E402

EXAMPLE_INPUTS = [
    "normalize to 10k then log1p, pca 50 comps",
    "molecular weight and logp of aspirin and caffeine",
    "before pca, log transform the data",
    "leiden clustering at resolution 0.5; plot CST3, NKG7 and leiden",
    "run pca with fifty components",
    "mw of glucose then logp of it",
]


def parseable_inputs(grammar: grammar_engine.Grammar) -> list[str]:
    """The recorded instructions that parse (the example domain has a fixed list)."""
    texts = EXAMPLE_INPUTS if grammar.recorded_path is None else [
        item.instruction for item in read_instructions(grammar.recorded_path) if isinstance(item, Record)]
    out = []
    for text in texts:
        try:
            grammar.parse(text)
            out.append(grammar_engine.normalize_instruction(text))
        except grammar_engine.InstructionParseError:
            pass
    return out


def plain_lark(grammar: grammar_engine.Grammar) -> lark.Lark:
    """The same grammar in plain Lark: same parser and lexer, case-insensitive, nothing else."""
    options = dict(start="start", parser=grammar.parser_kind, g_regex_flags=re.IGNORECASE,
                   import_paths=[grammar._loader], source_path=grammar.source, maybe_placeholders=False)
    if grammar.parser_kind == "lalr":
        options["lexer"] = "contextual"
    return lark.Lark(grammar.text, **options)


def rate(fn, texts: list[str], min_seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while True:
        for text in texts:
            fn(text)
        count += len(texts)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="*", default=["example", "chem", "singlecell"])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per side")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum time per round")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'domain':<12} {'inputs':>6} {'lark/s':>9} {'engine/s':>9} {'overhead':>9} {'speed-up':>9}")
    for domain in args.domains:
        path = ROOT / "grammars" / domain
        if not (path / "tools.json").is_file():
            continue
        grammar = grammar_engine.load(path)
        texts = parseable_inputs(grammar)
        if not texts:
            continue
        base = plain_lark(grammar)
        lark_rates, engine_rates = [], []
        for _ in range(args.rounds):  # interleave so drift hits both sides alike
            lark_rates.append(rate(base.parse, texts, args.seconds))
            engine_rates.append(rate(grammar.parse, texts, args.seconds))
        lark_best, engine_best = max(lark_rates), max(engine_rates)
        overhead = lark_best / engine_best - 1
        rows.append({"domain": domain, "inputs": len(texts), "parser": grammar.parser_kind,
                     "lark_per_s": lark_best, "engine_per_s": engine_best, "overhead": overhead})
        print(f"{domain:<12} {len(texts):>6} {lark_best:>9.0f} {engine_best:>9.0f} {overhead:>8.1%} "
              f"{engine_best / lark_best:>8.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    worst = max((r["overhead"] for r in rows), default=0.0)
    print(f"worst overhead {worst:.1%} (target < 25%)")
    return 0 if worst < 0.25 else 1


if __name__ == "__main__":
    raise SystemExit(main())
