"""Does the synthetic corpus help? Same tiny model, same token budget, three training sets.

(a) ``recorded``: the recorded instructions of the training folds alone;
(b) ``uniform``: a uniform sample of the grammar;
(c) ``weighted+coverage``: the coverage-guided sampler falling back to weights learned from the
    training folds of the recordings.

Each is evaluated, k-fold over the recordings, on the held-out recorded fold (instructions people
wrote, many outside the grammar), on a synthetic held-out split whose phrasing x tool
combinations no synthetic training set contains, and on the domain's ``unseen.jsonl`` (written
against the tool contract alone; no grammar rule or weight was fitted to it) when there is one. One command reproduces the table:

    python benchmarks/experiment.py --out runs/experiment                  # singlecell, 2 folds
    python benchmarks/experiment.py --domains chem --out runs/experiment-chem

It prints a markdown table and writes ``results.json`` (every fold's scores, and each system's misses by kind
per test set, summed over the folds) and ``experiment.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYSTEMS = ("recorded", "uniform", "weighted+coverage")
TEST_SETS = ("recorded", "heldout", "unseen")


def folds(records: list[dict[str, Any]], k: int, seed: int) -> list[tuple[list[dict], list[dict]]]:
    """k (train, test) splits of the recordings, by a seeded shuffle."""
    order = list(records)
    random.Random(seed).shuffle(order)
    parts = [order[i::k] for i in range(k)]
    return [([r for j, p in enumerate(parts) if j != i for r in p], parts[i]) for i in range(k)]


def write_records_corpus(records: list[dict[str, Any]], out: Path, domain: str) -> Path:
    """A corpus folder holding exactly these records as its train split."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train-00000.jsonl", "w", encoding="utf-8") as handle:
        for i, record in enumerate(records):
            row = {"id": f"rec-{i}", "domain": domain, "instruction": record["instruction"],
                   "calls": record["calls"], "split": "train"}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "manifest.json").write_text(json.dumps({"domain": domain, "counts": {"train": len(records)}}))
    return out


def gold_records(path: Path | None, *, require_calls: bool = False) -> list[dict[str, Any]]:
    """The records of a recordings-style JSONL file that carry a call list ([] without a file)."""
    from grammar_engine.recordings import Record, read_instructions

    if path is None:
        return []
    return [item.raw for item in read_instructions(path, require_calls=require_calls)
            if isinstance(item, Record) and isinstance(item.raw.get("calls"), list)]


def train_and_evaluate(job: dict[str, Any]) -> dict[str, Any]:
    """Train one model and evaluate it on its test sets (runs in a worker process of its own)."""
    import grammar_engine
    from training.config import TrainConfig, domain_train_config
    from training.evaluation import evaluate_predictions
    from training.predict import Predictor
    from training.trainer import train

    grammar = grammar_engine.load(job["domain_dir"])
    settings = domain_train_config(job["domain_dir"]).to_dict()  # the domain's own settings, then the job's
    settings.update(corpus_dir=job["corpus"], output_dir=job["output"], max_tokens=job.get("tokens"),
                    max_minutes=job.get("minutes"), batch_size=job["batch_size"], seed=job["seed"], progress=False,
                    plot=False, checkpoint_every=10**9, num_threads=job["threads"], **job.get("train", {}))
    settings["model"].update(job.get("model", {}))
    config = TrainConfig.from_dict(settings)
    result = train(config)
    predictor = Predictor.from_pretrained(config.output_dir)
    scores: dict[str, dict[str, float]] = {}
    for set_name, gold in job["test_sets"].items():
        if not gold:
            continue
        predictions = [{"id": g["id"], **p} for g, p in zip(gold, predictor.predict([g["instruction"] for g in gold]))]
        report = evaluate_predictions(predictions, gold, grammar.tools)
        scores[set_name] = {"exact": report.exact_match, "f1": report.calls.f1, "failures": dict(report.failures)}
    return {"scores": scores, "steps": result.steps, "tokens": result.tokens_per_second * result.elapsed_s,
            "tokens_per_second": result.tokens_per_second, "final_loss": result.final_loss,
            "elapsed_s": result.elapsed_s}


