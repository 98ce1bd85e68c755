"""Sampling: speed and coverage against hypothesis and fuzzingbook, validity at scale, memory.

One command measures everything in the same run (so ratios compare like with like) and prints
a table; ``--out DIR`` also gets ``bench_sampling.json`` and ``coverage.png``::

    python benchmarks/bench_sampling.py --out bench-out                 # quick (a few minutes)
    python benchmarks/bench_sampling.py --out bench-out --full          # 10,000-sample coverage,
                                                                        # 100,000-sample validity
    python benchmarks/bench_sampling.py --out bench-out --scale 1000000 # peak memory, 1 and 2 workers
    python benchmarks/bench_sampling.py --out bench-out --only-validity --validity-n 100000 --workers 2

Sections:

speed
    Samples per second on each domain grammar: our samplers raw (calls read off and checked, not
    re-parsed) and verified (re-parsed, exact), against ``hypothesis.extra.lark.from_lark`` on a Lark
    built from the very same grammar file (drawn in a ``@given`` loop, health checks off, no
    database, generate phase only) and fuzzingbook's ``ProbabilisticGrammarFuzzer`` and
    ``GrammarCoverageFuzzer`` on the grammar converted from Lark's compiled rules (each regular-
    expression terminal becomes a nonterminal over 12 strings drawn from it; tokens joined by
    spaces). Mean instruction length is reported beside each rate.
coverage
    Expansion and 2-path coverage after 100, 1,000 (and 10,000 with ``--full``) samples, per
    strategy and per peer (peers are time-boxed: ``--peer-seconds``); peers' strings are parsed
    (strings that do not parse cover nothing and are counted as invalid). Samples needed for full
    expansion coverage, against :func:`grammar_engine.coverage.lower_bound` on the graph and under
    the size of the largest sample drawn (``max_size``: each derivation covers at most that many).
validity
    Every emitted sample was verified by re-parsing; the share of emitted samples whose
    instruction :meth:`Grammar.parse` (the reference parser) reads back to exactly its calls is
    re-checked on a random subset (``--recheck``), with the distinct share and rejections by reason.
scale (``--scale N``)
    ``write_corpus`` of N instructions of the example domain with 1 and 2 workers: peak resident
    memory (this process and its children, ``resource.getrusage``), memory at 10%/50%/100% of the
    run, and whether the two outputs are byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from collections.abc import Iterator
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grammar_engine  # noqa: E402
from grammar_engine.corpus import write_corpus  # noqa: E402
from grammar_engine.coverage import TargetKind, coverage_targets, lower_bound  # noqa: E402
from grammar_engine.sampling import sample, verifier_for  # noqa: E402
from grammar_engine.value_sources import ValueSources  # noqa: E402
from grammar_engine.verification import calls_key  # noqa: E402

STRATEGIES = ("weighted", "coverage", "uniform")


# -- peers --------------------------------------------------------------------------------------------


def hypothesis_strings(grammar: grammar_engine.Grammar, seconds: float, limit: int) -> tuple[list[str], float]:
    """Strings from hypothesis' ``from_lark`` on the grammar file, and the seconds it took."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.extra.lark import from_lark

    parser = grammar._build("earley")
    strategy = from_lark(parser, start="start")

    def run(count: int) -> tuple[list[str], float]:
        out: list[str] = []

        @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def draw(text: str) -> None:
            out.append(text)

        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            draw()
        return out, time.perf_counter() - start

    # a short run sizes the timed one, so that it fits in ``seconds`` (hypothesis runs to the end)
    probe, took = run(20)
    rate = len(probe) / took if took else 1000.0
    return run(max(20, min(limit, int(rate * seconds))))


def fuzzingbook_grammar(grammar: grammar_engine.Grammar, per_terminal: int = 12) -> dict[str, list[str]]:
    """The grammar as a fuzzingbook grammar: compiled rules, regex terminals over drawn strings."""
    from fuzzingbook.Grammars import trim_grammar

    def nt(name: str) -> str:
        return "<" + name.replace("<", "").replace(">", "") + ">"

    rng = random.Random(0)
    sources = ValueSources(grammar)
    out: dict[str, list[str]] = {"<start>": [nt(grammar.table.start)]}
    for origin, exps in grammar.table.by_origin.items():
        out[nt(origin)] = [" ".join(nt(c) for c in e.children) for e in exps]
    for name, literal in grammar.table.terminals.items():
        if literal is not None:
            out[nt(name)] = [literal.replace("<", " ").replace(">", " ")]
            continue
        drawn: set[str] = set()
        for _ in range(per_terminal * 4):
            text = sources.regex_text(name, rng, avoid_keywords=False)
            if text and "<" not in text and ">" not in text:
                drawn.add(text)
            if len(drawn) >= per_terminal:
                break
        out[nt(name)] = sorted(drawn) or ["x"]
    return trim_grammar(out, start_symbol="<start>")


