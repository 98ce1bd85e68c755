"""Which target spelling does the tiny model learn best? One corpus, one token budget, several formats.

The tiny model's defaults that shape what it must write are measured here, each against turning
it off, on the same corpus, seed and token budget:

``split_spaces``
    Every space its own token (so a value copied from the instruction keeps its tokens) against
    the byte-level BPE's usual joining of a space to the word after it. Singlecell ships it on
    (``grammars/singlecell/training.json``); chem keeps the default, off.
``molecule_names``
    A molecule the instruction names is written by that name and read back as its SMILES
    (chem), against writing the SMILES.

Each model is scored on the corpus's held-out split (phrasing x tool combinations the training
split lacks), on the recorded instructions and on ``unseen.jsonl``::

    python benchmarks/bench_formats.py --out runs/bench-formats            # chem and singlecell

It prints a markdown table and writes ``results.json`` and ``formats.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from experiment import gold_records, save_report, scores_table, train_in_parallel  # noqa: E402

FORMATS: dict[str, dict[str, bool]] = {
    "spaces joined, SMILES": {"split_spaces": False, "molecule_names": False},
    "spaces split, SMILES": {"split_spaces": True, "molecule_names": False},
    "spaces joined, names": {"split_spaces": False, "molecule_names": True},
    "spaces split, names": {"split_spaces": True, "molecule_names": True},
}
TEST_SETS = ("heldout", "recorded", "unseen")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import grammar_engine
    from grammar_engine.corpus import write_corpus
    from training.config import domain_train_config
    from training.data import read_corpus

    out = Path(args.out)
    results: dict[str, Any] = {"config": vars(args).copy(), "domains": {}}
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    for domain in args.domains:
        domain_dir = ROOT / "grammars" / domain
        grammar = grammar_engine.load(domain_dir)
        corpus = out / domain / "corpus"
        write_corpus(grammar, corpus, n=args.samples, strategy="weighted", seed=args.seed, workers=args.workers,
                     chunk_size=250)
        has_molecules = bool(json.loads((corpus / "manifest.json").read_text()).get("molecules"))

        sets = {"heldout": [{**r, "id": f"h{i}"} for i, r in enumerate(read_corpus(corpus, "heldout")[:args.heldout])],
                "recorded": [{**r, "id": f"r{i}"}
                             for i, r in enumerate(gold_records(grammar.recorded_path, require_calls=True))],
                "unseen": [{**r, "id": f"u{i}"}
                           for i, r in enumerate(gold_records(grammar.unseen_path, require_calls=True))]}
        default = domain_train_config(domain_dir).model  # the domain's own setting is marked "(default)"
        for name, model in FORMATS.items():
            if args.skip and any(part in name for part in args.skip):
                continue
            if not has_molecules:  # the molecule option changes nothing here: one row per space setting
                if not model["molecule_names"]:
                    continue
                name = name.split(",")[0]
            if all(getattr(default, key) == value for key, value in model.items()):
                name += " (default)"
            jobs[(domain, name)] = {
                "domain_dir": str(domain_dir), "corpus": str(corpus), "tokens": args.tokens,
                "batch_size": args.batch_size, "seed": args.seed, "threads": args.threads, "test_sets": sets,
                "output": str(out / domain / ("model-" + "".join(c if c.isalnum() else "-" for c in name))),
                "model": model,
            }
    started = time.perf_counter()
    results["domains"] = train_in_parallel(jobs, args.parallel, TEST_SETS)
    results["train_s"] = time.perf_counter() - started
    return results


def table(results: dict[str, Any]) -> str:
    return scores_table(results, "format", TEST_SETS, {"steps": lambda outcome: f"{outcome['steps']:,}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="+", default=["chem", "singlecell"])
    parser.add_argument("--samples", type=int, default=3000, help="corpus size (train + held-out) per domain")
    parser.add_argument("--tokens", type=int, default=300_000, help="training token budget per model")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--heldout", type=int, default=200, help="held-out instructions scored per domain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=min(2, os.cpu_count() or 1),
                        help="models trained at once, each in a process of its own")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="sampling processes")
    parser.add_argument("--skip", nargs="*", default=[], metavar="TEXT",
                        help="leave out the formats whose name contains TEXT (e.g. 'split, SMILES')")
    parser.add_argument("--out", default="runs/bench-formats")
    args = parser.parse_args(argv)
    results = run(args)
    save_report(Path(args.out), results, table(results), "formats.md",
                f"training and scoring: {results['train_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
