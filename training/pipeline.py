"""The main job: check, decompose, sample, train the tiny model, evaluate, and write a report.

``grammar-engine pipeline grammars/singlecell --output runs/singlecell`` writes::

    runs/singlecell/
        report.md            the report people read: tables and the plots below
        report.json          every figure in it, for machines
        check.json           static checks and the language size
        decomposition.md     parse rate, accuracy against gold, expansion usage, rejected lines
        corpus/              the verified synthetic corpus (train and held-out shards, manifest)
        model/               the tiny model, its tokenizer, train_log.jsonl, loss.png
        predictions/         recorded.jsonl and heldout.jsonl predictions of each system
        coverage.png         expansion and 2-path coverage against samples drawn
        accuracy_per_tool_<set>.png   call F1 per tool, per system
        failures.png         the model's misses on each evaluation set, by kind
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PipelineConfig", "run_pipeline"]


@dataclass
class PipelineConfig:
    """What the pipeline does; every default can be overridden from the command line."""

    domain_dir: str
    output_dir: str
    samples: int = 25_000  # 3,000 let the model memorize; 25,000 beat 10,000 on the recordings and unseen, 50,000 did not
    strategy: str = "weighted"
    seed: int = 0
    model: str = "tiny"
    max_minutes: float = 6.0
    threads: int = 1  # torch threads for training; the tiny model gains nothing from 2, even alone
    coverage_points: int = 400
    heldout_limit: int = 300
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    progress: bool = True


def _stage(number: int, total: int, title: str) -> float:
    print(f"[{number}/{total}] {title}", file=sys.stderr, flush=True)
    return time.perf_counter()


def _done(start: float, message: str) -> None:
    print(f"      {message} ({time.perf_counter() - start:.1f}s)", file=sys.stderr, flush=True)


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional; the tables are always written
        return None
    return plt


def plot_coverage(curve: Mapping[str, list[tuple[int, float]]], path: Path, title: str) -> Path | None:
    """Coverage (0..1) of each target kind against samples drawn."""
    plt = _plt()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for kind, points in curve.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=kind)
    ax.set_xscale("log")
    ax.set_xlabel("samples drawn")
    ax.set_ylabel("share of targets covered")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_tool(reports: Mapping[str, Any], path: Path, title: str,
                  known: Iterable[str] | None = None) -> Path | None:
    """Call-level F1 per tool for each system, as grouped bars.

    With ``known`` (the domain's tool names), only those tools get bars: a tool name a model
    invented counts against its precision in the tables but gets no bar of its own.
    """
    plt = _plt()
    if plt is None:
        return None
    tools = sorted({tool for report in reports.values() for tool in report.per_tool})
    if known is not None:
        tools = [tool for tool in tools if tool in set(known)]
    if not tools:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, len(tools) * 0.45), 4.2))
    width = 0.8 / max(1, len(reports))
    for i, (name, report) in enumerate(reports.items()):
        values = [report.per_tool[t].f1 if t in report.per_tool else 0.0 for t in tools]
        ax.bar([x + i * width for x in range(len(tools))], values, width=width, label=name)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(tools))])
    ax.set_xticklabels(tools, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("call-level F1")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, pad=22)
    ax.legend(fontsize=8, ncol=len(reports), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_failures(evaluation: Mapping[str, Mapping[str, Any]], path: Path, title: str,
                  system: str = "model") -> Path | None:
    """One system's misses on each evaluation set, as stacked bars of the failure kinds (share of n)."""
    from .evaluation import FAILURE_KINDS

    plt = _plt()
    reports = {name: sets[system] for name, sets in evaluation.items() if system in sets and sets[system].n}
    if plt is None or not reports:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 2.0 + 0.55 * len(reports)))
    names = list(reports)
    left = [0.0] * len(names)
    for kind in FAILURE_KINDS:
        shares = [reports[name].failures[kind] / reports[name].n for name in names]
        if any(shares):
            ax.barh(names, shares, left=left, label=kind)
            left = [a + b for a, b in zip(left, shares)]
    ax.invert_yaxis()
    ax.set_xlim(0, max(0.05, min(1.0, max(left) * 1.1)))
    ax.set_xlabel(f"share of the set the {system} misses")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def coverage_curve(grammar: Any, records: Iterable[Mapping[str, Any]], points: Iterable[int]) -> dict[str, list[tuple[int, float]]]:
    """Share of expansion, 2-path, tool x phrasing and tool-pair targets covered after N records."""
    records = list(records)
    wanted = sorted({min(p, len(records)) for p in points if p > 0})
    report = grammar.coverage((r["instruction"] for r in records[: max(wanted, default=0)]), checkpoints=wanted)
    data = report.to_dict()
    totals = data["total"]
    curve: dict[str, list[tuple[int, float]]] = {}
    for point in data["curve"]:
        for kind in ("expansion", "path2", "tool_phrasing", "tool_pair"):
            if totals.get(kind):
                curve.setdefault(kind, []).append((point["samples"], point[kind] / totals[kind]))
    return curve