def fuzzingbook_strings(fb_grammar: dict[str, list[str]], kind: str, seconds: float, limit: int) -> tuple[list[str], float]:
    """Strings from a fuzzingbook fuzzer (``probabilistic`` or ``coverage``) within a time box."""
    from fuzzingbook.GrammarCoverageFuzzer import GrammarCoverageFuzzer
    from fuzzingbook.ProbabilisticGrammarFuzzer import ProbabilisticGrammarFuzzer

    random.seed(0)  # fuzzingbook draws from the module-level generator
    cls = ProbabilisticGrammarFuzzer if kind == "probabilistic" else GrammarCoverageFuzzer
    fuzzer = cls(fb_grammar, start_symbol="<start>")
    out: list[str] = []
    start = time.perf_counter()
    deadline = start + seconds
    while len(out) < limit and time.perf_counter() < deadline:
        out.append(" ".join(fuzzer.fuzz().split()))
    return out, time.perf_counter() - start


# -- parsing peer strings for coverage ------------------------------------------------------------------


class _Parsed:
    def __init__(self, expansions: tuple[int, ...], calls: list[dict[str, Any]]) -> None:
        self.expansions = expansions
        self.calls = calls


def parse_for_coverage(grammar: grammar_engine.Grammar, text: str) -> _Parsed | None:
    """Expansions and calls of ``text`` by the grammar's parser, None if it has no valid reading."""
    found = grammar.try_parse(text)
    return None if found is None else _Parsed(found.expansions, found.calls)


