"""Does the synthetic corpus help? Same tiny model, same token budget, three training sets.

(a) ``recorded``: the recorded instructions of the training folds alone;
(b) ``uniform``: a uniform sample of the grammar;
(c) ``weighted+coverage``: the coverage-guided sampler falling back to weights learned from the
    training folds of the recordings.

Each is evaluated, k-fold over the recordings, on the held-out recorded fold (instructions people
wrote, many outside the grammar) and on a synthetic held-out split whose phrasing x tool
combinations no synthetic training set contains. One command reproduces the table:

    python benchmarks/experiment.py --out runs/experiment            # both domains, 2 folds
    python benchmarks/experiment.py --domains singlecell --folds 2 --tokens 60000

It prints a markdown table and writes ``results.json`` and ``experiment.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYSTEMS = ("recorded", "uniform", "weighted+coverage")


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    import grammar_engine
    from grammar_engine.corpus import write_corpus
    from grammar_engine.recordings import Record, read_instructions
    from training.config import TrainConfig
    from training.data import read_corpus
    from training.evaluation import evaluate_predictions
    from training.predict import Predictor
    from training.trainer import train

    out = Path(args.out)
    results: dict[str, Any] = {"config": vars(args).copy(), "domains": {}}
    for domain in args.domains:
        grammar = grammar_engine.load(ROOT / "grammars" / domain)
        recorded = [item.raw for item in read_instructions(grammar.recorded_path)
                    if isinstance(item, Record) and isinstance(item.raw.get("calls"), list)]
        rows: dict[str, dict[str, list[float]]] = {s: {"recorded_exact": [], "recorded_f1": [], "heldout_exact": [],
                                                       "heldout_f1": [], "tokens": []} for s in SYSTEMS}
        parser_rows: dict[str, list[float]] = {"recorded_exact": [], "heldout_exact": []}
        # (b) does not depend on the recordings: one uniform corpus serves every fold. Every synthetic
        # corpus uses the same seed, so all hold out the same phrasing x tool combinations.
        t0 = time.perf_counter()
        uniform = out / domain / "corpus-uniform"
        write_corpus(grammar, uniform, n=args.samples, strategy="uniform", seed=args.seed, workers=args.workers,
                 chunk_size=250)
        print(f"[{domain}] uniform corpus sampled in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        for fold, (train_rec, test_rec) in enumerate(folds(recorded, args.folds, args.seed)):
            base = out / domain / f"fold{fold}"
            corpora = {
                "recorded": write_records_corpus(train_rec, base / "corpus-recorded", domain),
                "uniform": uniform,
                "weighted+coverage": base / "corpus-weighted-coverage",
            }
            t0 = time.perf_counter()
            # (c): coverage-guided samples first, then samples weighted by the training folds
            write_corpus(grammar, base / "part-coverage", n=args.coverage_samples, strategy="coverage",
                         seed=args.seed, recordings=train_rec, workers=args.workers,
                         chunk_size=250)
            write_corpus(grammar, corpora["weighted+coverage"], n=args.samples - args.coverage_samples,
                         strategy="weighted", seed=args.seed, recordings=train_rec, workers=args.workers,
                         chunk_size=250)
            with open(corpora["weighted+coverage"] / "train-99999.jsonl", "w", encoding="utf-8") as merged:
                for shard in sorted((base / "part-coverage").glob("train-*.jsonl")):
                    merged.write(shard.read_text(encoding="utf-8"))
            print(f"[{domain} fold {fold}] corpus (c) sampled in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
            # synthetic held-out: phrasing x tool combinations kept out of both synthetic train splits,
            # half drawn like (b) and half like (c), so neither distribution is favoured
            half = args.heldout // 2
            heldout = (read_corpus(uniform, "heldout")[:half]
                       + read_corpus(corpora["weighted+coverage"], "heldout")[:args.heldout - half])
            test_sets = {"recorded": [{**r, "id": f"t{i}"} for i, r in enumerate(test_rec)],
                         "heldout": [{**r, "id": f"h{i}"} for i, r in enumerate(heldout)]}
            for set_name, gold in test_sets.items():
                exact = 0
                for record in gold:
                    try:
                        exact += grammar.tools.normalize_calls(record["calls"]) == grammar.parse(record["instruction"]).calls
                    except grammar_engine.InstructionParseError:
                        pass
                parser_rows[f"{set_name}_exact"].append(exact / max(1, len(gold)))
            for system, corpus in corpora.items():
                # the same token budget for every system (the trainer turns it into steps)
                config = TrainConfig(corpus_dir=str(corpus), output_dir=str(base / f"model-{system.replace('+', '-')}"),
                                     max_tokens=args.tokens, max_minutes=None, batch_size=args.batch_size,
                                     seed=args.seed, progress=False, plot=False, checkpoint_every=10**9,
                                     num_threads=args.threads)
                result = train(config)
                steps = result.steps
                rows[system]["tokens"].append(result.tokens_per_second * result.elapsed_s)
                predictor = Predictor.from_pretrained(config.output_dir)
                for set_name, gold in test_sets.items():
                    if not gold:
                        continue
                    predictions = [{"id": g["id"], **p} for g, p in
                                   zip(gold, predictor.predict([g["instruction"] for g in gold]))]
                    report = evaluate_predictions(predictions, gold, grammar.tools)
                    rows[system][f"{set_name}_exact"].append(report.exact_match)
                    rows[system][f"{set_name}_f1"].append(report.calls.f1)
                print(f"[{domain} fold {fold}] {system:<18} steps {steps:>4} "
                      f"recorded exact {rows[system]['recorded_exact'][-1]:.2f} "
                      f"held-out exact {rows[system]['heldout_exact'][-1]:.2f}", file=sys.stderr)
        results["domains"][domain] = {"systems": rows, "parser": parser_rows, "recorded": len(recorded)}
    return results


def table(results: dict[str, Any]) -> str:
    def mean(values: list[float]) -> str:
        return f"{statistics.fmean(values):.3f}" if values else "-"

    lines = ["| domain | trained on | recorded fold: exact | recorded fold: call F1 | synthetic held-out: exact "
             "| synthetic held-out: call F1 | tokens seen |", "|---|---|---:|---:|---:|---:|---:|"]
    for domain, data in results["domains"].items():
        for system, row in data["systems"].items():
            lines.append(f"| {domain} | {system} | {mean(row['recorded_exact'])} | {mean(row['recorded_f1'])} | "
                         f"{mean(row['heldout_exact'])} | {mean(row['heldout_f1'])} | "
                         f"{statistics.fmean(row['tokens']) if row['tokens'] else 0:,.0f} |")
        parser = data["parser"]
        lines.append(f"| {domain} | (the grammar's parser, no model) | {mean(parser['recorded_exact'])} | | "
                     f"{mean(parser['heldout_exact'])} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="+", default=["singlecell", "chem"])
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=1500, help="synthetic corpus size per system and fold")
    parser.add_argument("--coverage-samples", type=int, default=150,
                        help="of those, drawn by the coverage-guided sampler in (c)")
    parser.add_argument("--tokens", type=int, default=250_000, help="training token budget per run")
    parser.add_argument("--batch-size", type=int, default=32)
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    (out / "experiment.md").write_text(text + f"\n\nelapsed: {results['elapsed_s'] / 60:.1f} min\n")
    print(text)
    print(f"elapsed: {results['elapsed_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
