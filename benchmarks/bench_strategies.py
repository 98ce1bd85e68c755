"""``strategies.instructions`` against ``hypothesis.extra.lark.from_lark`` on the same grammar file.

Two measurements per domain, both strategies drawn the same way (a ``@given`` test, or ``find``):

throughput
    examples per second over ``--examples`` draws (generation phase only, no database), and the
    share of the drawn strings that are instructions of the grammar (parse with calls; checked on
    the first ``--parse-checks`` strings).
shrinking
    ``find`` the simplest example of a property that fails on some feature: "no instruction
    mentions tool X" (``--tool DOMAIN=TOOL``), and, on the copy of the chem grammar with a planted
    bug (``tests/grammars/planted``), "no instruction has two readings with different calls" (both
    strategies) and "every sample parses back to its own calls" (ours: the soundness check).
    Reported: the shrunk text, its size in characters and in parse-tree nodes (the grammar's own
    parse), and the time. A strategy that has not finished after ``--cap`` seconds stops checking
    (the property holds from then on) and reports what it had.

``from_lark`` gets the compiled Lark object of the grammar; it draws every terminal of our grammars
itself (``explicit=`` is only needed for ``%declare``d terminals, which they do not have).

    python benchmarks/bench_strategies.py [--domains example chem singlecell] [--out OUT.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, find, given, settings  # noqa: E402
from hypothesis.errors import FlakyFailure, HypothesisWarning, NoSuchExample, Unsatisfiable  # noqa: E402
from hypothesis.extra.lark import from_lark  # noqa: E402

import grammar_engine  # noqa: E402
from grammar_engine import GrammarEngineError  # noqa: E402
from grammar_engine.strategies import instructions  # noqa: E402
from grammar_engine.testing import SoundnessError, check_parses_back  # noqa: E402

DEFAULT_TOOLS = {"example": "logp", "chem": "tanimoto_similarity", "singlecell": "rank_genes_groups"}
QUIET = dict(database=None, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

warnings.filterwarnings("ignore", category=HypothesisWarning)


def strategies_for(grammar: grammar_engine.Grammar) -> dict[str, Any]:
    return {"instructions": instructions(grammar), "from_lark": from_lark(grammar._lark)}


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else value.instruction


def parsed(grammar: grammar_engine.Grammar, text: str) -> Any:
    try:
        return grammar.parse(text)
    except (GrammarEngineError, RecursionError):
        return None


def tree_nodes(grammar: grammar_engine.Grammar, text: str) -> int | None:
    found = parsed(grammar, text)
    return None if found is None else sum(1 for _ in found.tree.iter_subtrees())


# -- throughput ----------------------------------------------------------------------------------------


def throughput(grammar: grammar_engine.Grammar, name: str, strategy: Any, examples: int, parse_checks: int) -> dict[str, Any]:
    drawn: list[str] = []

    @settings(max_examples=examples, phases=[Phase.generate], **QUIET)
    @given(strategy)
    def draw(value: Any) -> None:
        drawn.append(text_of(value))

    started = time.perf_counter()
    draw()
    elapsed = time.perf_counter() - started
    checked = drawn[:parse_checks]
    valid = sum(1 for t in checked if (p := parsed(grammar, t)) is not None and p.calls)
    return {
        "strategy": name, "examples": len(drawn), "seconds": round(elapsed, 2),
        "examples_per_second": round(len(drawn) / elapsed, 1) if elapsed else None,
        "median_chars": sorted(len(t) for t in drawn)[len(drawn) // 2] if drawn else None,
        "parse_checked": len(checked), "are_instructions": round(valid / len(checked), 3) if checked else None,
    }


# -- shrinking -----------------------------------------------------------------------------------------


def capped(condition: Callable[[Any], bool], cap: float) -> tuple[Callable[[Any], bool], dict[str, Any]]:
    """``condition`` until ``cap`` seconds have passed; afterwards the answers already given (so the
    final replay of the best example still holds) and False for anything new (so find() winds down)."""
    state: dict[str, Any] = {"start": time.perf_counter(), "calls": 0, "capped": False}
    seen: dict[Any, bool] = {}

    def wrapped(value: Any) -> bool:
        key = value if isinstance(value, str) else json.dumps([value.instruction, value.calls])
        if key in seen:
            return seen[key]
        if time.perf_counter() - state["start"] > cap:
            state["capped"] = True
            return False
        state["calls"] += 1
        seen[key] = result = bool(condition(value))
        return result

    return wrapped, state


def shrink_once(grammar: grammar_engine.Grammar, strategy: Any, condition: Callable[[Any], bool],
                cap: float, max_examples: int, seed: int) -> dict[str, Any]:
    wrapped, state = capped(condition, cap)
    started = time.perf_counter()
    try:
        found = text_of(find(strategy, wrapped, random=random.Random(seed),
                             settings=settings(max_examples=max_examples, **dict(QUIET, derandomize=False))))
    except (NoSuchExample, Unsatisfiable, FlakyFailure):
        found = None
    return {
        "seed": seed, "found": found is not None, "text": found, "chars": len(found) if found is not None else None,
        "tree_nodes": tree_nodes(grammar, found) if found is not None else None,
        "seconds": round(time.perf_counter() - started, 1), "property_calls": state["calls"],
        "capped": state["capped"],
    }


def shrink(grammar: grammar_engine.Grammar, name: str, strategy: Any, condition: Callable[[Any], bool],
           cap: float, max_examples: int, seeds: int = 1) -> dict[str, Any]:
    """``find`` the simplest example of ``strategy`` satisfying ``condition`` (on the drawn value),
    once per seed; the row shows the median run (by characters) and keeps every run."""
    runs = [shrink_once(grammar, strategy, condition, cap, max_examples, seed) for seed in range(seeds)]
    found = sorted((r for r in runs if r["found"]), key=lambda r: r["chars"])
    best = found[(len(found) - 1) // 2] if found else runs[0]
    return {
        "strategy": name, "found": f"{len(found)}/{len(runs)}", "text": best["text"], "chars": best["chars"],
        "tree_nodes": best["tree_nodes"], "chars_per_run": [r["chars"] for r in runs],
        "seconds": round(sum(r["seconds"] for r in runs) / len(runs), 1),
        "capped": any(r["capped"] for r in runs), "runs": runs,
    }


def mentions(grammar: grammar_engine.Grammar, tool: str) -> Callable[[str], bool]:
    def condition(text: str) -> bool:
        found = parsed(grammar, text)
        return found is not None and any(c["name"] == tool for c in found.calls)

    return condition


def ambiguous(grammar: grammar_engine.Grammar) -> Callable[[str], bool]:
    def condition(text: str) -> bool:
        try:
            readings = grammar.parse_all(text, limit=8)
        except GrammarEngineError:
            return False
        return len({json.dumps(r.calls, sort_keys=True) for r in readings}) > 1

    return condition


def planted_parse_back(grammar: grammar_engine.Grammar, cap: float, max_examples: int) -> dict[str, Any]:
    """Our soundness check on the planted grammar, with the default (full) shrink."""
    started = time.perf_counter()
    try:  # on the tool whose phrase is planted: the copy also has the chem grammar's own faults
        check_parses_back(grammar, tools=["tanimoto_similarity"], settings=settings(max_examples=max_examples, **QUIET))
    except SoundnessError as error:
        elapsed = time.perf_counter() - started
        return {"strategy": "instructions (check_parses_back)", "found": True, "text": error.instruction,
                "chars": len(error.instruction), "tree_nodes": tree_nodes(grammar, error.instruction),
                "seconds": round(elapsed, 1), "fault": error.fault, "message": str(error)}
    return {"strategy": "instructions (check_parses_back)", "found": False,
            "seconds": round(time.perf_counter() - started, 1)}


# -- report ----------------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    for row in rows:
        out.append("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="*", default=["example", "chem", "singlecell"])
    parser.add_argument("--examples", type=int, default=200, help="draws per throughput run")
    parser.add_argument("--parse-checks", type=int, default=50, help="drawn strings parsed to count instructions")
    parser.add_argument("--tool", action="append", default=[], metavar="DOMAIN=TOOL",
                        help="the tool of the 'no instruction mentions TOOL' property")
    parser.add_argument("--cap", type=float, default=180.0, help="seconds per shrink run")
    parser.add_argument("--max-examples", type=int, default=500, help="max_examples of each find()")
    parser.add_argument("--seeds", type=int, default=3, help="find() runs per shrink measurement (median shown)")
    parser.add_argument("--ambiguity", nargs="*", default=["example", "chem"],
                        help="domains to shrink 'no instruction has two readings' on (parse_all is slow)")
    parser.add_argument("--no-planted", action="store_true", help="skip the planted-bug runs")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    tools = dict(DEFAULT_TOOLS, **dict(t.split("=", 1) for t in args.tool))
    results: dict[str, Any] = {"throughput": [], "shrink": []}

    for domain in args.domains:
        started = time.perf_counter()
        try:
            grammar = grammar_engine.load(ROOT / "grammars" / domain)
        except GrammarEngineError as error:
            print(f"{domain}: does not load ({error}); skipped", file=sys.stderr)
            continue
        print(f"== {domain} (loaded in {time.perf_counter() - started:.1f}s)", flush=True)
        examples = args.examples if domain == "example" else max(20, args.examples // 4)
        for name, strategy in strategies_for(grammar).items():
            row = {"domain": domain, **throughput(grammar, name, strategy, examples,
                                                  args.parse_checks if domain != "singlecell" else 10)}
            results["throughput"].append(row)
            print(f"   throughput {name}: {row['examples_per_second']}/s, instructions {row['are_instructions']}",
                  flush=True)
        tool = tools.get(domain)
        if tool:
            for name, strategy in strategies_for(grammar).items():
                # our samples carry their calls; from_lark's strings are parsed to find theirs
                condition = (lambda v, x=tool: x in v.tools) if name == "instructions" else \
                    (lambda v, c=mentions(grammar, tool): c(v))
                row = {"domain": domain, "property": f"no instruction mentions {tool}",
                       **shrink(grammar, name, strategy, condition, args.cap, args.max_examples,
                                args.seeds if domain != "singlecell" else 1)}
                results["shrink"].append(row)
                print(f"   shrink {name}: {row['text']!r} ({row['chars']} chars, {row['tree_nodes']} nodes, "
                      f"{row['seconds']}s a run; chars per run {row['chars_per_run']})", flush=True)
        if domain in args.ambiguity:
            for name, strategy in strategies_for(grammar).items():
                row = {"domain": domain, "property": "no instruction has two readings with different calls",
                       **shrink(grammar, name, strategy, lambda v, c=ambiguous(grammar): c(text_of(v)),
                                args.cap, args.max_examples, args.seeds if domain == "example" else 1)}
                results["shrink"].append(row)
                print(f"   ambiguity {name}: {row['text']!r} ({row['chars']} chars, {row['tree_nodes']} nodes, "
                      f"{row['seconds']}s a run; chars per run {row['chars_per_run']})", flush=True)

    if not args.no_planted:
        planted = grammar_engine.load(ROOT / "tests" / "grammars" / "planted")
        print("== planted (a copy of chem with a wrong-argument expansion)", flush=True)
        row = {"domain": "planted", "property": "every sample parses back to its own calls (tanimoto only)",
               **planted_parse_back(planted, args.cap, args.max_examples)}
        results["shrink"].append(row)
        print(f"   parse-back instructions: {row.get('text')!r} ({row.get('chars')} chars, "
              f"{row.get('tree_nodes')} nodes, {row['seconds']}s)", flush=True)
        for name, strategy in strategies_for(planted).items():
            row = {"domain": "planted", "property": "no instruction has two readings with different calls",
                   **shrink(planted, name, strategy, lambda v, c=ambiguous(planted): c(text_of(v)),
                            args.cap, args.max_examples, 1)}
            results["shrink"].append(row)
            print(f"   ambiguity {name}: {row['text']!r} ({row['chars']} chars, {row['tree_nodes']} nodes, "
                  f"{row['seconds']}s)", flush=True)

    print()
    print(table(results["throughput"], ["domain", "strategy", "examples", "examples_per_second", "median_chars",
                                        "are_instructions"]))
    print()
    print(table([{**r, "text": repr(r.get("text") or "")[1:-1][:70]} for r in results["shrink"]],
                ["domain", "property", "strategy", "found", "chars", "tree_nodes", "chars_per_run", "seconds",
                 "capped", "text"]))
    planted_rows = [r for r in results["shrink"] if r.get("message")]
    if planted_rows:
        print("\nThe planted bug, as the soundness check reports it:\n")
        print(planted_rows[0]["message"])
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