def train_in_parallel(jobs: dict[tuple[str, str], dict[str, Any]], parallel: int,
                      test_sets: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Run :func:`train_and_evaluate` on every job, ``parallel`` at a time; outcomes by domain and name."""
    outcomes: dict[str, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
        futures = {key: pool.submit(train_and_evaluate, job) for key, job in jobs.items()}
        for (domain, name), future in futures.items():
            outcome = future.result()
            outcomes.setdefault(domain, {})[name] = outcome
            print(f"[{domain}] {name:<52} {outcome['tokens_per_second']:,.0f} tokens/s " + " ".join(
                f"{t} {outcome['scores'][t]['exact']:.3f}" for t in test_sets if t in outcome["scores"]),
                file=sys.stderr)
    return outcomes


def scores_table(results: dict[str, Any], label: str, test_sets: tuple[str, ...],
                 extra: dict[str, Callable[[dict[str, Any]], str]]) -> str:
    """A markdown row per (domain, model): exact match and call F1 per test set, then ``extra`` columns."""
    names = {"heldout": "synthetic held-out", "recorded": "recorded", "unseen": "unseen",
             "new genes": "new genes"}
    lines = [f"| domain | {label} | " + " | ".join(f"{names[t]}: exact | {names[t]}: call F1" for t in test_sets)
             + "".join(f" | {column}" for column in extra) + " |",
             "|---|---|" + "---:|" * (2 * len(test_sets) + len(extra))]
    for domain, models in results["domains"].items():
        for name, outcome in models.items():
            cells = " | ".join(
                f"{outcome['scores'][t]['exact']:.3f} | {outcome['scores'][t]['f1']:.3f}" if t in outcome["scores"]
                else "- | -" for t in test_sets)
            lines.append(f"| {domain} | {name} | {cells}" + "".join(f" | {cell(outcome)}" for cell in extra.values())
                         + " |")
    return "\n".join(lines)


def parser_exact(grammar: Any, gold: list[dict[str, Any]]) -> float:
    """Exact match of the grammar's own parser on a gold set (an instruction that does not parse is wrong).

    The calls are the exact verifier's: those the grammar's parser gives, read off the pruned
    parse when its derivations all agree, so that long ambiguous synthetic instructions do not
    each cost a full Earley parse.
    """
    from grammar_engine import normalize_instruction
    from grammar_engine.grammar import MAX_INSTRUCTION_CHARS
    from grammar_engine.verification import verifier_for

    verifier = verifier_for(grammar)
    exact = 0
    for record in gold:
        text = normalize_instruction(record["instruction"])
        calls = verifier.exact_calls(text) if 0 < len(text) <= MAX_INSTRUCTION_CHARS else None
        exact += calls is not None and grammar.tools.normalize_calls(record["calls"]) == calls
    return exact / max(1, len(gold))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import grammar_engine
    from grammar_engine.corpus import write_corpus
    from training.data import read_corpus

    out = Path(args.out)
    results: dict[str, Any] = {"config": vars(args).copy(), "domains": {}}
    for domain in args.domains:
        domain_dir = ROOT / "grammars" / domain
        grammar = grammar_engine.load(domain_dir)
        recorded = gold_records(grammar.recorded_path)
        unseen = gold_records(grammar.unseen_path, require_calls=True)
        # (b) does not depend on the recordings: one uniform corpus and one model serve every fold.
        # Every synthetic corpus uses the same seed and keeps no phrasing from the held-out choice
        # (heldout_keep=()), so all hold out the same phrasing x tool combinations whichever
        # recordings they learn from.
        t0 = time.perf_counter()
        uniform = out / domain / "corpus-uniform"
        write_corpus(grammar, uniform, n=args.samples, strategy="uniform", seed=args.seed, workers=args.workers,
                     chunk_size=250, heldout_keep=())
        print(f"[{domain}] uniform corpus sampled in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        fold_sets: list[dict[str, list[dict[str, Any]]]] = []
        jobs: dict[tuple[str, int | None], dict[str, Any]] = {}
        base_job = {"domain_dir": str(domain_dir), "tokens": args.tokens, "batch_size": args.batch_size,
                    "seed": args.seed, "threads": args.threads}
        for fold, (train_rec, test_rec) in enumerate(folds(recorded, args.folds, args.seed)):
            base = out / domain / f"fold{fold}"
            t0 = time.perf_counter()
            # (c): coverage-guided samples first, then samples weighted by the training folds
            weighted = base / "corpus-weighted-coverage"
            write_corpus(grammar, base / "part-coverage", n=args.coverage_samples, strategy="coverage",
                         seed=args.seed, recordings=train_rec, workers=args.workers, chunk_size=250,
                         heldout_keep=())
            write_corpus(grammar, weighted, n=args.samples - args.coverage_samples, strategy="weighted",
                         seed=args.seed, recordings=train_rec, workers=args.workers, chunk_size=250, alpha=args.alpha,
                         heldout_keep=())
            with open(weighted / "train-99999.jsonl", "w", encoding="utf-8") as merged:
                for shard in sorted((base / "part-coverage").glob("train-*.jsonl")):
                    merged.write(shard.read_text(encoding="utf-8"))
            print(f"[{domain} fold {fold}] corpus (c) sampled in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
            # synthetic held-out: phrasing x tool combinations kept out of both synthetic train splits,
            # half drawn like (b) and half like (c), so neither distribution is favoured
            half = args.heldout // 2
            heldout = read_corpus(uniform, "heldout")[:half] + read_corpus(weighted, "heldout")[:args.heldout - half]
            sets = {"recorded": [{**r, "id": f"t{i}"} for i, r in enumerate(test_rec)],
                    "heldout": [{**r, "id": f"h{i}"} for i, r in enumerate(heldout)],
                    "unseen": [{**r, "id": f"u{i}"} for i, r in enumerate(unseen)]}
            fold_sets.append(sets)
            jobs[("recorded", fold)] = {**base_job, "test_sets": sets, "output": str(base / "model-recorded"),
                                        "corpus": str(write_records_corpus(train_rec, base / "corpus-recorded", domain))}
            jobs[("weighted+coverage", fold)] = {**base_job, "test_sets": sets, "corpus": str(weighted),
                                                 "output": str(base / "model-weighted-coverage")}
        jobs[("uniform", None)] = {**base_job, "corpus": str(uniform), "output": str(out / domain / "model-uniform"),
                                   "test_sets": {f"{name}@{fold}": gold for fold, sets in enumerate(fold_sets)
                                                 for name, gold in sets.items()}}
        # the same token budget for every system (the trainer turns it into steps); models train in
        # parallel worker processes of one torch thread each
        t0 = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.parallel, mp_context=context) as pool:
            futures = {key: pool.submit(train_and_evaluate, job) for key, job in jobs.items()}
            done = {key: future.result() for key, future in futures.items()}
        print(f"[{domain}] {len(jobs)} models trained and evaluated in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        rows: dict[str, dict[str, list[float]]] = {
            s: {**{f"{t}_{m}": [] for t in TEST_SETS for m in ("exact", "f1")}, "tokens": [], "steps": []}
            for s in SYSTEMS}
        misses: dict[str, dict[str, Counter[str]]] = {s: {t: Counter() for t in TEST_SETS} for s in SYSTEMS}
        parser_rows: dict[str, list[float]] = {f"{t}_exact": [] for t in TEST_SETS}
        for fold, sets in enumerate(fold_sets):
            for set_name, gold in sets.items():
                if gold:
                    parser_rows[f"{set_name}_exact"].append(parser_exact(grammar, gold))
            for system in SYSTEMS:
                outcome = done[(system, None if system == "uniform" else fold)]
                for set_name in TEST_SETS:
                    score = outcome["scores"].get(set_name if system != "uniform" else f"{set_name}@{fold}")
                    if score:
                        rows[system][f"{set_name}_exact"].append(score["exact"])
                        rows[system][f"{set_name}_f1"].append(score["f1"])
                        misses[system][set_name].update(score.get("failures", {}))
                if system != "uniform" or fold == 0:
                    rows[system]["tokens"].append(outcome["tokens"])
                    rows[system]["steps"].append(outcome["steps"])
                print(f"[{domain} fold {fold}] {system:<18} steps {outcome['steps']:>5} " + " ".join(
                    f"{t} exact {rows[system][f'{t}_exact'][-1]:.2f}" for t in TEST_SETS
                    if rows[system][f"{t}_exact"]), file=sys.stderr)
        results["domains"][domain] = {"systems": rows, "parser": parser_rows, "recorded": len(recorded),
                                      "unseen": len(unseen),
                                      "misses": {s: {t: dict(c) for t, c in sets.items() if c}
                                                 for s, sets in misses.items()}}
    return results


def table(results: dict[str, Any]) -> str:
    def mean(values: list[float]) -> str:
        return f"{statistics.fmean(values):.3f}" if values else "-"

    names = {"recorded": "recorded fold", "heldout": "synthetic held-out", "unseen": "unseen"}
    header = "| domain | trained on | " + " | ".join(f"{names[t]}: {m}" for t in TEST_SETS for m in ("exact", "call F1"))
    lines = [header + " | tokens seen | steps |", "|---|---|" + "---:|" * (2 * len(TEST_SETS) + 2)]
    for domain, data in results["domains"].items():
        for system, row in data["systems"].items():
            cells = " | ".join(mean(row.get(f"{t}_{m}", [])) for t in TEST_SETS for m in ("exact", "f1"))
            lines.append(f"| {domain} | {system} | {cells} | "
                         f"{statistics.fmean(row['tokens']) if row['tokens'] else 0:,.0f} | "
                         f"{statistics.fmean(row['steps']) if row.get('steps') else 0:,.0f} |")
        parser = data["parser"]
        cells = " | ".join(f"{mean(parser.get(f'{t}_exact', []))} | " for t in TEST_SETS)
        lines.append(f"| {domain} | (the grammar's parser, no model) | {cells} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="+", default=["singlecell"],
                        help="domains to run, one after the other (about 15 minutes each on 2 cores)")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=3000, help="synthetic corpus size per system and fold")
    parser.add_argument("--coverage-samples", type=int, default=150,
                        help="of those, drawn by the coverage-guided sampler in (c)")
    parser.add_argument("--tokens", type=int, default=1_200_000, help="training token budget per run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=1.0,
                        help="add-alpha smoothing of the weights learned from the training folds in (c)")
    parser.add_argument("--parallel", type=int, default=min(2, os.cpu_count() or 1),
                        help="models trained at once, each in a process of its own with --threads threads")
    parser.add_argument("--heldout", type=int, default=200, help="synthetic held-out instructions per fold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="sampling processes (the corpora are identical for any number)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training (2 only on an otherwise idle 2-core machine)")
    parser.add_argument("--out", default="runs/experiment")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(args)
    results["elapsed_s"] = time.perf_counter() - start
    save_report(Path(args.out), results, table(results), "experiment.md",
                f"elapsed: {results['elapsed_s'] / 60:.1f} min")
    return 0


def save_report(out: Path, results: dict[str, Any], text: str, name: str, footer: str) -> None:
    """Write ``results.json`` and the markdown table ``name`` (with ``footer``) under ``out``; print both."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / name).write_text(f"{text}\n\n{footer}\n")
    print(text)
    print(footer)


if __name__ == "__main__":
    raise SystemExit(main())
