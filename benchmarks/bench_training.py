"""What the defaults buy: sessions, casing, sentence case, length-grouped batches, the tiny model's width,
value placeholders and the domain's space setting.

Each default is measured against turning it off, with everything else fixed (grammar, seed,
corpus size, tiny model, the same wall-clock training budget, models trained side by side so
that they share the machine alike):

``sessions``
    Every instruction starting from the recorded start (``session_start="recorded"``: the
    domain's initial state plus every fact the recorded instructions need before their calls, so
    that "umap" alone is drawn as often as people say it) against sessions of 4 instructions on
    average from the domain's initial state (each instruction starts from the facts its session's
    earlier instructions established), and against sessions of 4 from the recorded start.
``casing``
    Literal words written in the forms and shares the recordings use (``casing="recorded"``:
    ``UMAP``, ``PCA``, ``kNN`` beside ``umap``, ``pca``, ``knn``) against as the grammar writes
    them, in lower case, so that an acronym people capitalize is never seen in training.
``sentence case``
    Half of the instructions start with a capital letter, as people write them, where that
    changes no call (literals match in any case), against none (``sentence_case=0``): the
    generator writes the grammar's lower-case literals, while about half of the instructions
    people write start with a capital.
``length-grouped batches``
    Micro-batches of examples of similar length (``group_by_length=64``) against plain shuffled
    batches (``group_by_length=1``), whose tokens are about 40% padding at batch 4.
``model size``
    The tiny model's default width (hidden 64, 2 heads, feed-forward 192: about 0.3M
    parameters) against the wider 0.9M-parameter model (hidden 128, 4 heads, feed-forward 384).
    In a fixed wall-clock budget on one CPU thread the narrower model sees far more examples,
    and the wider one is still underfitting when the time runs out.
``value placeholders``
    The numbers and paths of an instruction written as numbered placeholders in prompt and
    target, and put back after generation (:mod:`training.value_placeholders`), against the
    model writing them out itself.
``number words``
    Numbers written in words (``fifty``, ``ten thousand``, ``1 million``) as placeholders too, put
    back as the number they spell, against the model writing their digits itself.
``spaces``
    Every space its own token against the BPE's joining of a space to the next word, starting
    from the domain's own settings (``DOMAIN_DIR/training.json``): singlecell splits spaces (its
    genes, obs keys and labels are copied word for word), chem keeps them joined. The model named
    after the other setting is the one that differs from the defaults.
``symbols``
    Identifier-shaped words the corpus only used as string values (gene symbols, obs keys) as
    placeholders too, against the model writing them out, again from the domain's own settings:
    singlecell masks them, chem does not.

Each model is scored on the held-out split of the default corpus (phrasing x tool combinations
no training record has), on the recorded instructions and on ``unseen.jsonl``::

    python benchmarks/bench_training.py --out runs/bench-training          # singlecell, about 35 min
    python benchmarks/bench_training.py --models "hidden 128 (0.9M parameters)" defaults  # one pair, 8 min
    python benchmarks/bench_training.py --models "no value placeholders" defaults --domains singlecell chem
    python benchmarks/bench_training.py --models "number words as written" defaults --domains singlecell chem
    python benchmarks/bench_training.py --models "spaces joined" defaults --domains singlecell
    python benchmarks/bench_training.py --models "symbols as words" defaults --domains singlecell

It prints a markdown table and writes ``results.json`` and ``training.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from experiment import gold_records, save_report, scores_table, train_in_parallel  # noqa: E402

# name -> (the corpus's session_start, session_length, sentence_case and casing; trainer overrides;
# model overrides)
DEFAULTS = ("recorded", 1.0, 0.5, "recorded")
MODELS: dict[str, tuple[tuple[str, float, float, str], dict[str, Any], dict[str, Any]]] = {
    "sessions from the initial state": (("initial", 4.0, 0.5, "recorded"), {}, {}),
    "recorded start, sessions of 4": (("recorded", 4.0, 0.5, "recorded"), {}, {}),
    "no sentence case": (("recorded", 1.0, 0.0, "recorded"), {}, {}),
    "literals as the grammar writes them": (("recorded", 1.0, 0.5, "grammar"), {}, {}),
    "plain batches": (DEFAULTS, {"group_by_length": 1}, {}),
    "hidden 128 (0.9M parameters)": (DEFAULTS, {}, {"hidden_size": 128, "num_heads": 4, "intermediate_size": 384}),
    "no value placeholders": (DEFAULTS, {}, {"value_placeholders": False}),
    "number words as written": (DEFAULTS, {}, {"value_number_words": False}),
    "spaces joined": (DEFAULTS, {}, {"split_spaces": False}),
    "spaces split": (DEFAULTS, {}, {"split_spaces": True}),
    "symbols as words": (DEFAULTS, {}, {"value_symbols": False}),
    "symbols as values": (DEFAULTS, {}, {"value_symbols": True}),
    "defaults": (DEFAULTS, {}, {}),
}
TEST_SETS = ("heldout", "recorded", "unseen", "new genes")
# real gene symbols outside the singlecell lexicon (tools.json "values", GENE), one per lexicon gene
NEW_VALUES = {"GENE": [
    "FOXP3", "IL2RA", "CD19", "PAX5", "SOX2", "EPCAM", "KRT18", "COL1A1", "PECAM1", "VWF", "PTPRC", "MKI67",
    "TOP2A", "CD68", "MRC1", "ITGAX", "CLEC4C", "IRF7", "TPSAB1", "KIT", "HBB", "HBA1", "ALB", "APOA1", "INS",
    "GCG", "SST", "TTR", "MYH11", "ACTA2", "DCN", "LUM", "PDGFRB", "RGS5", "CD34", "KDR", "CLDN5", "AQP1",
    "SPP1", "MMP9", "CXCL8", "IL1B", "TNF", "IFNG"]}


def with_new_values(records: list[dict[str, Any]], lexicon: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The records whose calls use a lexicon value that :data:`NEW_VALUES` replaces, with each such
    value swapped for its replacement in the instruction and in the calls: the same requests about
    genes the corpus never drew, so a model that recalls values instead of copying them fails."""
    swap: dict[str, str] = {}
    for source, replacements in NEW_VALUES.items():
        listed = lexicon.get(source) or []
        clash = set(replacements) & set(listed)
        if clash:
            raise ValueError(f"{sorted(clash)} in the {source} lexicon already")
        swap.update(zip(listed, replacements))

    def new(value: Any) -> Any:
        return swap.get(value, value) if isinstance(value, str) else value

    out = []
    for record in records:
        used = {item for call in record["calls"] for value in call["arguments"].values()
                for item in (value if isinstance(value, list) else [value])
                if isinstance(item, str) and item in swap}
        pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(used, key=len, reverse=True)))
                             + r")(?![\w-])") if used else None
        if pattern is None or not pattern.search(record["instruction"]):
            continue
        calls = [{**call, "arguments": {name: [new(v) for v in value] if isinstance(value, list) else new(value)
                                        for name, value in call["arguments"].items()}} for call in record["calls"]]
        out.append({**record, "instruction": pattern.sub(lambda m: swap[m.group(1)], record["instruction"]),
                    "calls": calls})
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import grammar_engine
    from grammar_engine.corpus import write_corpus
    from training.data import read_corpus

    out = Path(args.out)
    results: dict[str, Any] = {"config": vars(args).copy(), "domains": {}}
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    started = time.perf_counter()
    for domain in args.domains:
        domain_dir = ROOT / "grammars" / domain
        grammar = grammar_engine.load(domain_dir)
        corpora = {}
        wanted = {DEFAULTS} | {MODELS[name][0] for name in args.models}  # the held-out set is the defaults'
        for start, length, case, casing in sorted(wanted):
            corpus = out / domain / f"corpus-{start}-sessions-{length:g}-case-{case:g}-{casing}"
            write_corpus(grammar, corpus, n=args.samples, strategy="weighted", seed=args.seed, workers=args.workers,
                         session_start=start, session_length=length, sentence_case=case, casing=casing)
            corpora[start, length, case, casing] = corpus
        heldout = read_corpus(corpora[DEFAULTS], "heldout")[:args.heldout]
        sets = {"heldout": [{**r, "id": f"h{i}"} for i, r in enumerate(heldout)],
                "recorded": [{**r, "id": f"r{i}"}
                             for i, r in enumerate(gold_records(grammar.recorded_path, require_calls=True))],
                "unseen": [{**r, "id": f"u{i}"}
                           for i, r in enumerate(gold_records(grammar.unseen_path, require_calls=True))]}
        sets["new genes"] = with_new_values(sets["recorded"] + sets["unseen"], grammar.tools.value_sources)
        for name in args.models:
            corpus_options, train, model = MODELS[name]
            jobs[(domain, name)] = {
                "domain_dir": str(domain_dir), "corpus": str(corpora[corpus_options]), "minutes": args.minutes,
                "batch_size": args.batch_size, "seed": args.seed, "threads": args.threads, "test_sets": sets,
                "output": str(out / domain / ("model-" + "".join(c if c.isalnum() else "-" for c in name))),
                "train": train, "model": model,
            }
    results["sample_s"] = time.perf_counter() - started
    started = time.perf_counter()
    results["domains"] = train_in_parallel(jobs, args.parallel, TEST_SETS)
    results["train_s"] = time.perf_counter() - started
    return results


def table(results: dict[str, Any]) -> str:
    def loss(outcome: dict[str, Any]) -> str:
        return "-" if outcome.get("final_loss") is None else f"{outcome['final_loss']:.3f}"

    return scores_table(results, "model", TEST_SETS, {
        "tokens/s": lambda outcome: f"{outcome['tokens_per_second']:,.0f}",
        "steps": lambda outcome: f"{outcome['steps']:,}", "final loss": loss})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="+", default=["singlecell"])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="which of the models to train (all by default)")
    parser.add_argument("--samples", type=int, default=10_000, help="corpus size (train + held-out) per domain")
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per model (wall clock)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--heldout", type=int, default=300, help="held-out instructions scored per domain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=min(2, os.cpu_count() or 1),
                        help="models trained at once, each in a process of its own")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="sampling processes")
    parser.add_argument("--out", default="runs/bench-training")
    args = parser.parse_args(argv)
    results = run(args)
    save_report(Path(args.out), results, table(results), "training.md",
                f"sampling: {results['sample_s'] / 60:.1f} min; training and scoring: {results['train_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
