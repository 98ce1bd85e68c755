"""The ``grammar-engine`` command line.

Subcommands: ``check``, ``parse``, ``decompose``, ``graph``, ``run``, ``sample``, and, with the
``train`` extra, ``train``, ``predict``, ``evaluate``, ``pipeline``. Every user mistake ends
in a message naming the file (and line, column) plus a hint, and exit status 2; never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import GrammarCheckError, GrammarEngineError, InstructionParseError, Location
from .grammar import Grammar, load
from .recordings import Rejected, read_instructions
from .sampling import DEFAULT_SENTENCE_CASE, DEFAULT_SESSION_LENGTH, Casing, SessionStart

__all__ = ["main"]


def _print_err(message: str) -> None:
    print(message, file=sys.stderr)


def _load_checked(path: str) -> Grammar:
    return load(path)


def _recorded(grammar: Grammar) -> list[dict[str, Any]] | None:
    path = grammar.recorded_path
    if path is None:
        return None
    return [item.raw for item in read_instructions(path) if not isinstance(item, Rejected)]


# -- check ---------------------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    grammar = _load_checked(args.domain)
    report = grammar.check(_recorded(grammar))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for diagnostic in report.diagnostics:
            print(diagnostic)
        print(report.summary())
    return 0 if report.ok else 1


# -- parse ---------------------------------------------------------------------------------------

def cmd_parse(args: argparse.Namespace) -> int:
    from .recovery import parse_with_recovery

    grammar = load(args.domain)
    max_skips = 0 if args.strict else 3
    if args.text is not None:
        try:
            recovered = parse_with_recovery(grammar, args.text, max_skips=max_skips)
        except InstructionParseError as exc:
            _print_err(str(exc))
            return 1
        if recovered.skipped:
            _print_err("skipped to parse: " + ", ".join(f"{w.word!r} (column {w.column})" for w in recovered.skipped))
        print(json.dumps(recovered.calls, ensure_ascii=False))
        if args.tree:
            print(recovered.decomposition.tree.pretty())
        return 0
    if args.input is None or args.output is None:
        _print_err("parse needs --input IN.jsonl and --output OUT.jsonl (or --text 'an instruction')")
        return 2
    source = sys.stdin.buffer if args.input == "-" else args.input
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    counts = {"lines": 0, "parsed": 0, "recovered": 0, "rejected": 0, "bad": 0}
    try:
        for item in read_instructions(source):
            counts["lines"] += 1
            if isinstance(item, Rejected):
                # one output line per input line, in order: a bad line gets an error record
                counts["bad"] += 1
                _print_err(f"{args.input}:{item}")
                record: dict[str, Any] = {"id": item.id, "calls": [], "error": item.reason}
            else:
                try:
                    recovered = parse_with_recovery(grammar, item.instruction, max_skips=max_skips)
                    record = {"id": item.id, "calls": recovered.calls}
                    if recovered.skipped:
                        counts["recovered"] += 1
                        record["skipped"] = [w.to_dict() for w in recovered.skipped]
                    else:
                        counts["parsed"] += 1
                except InstructionParseError as exc:
                    counts["rejected"] += 1
                    record = {"id": item.id, "calls": [], "error": str(exc)}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    _print_err(f"{counts['lines']} lines: {counts['parsed']} parsed, {counts['recovered']} parsed with words "
               f"skipped, {counts['rejected']} not in the grammar, {counts['bad']} unreadable")
    return 0


# -- decompose -----------------------------------------------------------------------------------

def cmd_decompose(args: argparse.Namespace) -> int:
    from .decompose import decompose_file

    grammar = load(args.domain)
    source = args.input or grammar.recorded_path
    if source is None:
        _print_err(f"{args.domain}: no recorded.jsonl\n    hint: pass --input RECORDED.jsonl")
        return 2
    report = decompose_file(grammar, source)
    out_dir = Path(args.output) if args.output else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "decomposition.md").write_text(report.to_markdown(grammar), encoding="utf-8")
        (out_dir / "decomposition.json").write_text(json.dumps(report.to_dict(grammar), indent=2), encoding="utf-8")
        with open(out_dir / "calls.jsonl", "w", encoding="utf-8") as handle:
            for row in report.results:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{source}: {report.lines} lines, {report.instructions} instructions, "
          f"{report.parsed} parsed ({report.parse_rate:.1%}), "
          f"{report.correct}/{report.with_gold} match their gold calls ({report.accuracy:.1%})")
    used = sum(1 for e in grammar.table.expansions if not e.origin.startswith("__") and report.usage.get(e.index))
    total = sum(1 for e in grammar.table.expansions if not e.origin.startswith("__"))
    print(f"expansions used: {used}/{total}")
    for rejected in report.rejected:
        print(f"  rejected {rejected}")
    for item in report.mismatched:
        print(f"  mismatch line {item['line']}: {item['instruction']!r}\n    got  {json.dumps(item['calls'])}"
              f"\n    gold {json.dumps(item['gold'])}")
    if out_dir is not None:
        print(f"report written to {out_dir / 'decomposition.md'}")
    return 0


# -- graph ---------------------------------------------------------------------------------------

def cmd_graph(args: argparse.Namespace) -> int:
    from .graph_export import export_graph

    grammar = load(args.domain)
    written = export_graph(grammar, args.output, args.format)
    print(f"wrote {written}")
    return 0


# -- run -----------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from .executors import format_results, run_calls

    grammar = load(args.domain)
    try:
        calls = json.loads(Path(args.calls).read_text(encoding="utf-8"))
    except FileNotFoundError:
        _print_err(f"{args.calls}: no such file")
        return 2
    except json.JSONDecodeError as exc:
        _print_err(f"{args.calls}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")
        return 2
    if isinstance(calls, dict) and "calls" in calls:
        calls = calls["calls"]
    if not isinstance(calls, list):
        _print_err(f"{args.calls}: expected a JSON list of calls\n    hint: [{{\"name\": ..., \"arguments\": {{...}}}}]")
        return 2
    problems = [p for call in calls for p in grammar.tools.validate_call(call)]
    problems += grammar.tools.sequence_problems(calls)
    if problems:
        _print_err(f"{args.calls}: " + "; ".join(problems))
        return 2
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results = run_calls(grammar.domain, calls, workdir)
    print(format_results(results))
    return 0


# -- sample --------------------------------------------------------------------------------------

def cmd_sample(args: argparse.Namespace) -> int:
    from .corpus import write_corpus

    grammar = load(args.domain)
    manifest = write_corpus(grammar, args.output, n=args.n, strategy=args.strategy, seed=args.seed,
                            workers=args.workers, progress=not args.quiet, session_length=args.session_length,
                            sentence_case=args.sentence_case, until_covered=args.until_covered,
                            session_start=args.session_start, casing=args.casing)
    print(json.dumps({k: manifest[k] for k in ("domain", "strategy", "seed", "counts", "covering_head") if k in manifest}))
    return 0


# -- parser --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``grammar-engine`` (training subcommands when installed)."""
    parser = argparse.ArgumentParser(
        prog="grammar-engine",
        description="Tool-typed grammars -> decomposed recordings -> verified instruction corpora.",
    )
    parser.add_argument("--version", action="version", version=f"grammar-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="run the static checks and print the grammar's size")
    p.add_argument("domain", help="domain folder (grammars/<domain>) or .lark file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("parse", help="parse instructions into tool calls")
    p.add_argument("domain")
    p.add_argument("--input", help="JSONL of {id, instruction} ('-' for stdin)")
    p.add_argument("--output", help="JSONL of {id, calls} ('-' for stdout)")
    p.add_argument("--text", help="parse one instruction and print its calls")
    p.add_argument("--tree", action="store_true", help="with --text, also print the parse tree")
    p.add_argument("--strict", action="store_true",
                   help="never skip words: a line that does not parse gets no calls (by default a line that "
                        "parses once up to 3 words are skipped gets that reading, with the words in 'skipped'; "
                        "numbers, identifiers and negations are never skipped)")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("decompose", help="parse the recorded set and report parse rate, accuracy, usage")
    p.add_argument("domain")
    p.add_argument("--input", help="recorded JSONL (default: DOMAIN/recorded.jsonl)")
    p.add_argument("--output", help="folder for decomposition.md/.json and calls.jsonl")
    p.set_defaults(func=cmd_decompose)

    p = sub.add_parser("graph", help="export the derivation graph")
    p.add_argument("domain")
    p.add_argument("--format", choices=["graphml", "dot", "png"], default="graphml")
    p.add_argument("--output", required=True, help="file to write")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("run", help="execute a call list with the domain's real tools")
    p.add_argument("domain")
    p.add_argument("--calls", required=True, help="JSON file holding a list of calls")
    p.add_argument("--workdir", default="run-output", help="folder the tools may write in")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sample", help="generate a verified corpus")
    p.add_argument("domain")
    p.add_argument("-n", type=int, required=True, help="number of samples")
    p.add_argument("--strategy", choices=["weighted", "coverage", "uniform"], default="weighted")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="corpus folder")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--session-length", type=float, default=DEFAULT_SESSION_LENGTH, metavar="L",
                   help="mean instructions per session: each starts from the facts the earlier ones of its "
                        "session established (1, the default: every instruction starts from the session start)")
    p.add_argument("--session-start", choices=[s.value for s in SessionStart], default=None,
                   help="facts each session starts from: 'recorded' (the initial state plus what the recorded "
                        "instructions need before their calls; default) or 'initial' (the domain's initial "
                        "state; default for --strategy uniform)")
    p.add_argument("--casing", choices=[c.value for c in Casing], default=None,
                   help="how literal words are written: 'recorded' (in the forms and shares the recordings use, "
                        "UMAP as well as umap; default) or 'grammar' (as the grammar writes them; default for "
                        "--strategy uniform)")
    p.add_argument("--sentence-case", type=float, default=DEFAULT_SENTENCE_CASE, metavar="P",
                   help="share of instructions whose first letter is upper-cased where that changes no call")
    p.add_argument("--until-covered", action="store_true",
                   help="with --strategy coverage: stop once every target is covered or given up (-n is then a budget)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sample)

    try:
        from training.cli import register
    except ImportError:
        register = None
    if register is not None:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GrammarCheckError as exc:
        _print_err(str(exc))
        return 1
    except GrammarEngineError as exc:
        _print_err(f"error: {exc}")
        return 2
    except FileNotFoundError as exc:
        _print_err(f"{Location(str(exc.filename or ''))}: no such file\n    hint: check the path")
        return 2
    except KeyboardInterrupt:
        return 130
