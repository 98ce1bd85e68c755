"""Verified samples per second: the chart parser against Lark's forest, on the same samples.

The exact verifier parses every generated sample back. It reads the derivations either from
:class:`grammar_engine.chart_parser.ChartParser` (the default) or from Lark's own Earley forest
over the same pruned rules (``Verifier.use_chart = False``). Both verifiers check the very same
derivations, interleaved in rounds in this one process, and must reach the same decision on every
sample; the ratio of the times is what is reported.

    python benchmarks/bench_verify.py [--domains chem singlecell] [--samples 400] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grammar_engine  # noqa: E402
from grammar_engine.sampling import sample  # noqa: E402
from grammar_engine.verification import build_verifier  # noqa: E402


def derivations(grammar: grammar_engine.Grammar, n: int, strategy: str, seed: int) -> list[Any]:
    """``n`` generated (derivation, calls) pairs, not yet verified."""
    stream = sample(grammar, None, strategy=strategy, seed=seed, verify="off")
    out: list[Any] = []
    while len(out) < n:
        _, built = stream._build(None)
        if built is not None:
            out.append(built)
    return out


def bench_domain(name: str, n: int, rounds: int, strategy: str) -> dict[str, Any]:
    grammar = grammar_engine.load(ROOT / "grammars" / name)
    built = derivations(grammar, n, strategy, seed=17)
    chart, lark_forest = build_verifier(grammar), build_verifier(grammar)
    lark_forest.use_chart = False
    seconds = {"chart": 0.0, "lark": 0.0}
    decisions: dict[str, list[str]] = {"chart": [], "lark": []}
    chart.check(*built[0])  # build the chart's tables outside the timing
    for round_ in range(rounds):
        for side, verifier in (("chart", chart), ("lark", lark_forest)) if round_ % 2 == 0 else (
                ("lark", lark_forest), ("chart", chart)):
            start = time.perf_counter()
            got = [verifier.check(derivation, calls) for derivation, calls in built]
            seconds[side] += time.perf_counter() - start
            decisions[side] = got
    agree = sum(a == b for a, b in zip(decisions["chart"], decisions["lark"]))
    result = {
        "domain": name, "strategy": strategy, "samples": n, "rounds": rounds,
        "mean_chars": round(sum(len(d.text) for d, _ in built) / n, 1),
        "chart_per_second": round(n * rounds / seconds["chart"], 1),
        "lark_per_second": round(n * rounds / seconds["lark"], 1),
        "speedup": round(seconds["lark"] / seconds["chart"], 2),
        "same_decisions": agree, "accepted": sum(d == "" for d in decisions["chart"]),
    }
    print(f"{name:11s} {strategy:8s} {n} samples ({result['mean_chars']} chars): chart {result['chart_per_second']}/s, "
          f"Lark forest {result['lark_per_second']}/s, {result['speedup']}x; same decision on {agree}/{n}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", nargs="+", default=["chem", "singlecell"])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=["weighted", "uniform"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = [bench_domain(d, args.samples, args.rounds, s) for d in args.domains for s in args.strategies]
    print("\n| domain | strategy | mean chars | chart verified/s | Lark forest verified/s | speed-up | same decision |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['domain']} | {r['strategy']} | {r['mean_chars']} | {r['chart_per_second']} | {r['lark_per_second']} "
              f"| {r['speedup']}x | {r['same_decisions']}/{r['samples']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["same_decisions"] == r["samples"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