def coverage_curve(grammar: grammar_engine.Grammar, items: list[Any], marks: list[int],
                   given_up: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Expansion and 2-path coverage at each mark, samples needed for full expansion coverage, and the
    lower bound for derivations no larger than the largest one drawn (user expansions).

    ``given_up``: expansion targets the sampler gave up; ``full_reachable_at`` is the samples needed
    to cover every other expansion target (a sample may still cover a given-up one by the way:
    ``given_up_covered_later``)."""
    from grammar_engine.coverage import sample_targets, size_of

    largest = 0
    targets = coverage_targets(grammar)
    exp_t, path_t = targets.by_kind[TargetKind.EXPANSION], targets.by_kind[TargetKind.PATH2]
    paths: set[Any] = set()
    curve = []
    invalid = 0
    first_seen: dict[int, int] = {}  # expansion target -> the sample that first covered it
    for k, item in enumerate(items, 1):
        parsed = parse_for_coverage(grammar, item) if isinstance(item, str) else item
        if parsed is None:
            invalid += 1
        else:
            found = sample_targets(grammar, parsed)
            largest = max(largest, size_of(grammar, parsed))
            paths |= found[TargetKind.PATH2] & path_t
            for e in found[TargetKind.EXPANSION] & exp_t:
                first_seen.setdefault(e, k)
        if k in marks:
            curve.append({"samples": k, "expansion": round(len(first_seen) / len(exp_t), 4),
                          "path2": round(len(paths) / len(path_t), 4)})

    def covered_at(wanted: frozenset[int]) -> int | None:
        """The sample that completed the coverage of ``wanted`` (None: never)."""
        return max(first_seen[e] for e in wanted) if wanted and wanted <= first_seen.keys() else None

    full_at = covered_at(exp_t)
    full_reachable_at = covered_at(exp_t - given_up)
    return {"curve": curve, "full_expansion_at": full_at, "invalid": invalid, "n": len(items),
            "given_up": len(exp_t & given_up), "given_up_covered_later": len(given_up & first_seen.keys()),
            "full_reachable_at": full_reachable_at,
            "expansion_targets": len(exp_t), "path2_targets": len(path_t), "largest": largest,
            "size_lower_bound": lower_bound(grammar, max_size=largest) if largest else None}


# -- our samplers ---------------------------------------------------------------------------------------


def ours(grammar: grammar_engine.Grammar, strategy: str, n: int, verify: str, seed: int = 1
         ) -> tuple[list[Any], dict[str, Any], frozenset[int]]:
    """Samples, the stream's report with timings, and the expansion targets the sampler gave up."""
    stream = sample(grammar, n, strategy=strategy, seed=seed, verify=verify)
    next(stream)  # warm the per-grammar caches (weights, tables) outside the timed part
    stream = sample(grammar, n, strategy=strategy, seed=seed, verify=verify)
    start = time.perf_counter()
    items = list(stream)
    elapsed = time.perf_counter() - start
    report = stream.report.to_dict()
    report["seconds"] = round(elapsed, 3)
    report["per_second"] = round(len(items) / elapsed, 1)
    report["mean_chars"] = round(sum(len(s.instruction) for s in items) / max(len(items), 1), 1)
    given_up = getattr(stream.chooser, "given_up_expansions", frozenset)()
    return items, report, given_up


# -- sections -----------------------------------------------------------------------------------------------


def bench_domain(name: str, args: argparse.Namespace) -> dict[str, Any]:
    grammar = grammar_engine.load(ROOT / "grammars" / name)
    verifier_for(grammar)
    if args.only_validity:
        result = {"domain": name, "validity": validity(grammar, args.validity_n, args.recheck, args.workers)}
        print(f"\n== {name} validity: {result['validity']}", flush=True)
        return result
    marks = [m for m in (100, 1000, 10000) if m <= args.coverage_n]
    result: dict[str, Any] = {"domain": name, "expansions": len(grammar.table.expansions),
                              "lower_bound": lower_bound(grammar), "speed": {}, "coverage": {}}
    print(f"\n== {name}: {result['expansions']} expansions, lower bound {result['lower_bound']}", flush=True)
    for strategy in STRATEGIES:
        _raw_items, raw, _ = ours(grammar, strategy, args.speed_n, "off")
        items, verified, given_up = ours(grammar, strategy, args.coverage_n, "auto")
        result["speed"][f"ours-{strategy}"] = {"raw_per_second": raw["per_second"], "verified_per_second": verified["per_second"],
                                               "mean_chars": raw["mean_chars"], "rejected": verified["rejected"],
                                               "verifier": verified["verifier"]}
        result["coverage"][f"ours-{strategy}"] = coverage_curve(grammar, items, marks, given_up)
        print(f"  ours {strategy:9s} raw {raw['per_second']:8.1f}/s  verified {verified['per_second']:7.1f}/s"
              f"  chars {raw['mean_chars']:6.1f}  full@{result['coverage'][f'ours-{strategy}']['full_expansion_at']}", flush=True)
    peers: dict[str, tuple[list[str], float]] = {}
    peers["hypothesis.from_lark"] = hypothesis_strings(grammar, args.peer_seconds, args.coverage_n)
    fb = fuzzingbook_grammar(grammar)
    peers["fuzzingbook.Probabilistic"] = fuzzingbook_strings(fb, "probabilistic", args.peer_seconds, args.coverage_n)
    peers["fuzzingbook.Coverage"] = fuzzingbook_strings(fb, "coverage", args.peer_seconds, args.coverage_n)
    for peer, (strings, seconds) in peers.items():
        rate = len(strings) / seconds if seconds else 0.0
        result["speed"][peer] = {"raw_per_second": round(rate, 1), "mean_chars": round(sum(map(len, strings)) / max(len(strings), 1), 1),
                                 "drawn": len(strings), "seconds": round(seconds, 2)}
        result["coverage"][peer] = coverage_curve(grammar, strings, marks)
        print(f"  {peer:26s} {rate:8.1f}/s  chars {result['speed'][peer]['mean_chars']:6.1f}  drawn {len(strings)}"
              f"  valid {len(strings) - result['coverage'][peer]['invalid']}", flush=True)
    fastest = max(result["speed"][p]["raw_per_second"] for p in peers)
    result["ratios"] = {
        f"ours-{s}": {"raw_vs_fastest_peer": round(result["speed"][f"ours-{s}"]["raw_per_second"] / fastest, 2) if fastest else None,
                      "verified_vs_fastest_peer": round(result["speed"][f"ours-{s}"]["verified_per_second"] / fastest, 2) if fastest else None}
        for s in STRATEGIES
    }
    full = result["coverage"]["ours-coverage"]["full_expansion_at"]
    result["full_coverage_vs_lower_bound"] = round(full / result["lower_bound"], 2) if full else None
    size_bound = result["coverage"]["ours-coverage"]["size_lower_bound"]
    result["full_coverage_vs_size_lower_bound"] = round(full / size_bound, 2) if full and size_bound else None
    reachable = result["coverage"]["ours-coverage"]["full_reachable_at"]
    result["full_reachable_vs_lower_bound"] = round(reachable / result["lower_bound"], 2) if reachable else None
    result["validity"] = validity(grammar, args.validity_n, args.recheck, args.workers)
    print(f"  validity: {result['validity']}", flush=True)
    return result


def _corpus_samples(grammar: grammar_engine.Grammar, n: int, workers: int) -> tuple[Iterator[tuple[str, Any]], dict]:
    """``n`` verified weighted samples written by ``write_corpus`` with ``workers`` processes."""
    folder = Path(tempfile.mkdtemp(prefix="validity-"))
    manifest = write_corpus(grammar, folder, n=n, strategy="weighted", seed=7, workers=workers, dedup=False,
                            heldout=0.0, tools_in_records=False)

    def records() -> Iterator[tuple[str, Any]]:
        try:
            for shard in sorted(folder.glob("*.jsonl")):
                with open(shard, encoding="utf-8") as handle:
                    for line in handle:
                        record = json.loads(line)
                        yield record["instruction"], record["calls"]
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return records(), manifest


def validity(grammar: grammar_engine.Grammar, n: int, recheck: int, workers: int = 1) -> dict[str, Any]:
    """Every emitted sample was verified; re-check a reservoir of ``recheck`` with ``Grammar.parse``."""
    start = time.perf_counter()
    if workers > 1:
        pairs, manifest = _corpus_samples(grammar, n, workers)
        rejected, attempts = manifest["rejected"], manifest["counts"]["attempts"]
    else:
        stream = sample(grammar, n, strategy="weighted", seed=7)
        pairs = ((s.instruction, s.calls) for s in stream)
    texts: list[str] = []
    keyed: list[tuple[str, str]] = []
    rng = random.Random(0)
    for k, (text, calls) in enumerate(pairs):
        texts.append(text)
        if len(keyed) < recheck:
            keyed.append((text, calls_key(calls)))
        else:  # reservoir sample for the reference re-check
            j = rng.randrange(k + 1)
            if j < recheck:
                keyed[j] = (text, calls_key(calls))
    elapsed = time.perf_counter() - start
    if workers <= 1:
        rejected, attempts = dict(stream.report.rejected), stream.report.attempts
    agree = 0
    for text, want in keyed:
        try:
            agree += calls_key(grammar.parse(text).calls) == want
        except grammar_engine.GrammarEngineError:
            pass
    return {"emitted": len(texts), "distinct_share": round(len(set(texts)) / max(len(texts), 1), 4),
            "rechecked_with_reference": len(keyed), "reference_agrees": agree,
            "validity": round(agree / len(keyed), 4) if keyed else None,
            "rejected": rejected, "attempts": attempts, "workers": workers,
            "verified_per_second": round(len(texts) / elapsed, 1)}


def _tree_rss_kib() -> int:
    """Resident memory (KiB) of this process and its live children, from /proc."""
    total = 0
    pids = [os.getpid()]
    try:
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def scale(n: int, verify: str) -> dict[str, Any]:
    """Peak memory and determinism of a corpus of ``n`` instructions, 1 and 2 workers."""
    import subprocess

    out: dict[str, Any] = {"n": n, "verify": verify, "runs": {}}
    digests = {}
    for workers in (1, 2):
        folder = Path(tempfile.mkdtemp(prefix=f"scale-w{workers}-"))
        code = (
            "import json, resource, sys, threading, time, os\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "import grammar_engine\n"
            "from grammar_engine.corpus import write_corpus\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from bench_sampling import _tree_rss_kib\n"
            "samples = []\n"
            "stop = False\n"
            "def poll():\n"
            "    while not stop:\n"
            "        samples.append((time.perf_counter(), _tree_rss_kib()))\n"
            "        time.sleep(0.5)\n"
            "threading.Thread(target=poll, daemon=True).start()\n"
            f"g = grammar_engine.load({str(ROOT / 'grammars' / 'example')!r})\n"
            f"m = write_corpus(g, {str(folder)!r}, n={n}, seed=3, workers={workers}, verify={verify!r}, tools_in_records=False)\n"
            "stop = True\n"
            "self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "kids_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "print(json.dumps({'run': m['run'], 'counts': m['counts'], 'self_peak_kib': self_kib, 'children_peak_kib': kids_kib, 'rss': samples}))\n"
        )
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        rss = info.pop("rss")
        t0, t1 = (rss[0][0], rss[-1][0]) if rss else (0, 1)

        def at(share: float) -> int:
            target = t0 + share * (t1 - t0)
            return max((kib for t, kib in rss if t <= target), default=0)

        info["rss_mib_at"] = {f"{int(s * 100)}%": round(at(s) / 1024, 1) for s in (0.1, 0.5, 1.0)}
        info["peak_mib"] = round(max(info["self_peak_kib"], max((k for _, k in rss), default=0)) / 1024, 1)
        info["wall_seconds"] = round(time.perf_counter() - start, 1)
        h = hashlib.sha256()
        for path in sorted(folder.iterdir()):
            h.update(path.name.encode() + path.read_bytes())
        digests[workers] = h.hexdigest()
        shutil.rmtree(folder)
        out["runs"][f"workers={workers}"] = info
        print(f"  scale workers={workers}: {info['wall_seconds']}s peak {info['peak_mib']} MiB rss {info['rss_mib_at']}", flush=True)
    out["identical_output"] = digests[1] == digests[2]
    return out


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(11, 4 * len(results)), squeeze=False)
    for row, result in enumerate(results):
        for col, kind in enumerate(("expansion", "path2")):
            ax = axes[row][col]
            for name, cov in result["coverage"].items():
                xs = [p["samples"] for p in cov["curve"]]
                ys = [p[kind] for p in cov["curve"]]
                if xs:
                    ax.plot(xs, ys, marker="o", label=name)
            ax.set_xscale("log")
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{result['domain']}: {kind} coverage")
            ax.set_xlabel("samples")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--domains", nargs="+", default=["singlecell", "chem"])
    parser.add_argument("--full", action="store_true", help="10,000-sample coverage, 100,000-sample validity")
    parser.add_argument("--speed-n", type=int, default=None)
    parser.add_argument("--coverage-n", type=int, default=None)
    parser.add_argument("--validity-n", type=int, default=None)
    parser.add_argument("--recheck", type=int, default=200, help="samples re-parsed with Grammar.parse")
    parser.add_argument("--workers", type=int, default=1, help="processes for the validity run (write_corpus)")
    parser.add_argument("--only-validity", action="store_true", help="skip speed and coverage")
    parser.add_argument("--peer-seconds", type=float, default=None)
    parser.add_argument("--scale", type=int, default=0, help="write a corpus of this many (example domain)")
    parser.add_argument("--scale-verify", default="auto")
    args = parser.parse_args(argv)
    args.speed_n = args.speed_n or 2000
    args.coverage_n = args.coverage_n or (10000 if args.full else 1000)
    args.validity_n = args.validity_n or (100_000 if args.full else 2000)
    args.peer_seconds = args.peer_seconds or (600.0 if args.full else 60.0)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [bench_domain(name, args) for name in args.domains]
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "domains": results}
    if args.scale:
        report["scale"] = scale(args.scale, args.scale_verify)
    (args.out / "bench_sampling.json").write_text(json.dumps(report, indent=1))
    if args.only_validity:
        print(f"\nwrote {args.out / 'bench_sampling.json'}")
        return 0
    plot(results, args.out / "coverage.png")
    print("\n| domain | sampler | raw/s | verified/s | chars | raw x fastest peer | verified x fastest peer "
          "| full exp. coverage at (LB; LB at the largest size drawn) | all but the given-up at (given up; covered later) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for name, speed in r["speed"].items():
            ratio = r["ratios"].get(name, {})
            cov = r["coverage"][name]
            print(f"| {r['domain']} | {name} | {speed['raw_per_second']} | {speed.get('verified_per_second', '-')} | {speed['mean_chars']} "
                  f"| {ratio.get('raw_vs_fastest_peer', '-')} | {ratio.get('verified_vs_fastest_peer', '-')} "
                  f"| {cov['full_expansion_at']} ({r['lower_bound']}; {cov['size_lower_bound']} at {cov['largest']}) "
                  f"| {cov['full_reachable_at'] if cov['given_up'] else '-'} ({cov['given_up']}; {cov['given_up_covered_later']}) |")
    print("\n| domain | sampler | " + " | ".join(f"exp@{m} | 2path@{m}" for m in (100, 1000, 10000)) + " |")
    print("|---|---|" + "---|---|" * 3)
    for r in results:
        for name, cov in r["coverage"].items():
            cells = []
            for m in (100, 1000, 10000):
                point = next((p for p in cov["curve"] if p["samples"] == m), None)
                cells += [str(point["expansion"]), str(point["path2"])] if point else ["-", "-"]
            print(f"| {r['domain']} | {name} | " + " | ".join(cells) + " |")
    print(f"\nwrote {args.out / 'bench_sampling.json'} and {args.out / 'coverage.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