def _big(count: int) -> str:
    if count < 10**12:
        return f"{count:,}"
    digits = str(count)
    return f"{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"


def _markdown_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _system_rows(reports: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for name, report in reports.items():
        calls = report.calls
        rows.append([name, report.n, f"{report.exact_match:.3f}", f"{calls.precision:.3f}", f"{calls.recall:.3f}",
                     f"{calls.f1:.3f}", f"{report.schema_valid / report.n:.3f}" if report.n else "-"])
    return rows


def run_pipeline(config: PipelineConfig, *, log: Callable[[str], None] = print) -> Path:
    """Run every stage and return the path of ``report.md``.

    Raises
    ------
    grammar_engine.GrammarCheckError
        When the grammar has check errors (nothing is sampled from a broken grammar).
    """
    import grammar_engine
    from grammar_engine.corpus import write_corpus
    from grammar_engine.errors import GrammarCheckError
    from grammar_engine.recordings import Record, read_instructions
    from grammar_engine.recovery import parse_with_recovery

    from .config import TrainConfig, domain_train_config, domain_training_file
    from .data import read_corpus
    from .evaluation import compare_systems
    from .predict import Predictor
    from .trainer import train

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = 6
    figures: dict[str, Any] = {"domain_dir": config.domain_dir}

    start = _stage(1, stages, f"check {config.domain_dir}")
    grammar = grammar_engine.load(config.domain_dir)
    recorded = [item for item in read_instructions(grammar.recorded_path)] if grammar.recorded_path else []
    recorded_records = [item.raw for item in recorded if isinstance(item, Record)]
    check = grammar.check(recorded_records)
    (out / "check.json").write_text(json.dumps(check.to_dict(), indent=2), encoding="utf-8")
    if not check.ok:
        raise GrammarCheckError(check.diagnostics)
    figures["check"] = {"tools": check.tools, "rules": check.rules, "expansions": check.expansions,
                        "language_size": check.language_size, "infinite": check.language_infinite,
                        "warnings": len(check.warnings), "ambiguous": len(check.ambiguous)}
    _done(start, f"{check.tools} tools, {check.expansions} expansions, {len(check.warnings)} warnings")

    start = _stage(2, stages, "decompose the recorded instructions")
    from grammar_engine.decompose import decompose_file

    decomposition = decompose_file(grammar, grammar.recorded_path) if grammar.recorded_path else None
    if decomposition is not None:
        (out / "decomposition.md").write_text(decomposition.to_markdown(grammar), encoding="utf-8")
        figures["decomposition"] = {"instructions": decomposition.instructions, "parsed": decomposition.parsed,
                                    "with_gold": decomposition.with_gold, "correct": decomposition.correct}
        _done(start, f"{decomposition.parsed}/{decomposition.instructions} parse, "
                     f"{decomposition.correct}/{decomposition.with_gold} match gold")

    start = _stage(3, stages, f"sample {config.samples} verified instructions ({config.strategy})")
    corpus_dir = out / "corpus"
    manifest = write_corpus(grammar, corpus_dir, n=config.samples, strategy=config.strategy, seed=config.seed,
                            workers=config.workers, progress=config.progress)
    figures["corpus"] = {k: manifest.get(k) for k in ("counts", "rejected", "dedup", "verification") if k in manifest}
    train_records = read_corpus(corpus_dir, "train")
    heldout_records = read_corpus(corpus_dir, "heldout")[: config.heldout_limit] if any(
        corpus_dir.glob("heldout-*.jsonl")) else []
    points = [p for p in (10, 30, 100, 300, 1000, 3000) if p < config.coverage_points] + [config.coverage_points]
    curve = coverage_curve(grammar, train_records, points)
    figures["coverage"] = curve
    plot_coverage(curve, out / "coverage.png", f"{grammar.domain}: coverage of the sampled corpus")
    _done(start, f"{len(train_records)} train, {len(heldout_records)} held-out records")

    start = _stage(4, stages, f"train the {config.model} model (up to {config.max_minutes:g} min)")
    model_dir = out / "model"
    settings = domain_train_config(config.domain_dir).to_dict()  # the domain's measured settings, if any
    settings.update(corpus_dir=str(corpus_dir), output_dir=str(model_dir), max_minutes=config.max_minutes,
                    seed=config.seed, progress=config.progress, num_threads=config.threads)
    settings["model"]["name_or_path"] = config.model
    train_config = TrainConfig.from_dict(settings)
    result = train(train_config)
    settings_file = domain_training_file(config.domain_dir)
    figures["training"] = {"settings": str(settings_file) if settings_file is not None else None,
                           "steps": result.steps, "stopped": result.stopped, "final_loss": result.final_loss,
                           "tokens_per_second": result.tokens_per_second, "elapsed_s": result.elapsed_s}
    _done(start, result.summary())

    start = _stage(5, stages, "predict and evaluate")
    predictions_dir = out / "predictions"
    predictions_dir.mkdir(exist_ok=True)
    model_only = Predictor.from_pretrained(model_dir)
    evaluation: dict[str, dict[str, Any]] = {}
    unseen_records = [item.raw for item in read_instructions(grammar.unseen_path, require_calls=True)
                      if isinstance(item, Record)] if grammar.unseen_path else []
    gold_sets = {"recorded": [r for r in recorded_records if isinstance(r.get("calls"), list)],
                 "heldout": heldout_records,
                 "unseen": [r for r in unseen_records if isinstance(r.get("calls"), list)]}
    for set_name, gold in gold_sets.items():
        if not gold:
            continue
        texts = [g["instruction"] for g in gold]
        ids = [str(g.get("id", i)) for i, g in enumerate(gold)]
        systems: dict[str, list[dict[str, Any]]] = {}
        model_predictions = model_only.predict(texts)
        systems["model"] = [{"id": i, **p} for i, p in zip(ids, model_predictions)]
        parser_predictions = []
        for i, text in zip(ids, texts):
            try:
                parser_predictions.append({"id": i, "calls": grammar.parse(text).calls})
            except grammar_engine.InstructionParseError as exc:
                parser_predictions.append({"id": i, "calls": [], "error": str(exc).splitlines()[0]})
        systems["parser"] = parser_predictions
        recovering = []
        for i, text, strict in zip(ids, texts, parser_predictions):
            if not strict.get("error"):
                recovering.append(strict)
                continue
            try:
                recovered = parse_with_recovery(grammar, text)
                recovering.append({"id": i, "calls": recovered.calls,
                                   "skipped": [w.to_dict() for w in recovered.skipped]})
            except grammar_engine.InstructionParseError as exc:
                recovering.append({"id": i, "calls": [], "error": str(exc).splitlines()[0]})
        systems["parser+recovery"] = recovering
        systems["parser+model"] = [p if not p.get("error") else {**m, "source": "model"}
                                   for p, m in zip(recovering, systems["model"])]
        for name, rows in systems.items():
            with open(predictions_dir / f"{set_name}.{name}.jsonl", "w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        gold_with_ids = [{**g, "id": i} for g, i in zip(gold, ids)]
        reports = compare_systems(systems, gold_with_ids, grammar.tools)
        evaluation[set_name] = reports
        plot_per_tool(reports, out / f"accuracy_per_tool_{set_name}.png",
                      f"{grammar.domain}: call F1 per tool on the {set_name} set", known=grammar.tools.tools)
    figures["evaluation"] = {s: {n: r.to_dict() for n, r in reports.items()} for s, reports in evaluation.items()}
    plot_failures(evaluation, out / "failures.png", f"{grammar.domain}: why the model misses")
    _done(start, "; ".join(f"{s}: model exact {r['model'].exact_match:.2f}, parser {r['parser'].exact_match:.2f}, "
                           f"both {r['parser+model'].exact_match:.2f}" for s, r in evaluation.items()))

    start = _stage(6, stages, "write the report")
    (out / "report.json").write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    report_path = out / "report.md"
    report_path.write_text(_report_markdown(grammar, config, figures, evaluation, out), encoding="utf-8")
    _done(start, f"{report_path}")
    return report_path


def _report_markdown(grammar: Any, config: PipelineConfig, figures: dict[str, Any],
                     evaluation: Mapping[str, Mapping[str, Any]], out: Path) -> str:
    from .evaluation import FAILURE_KINDS

    check = figures["check"]
    lines = [f"# {grammar.domain}: pipeline report", "",
             f"Grammar `{config.domain_dir}`: {check['tools']} tools, {check['rules']} rules, "
             f"{check['expansions']} expansions; {_big(check['language_size'])} derivations"
             + (" (up to the depth bound; the language is infinite)" if check["infinite"] else "") + ".", ""]
    dec = figures.get("decomposition")
    if dec:
        lines += ["## Recorded instructions", "",
                  f"{dec['parsed']}/{dec['instructions']} parse; {dec['correct']}/{dec['with_gold']} of those with "
                  "gold calls parse to exactly them. Rejected lines and expansion usage: "
                  "[decomposition.md](decomposition.md).", ""]
    corpus = figures.get("corpus", {})
    lines += ["## Synthetic corpus", "", f"Strategy `{config.strategy}`, seed {config.seed}: "
              f"`{json.dumps(corpus.get('counts'))}`; rejected samples: `{json.dumps(corpus.get('rejected'))}`.", ""]
    if (out / "coverage.png").exists():
        lines += ["![coverage against samples](coverage.png)", ""]
    training = figures["training"]
    lines += ["## Training", "", f"{training['steps']} steps ({training['stopped']}), final loss "
              f"{training['final_loss']}, {training['tokens_per_second']:,.0f} tokens/s, "
              f"{training['elapsed_s']:.0f} s."
              + (f" Settings of the domain: `{training['settings']}`." if training.get("settings") else ""), ""]
    if (out / "model" / "loss.png").exists():
        lines += ["![training loss](model/loss.png)", ""]
    about = {"recorded": "the recorded instructions (the grammar's weights were learned from them)",
             "heldout": "synthetic instructions whose phrasing x tool combinations no training record has",
             "unseen": "instructions written against the tool contract alone, never fitted by the grammar"}
    for set_name, reports in evaluation.items():
        what = about.get(set_name, set_name)
        lines += [f"## Evaluation on the {set_name} set", "", f"{what[0].upper()}{what[1:]}.", ""]
        lines += _markdown_table(["system", "n", "exact match", "precision", "recall", "F1", "schema-valid"],
                                 _system_rows(reports))
        lines.append("")
        if (out / f"accuracy_per_tool_{set_name}.png").exists():
            lines += [f"![F1 per tool]({f'accuracy_per_tool_{set_name}.png'})", ""]
        if any(report.failures for report in reports.values()):
            lines += ["Misses by kind:", ""]
            lines += _markdown_table(["kind", *reports], [[kind, *(r.failures[kind] for r in reports.values())]
                                                          for kind in FAILURE_KINDS])
            wrong = reports["model"].wrong_arguments.most_common(8)
            if wrong:
                lines += ["", "Arguments the model gets wrong in calls of the right tool: "
                          + ", ".join(f"`{slot}` {count}" for slot, count in wrong) + "."]
            lines.append("")
        failures = reports["model"].mismatches[:15]
        if failures:
            lines += ["Where the model fails (first 15):", ""]
            lines += _markdown_table(
                ["instruction", "kind", "gold", "predicted"],
                [[f"`{f['instruction']}`", f.get("kind", ""), f"`{json.dumps(f['gold'])}`",
                  f"`{json.dumps(f['predicted'])}`"] for f in failures])
            lines.append("")
    if (out / "failures.png").exists():
        lines += ["## Why the model misses", "",
                  "; ".join(f"*{kind}*: {meaning}" for kind, meaning in FAILURE_KINDS.items()) + ".", "",
                  "![the model's misses by kind](failures.png)", ""]
    return "\n".join(lines) + "\n"
