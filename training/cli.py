"""The ``train``, ``predict`` and ``evaluate`` subcommands.

:func:`register` adds them to an ``argparse`` subparsers object; each sets ``func`` to a
function that takes the parsed arguments and returns an exit code (0 ok, 1 failed, 2 bad usage).
Heavy imports happen inside the command functions, so registering costs nothing.

Usage::

    grammar-engine train CORPUS_DIR --model tiny --output MODEL_DIR [--lora] [--epochs N]
        [--max-steps N] [--max-minutes M] [--batch-size B] [--lr LR] [--grad-accum K] [--seed S]
        [--resume] [--checkpoint-every N] [--config CONFIG.json]
    grammar-engine predict --model MODEL_DIR --input IN.jsonl --output OUT.jsonl
        [--with-parser DOMAIN_DIR] [--constrained DOMAIN_DIR] [--batch-size B] [--max-new-tokens N]
    grammar-engine evaluate --predictions P.jsonl [--predictions NAME=Q.jsonl ...] --gold G.jsonl
        --domain DOMAIN_DIR [--parser] [--output report.json]

Two processes on one CPU machine (torchrun + gloo; one thread each)::

    OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no -m training train CORPUS_DIR --output MODEL_DIR

(``accelerate launch --cpu --num_processes 2`` silently runs one process.) On GPUs use
``accelerate launch --config_file training/accelerate/ddp.yaml`` (or ``fsdp.yaml``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from grammar_engine.errors import GrammarEngineError

from .config import AdapterConfig, ConfigError, DecodeConfig, ModelConfig, TrainConfig, field_help

__all__ = ["cmd_evaluate", "cmd_pipeline", "cmd_predict", "cmd_train", "main", "register"]


def _help(cls: type, name: str) -> str:
    """The field's help with its default, e.g. ``"peak learning rate ... (default: 0.003)"``."""
    default = next(f for f in dataclasses.fields(cls) if f.name == name).default
    shown = "" if default is dataclasses.MISSING or default in ("", None) else f" (default: {default})"
    return field_help(cls, name) + shown


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


# the TrainConfig fields `train` takes as flags: (flag, field, type)
_TRAIN_FLAGS = (
    ("--epochs", "epochs", float), ("--max-steps", "max_steps", int),
    ("--max-tokens", "max_tokens", int), ("--max-minutes", "max_minutes", float),
    ("--batch-size", "batch_size", int), ("--lr", "lr", float), ("--grad-accum", "grad_accum", int),
    ("--group-by-length", "group_by_length", int),
    ("--seed", "seed", int), ("--checkpoint-every", "checkpoint_every", int),
    ("--max-length", "max_length", int), ("--threads", "num_threads", int), ("--log-every", "log_every", int),
)


def _add_train(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="fine-tune a model on a sampled corpus",
                              description="Train a model on CORPUS_DIR (train split) and save it to MODEL_DIR.")
    p.add_argument("corpus_dir", metavar="CORPUS_DIR", help=_help(TrainConfig, "corpus_dir"))
    p.add_argument("--output", "-o", dest="output_dir", metavar="MODEL_DIR", help=_help(TrainConfig, "output_dir"))
    p.add_argument("--model", default=None, metavar="NAME_OR_PATH", help=_help(ModelConfig, "name_or_path"))
    p.add_argument("--config", type=Path, metavar="CONFIG.json",
                   help="a TrainConfig JSON file; flags given on the command line override it")
    p.add_argument("--lora", action="store_true", default=None, help="train a LoRA adapter instead of all weights")
    p.add_argument("--lora-r", type=int, default=None, help=_help(AdapterConfig, "r"))
    p.add_argument("--prompt-format", choices=("auto", "plain", "chat"), default=None,
                   help=_help(ModelConfig, "prompt_format"))
    for flag, name, kind in _TRAIN_FLAGS:
        p.add_argument(flag, dest=name, type=kind, default=None, help=_help(TrainConfig, name))
    p.add_argument("--mixed-precision", dest="mixed_precision", choices=("auto", "no", "bf16", "fp16"), default=None,
                   help=_help(TrainConfig, "mixed_precision"))
    p.add_argument("--resume", action="store_true", default=None, help=_help(TrainConfig, "resume"))
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    p.set_defaults(func=cmd_train)


def _add_predict(subparsers: Any) -> None:
    p = subparsers.add_parser("predict", help="write the call lists a trained model gives for instructions",
                              description="One output line {id, calls[, error]} per input line {id, instruction}.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="a directory written by `train`")
    p.add_argument("--input", required=True, type=Path, metavar="IN.jsonl", help='lines {"id", "instruction"}')
    p.add_argument("--output", required=True, type=Path, metavar="OUT.jsonl", help='lines {"id", "calls"}')
    p.add_argument("--with-parser", type=Path, metavar="DOMAIN_DIR",
                   help="ask the domain's grammar parser first (strictly, then with up to 3 words skipped); "
                        "the model answers what it still rejects")
    p.add_argument("--constrained", type=Path, metavar="DOMAIN_DIR",
                   help="grammar-constrained decoding with the domain's tool schemas")
    p.add_argument("--batch-size", type=int, default=None, help=_help(DecodeConfig, "batch_size"))
    p.add_argument("--max-new-tokens", type=int, default=None, help=_help(DecodeConfig, "max_new_tokens"))
    p.add_argument("--allow-empty", action="store_true", help=_help(DecodeConfig, "allow_empty"))
    p.add_argument("--threads", dest="num_threads", type=int, default=None, help=_help(DecodeConfig, "num_threads"))
    p.set_defaults(func=cmd_predict)


def _add_evaluate(subparsers: Any) -> None:
    p = subparsers.add_parser("evaluate", help="score predictions against gold call lists",
                              description="Exact match and call-level precision/recall/F1, overall and per tool.")
    p.add_argument("--predictions", action="append", default=[], metavar="[NAME=]P.jsonl",
                   help="predictions of one system (repeat to compare systems; NAME defaults to the file stem)")
    p.add_argument("--gold", required=True, type=Path, metavar="G.jsonl",
                   help="recorded.jsonl or a corpus shard (lines with calls)")
    p.add_argument("--domain", required=True, type=Path, metavar="DOMAIN_DIR", help="the domain's folder (tools)")
    p.add_argument("--parser", action="store_true", help="also score the grammar parser alone on the gold instructions")
    p.add_argument("--output", type=Path, metavar="report.json", help="write the full report as JSON")
    p.set_defaults(func=cmd_evaluate)


def _add_pipeline(subparsers: Any) -> None:
    from .pipeline import PipelineConfig

    defaults = PipelineConfig("", "")
    p = subparsers.add_parser(
        "pipeline", help="check, decompose, sample, train, evaluate and report, end to end",
        description="The main job on one domain: writes report.md (tables and plots) to --output.")
    p.add_argument("domain_dir", metavar="DOMAIN_DIR", help="grammars/<domain>")
    p.add_argument("--output", "-o", required=True, help="folder for the report, corpus, model and predictions")
    p.add_argument("--samples", type=int, default=defaults.samples, help=f"corpus size (default: {defaults.samples})")
    p.add_argument("--strategy", choices=("weighted", "coverage", "uniform"), default=defaults.strategy,
                   help=f"sampling strategy (default: {defaults.strategy})")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--model", default=defaults.model, help="'tiny' or a model name/path for from_pretrained")
    p.add_argument("--max-minutes", type=float, default=defaults.max_minutes,
                   help=f"training time budget (default: {defaults.max_minutes:g})")
    p.add_argument("--threads", type=int, default=defaults.threads,
                   help=f"torch threads for training (default: {defaults.threads}; 0: torch's default); more "
                        "than one can only help a larger --model on an otherwise idle machine")
    p.add_argument("--heldout-limit", type=int, default=defaults.heldout_limit,
                   help="held-out synthetic instructions to evaluate on")
    p.add_argument("--workers", type=int, default=defaults.workers,
                   help=f"sampling processes; the corpus is the same for any number (default: {defaults.workers})")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_pipeline)


def cmd_pipeline(args: argparse.Namespace) -> int:
    """``grammar-engine pipeline DOMAIN_DIR --output DIR``."""
    from .pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(domain_dir=args.domain_dir, output_dir=args.output, samples=args.samples,
                            strategy=args.strategy, seed=args.seed, model=args.model, max_minutes=args.max_minutes,
                            heldout_limit=args.heldout_limit, workers=args.workers, progress=args.progress,
                            threads=args.threads)
    report = run_pipeline(config)
    print(f"report: {report}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``train``, ``predict``, ``evaluate`` and ``pipeline`` subcommands to ``subparsers``."""
    _add_train(subparsers)
    _add_predict(subparsers)
    _add_evaluate(subparsers)
    _add_pipeline(subparsers)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    base = TrainConfig.load(args.config).to_dict() if args.config else TrainConfig().to_dict()
    base["corpus_dir"] = str(args.corpus_dir)
    for name in ("output_dir", *(name for _flag, name, _kind in _TRAIN_FLAGS), "mixed_precision", "resume",
                 "progress"):
        value = getattr(args, name, None)
        if value is not None:
            base[name] = str(value) if name == "output_dir" else value
    if args.model is not None:
        base["model"]["name_or_path"] = args.model
    if args.prompt_format is not None:
        base["model"]["prompt_format"] = args.prompt_format
    if args.lora or args.lora_r is not None:
        base["adapter"] = base.get("adapter") or AdapterConfig().to_dict()
        if args.lora_r is not None:
            base["adapter"]["r"] = args.lora_r
    config = TrainConfig.from_dict(base)
    config.validate_paths()
    return config


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: returns 0 when the model was saved (completed or stopped by the time budget)."""
    try:
        config = _train_config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        from .trainer import train

        result = train(config)
    except ImportError as exc:
        return _error(str(exc))
    except (GrammarEngineError, ValueError, OSError) as exc:
        return _error(str(exc))
    if result.is_main_process:
        print(result.summary())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``predict``: returns 0 when every line got an output line (bad lines included, with an error)."""
    try:
        decode = DecodeConfig(**{k: v for k, v in {
            "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
            "num_threads": args.num_threads, "allow_empty": args.allow_empty or None,
        }.items() if v is not None})
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.input.is_file():
        return _error(f"no input file {args.input}")
    try:
        from .predict import Predictor, predict_file

        predictor = Predictor.from_pretrained(args.model, decode=decode, constrained_domain=args.constrained,
                                              parser_domain=args.with_parser)
        summary = predict_file(predictor, args.input, args.output)
    except (ImportError, GrammarEngineError, ValueError, OSError) as exc:
        return _error(str(exc))
    for line in summary.bad_lines[:20]:
        print(f"warning: {line}", file=sys.stderr)
    print(summary.summary())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: prints a comparison table; returns 0 when every input could be read."""
    from .evaluation import (compare_systems, format_failures, format_table, parser_predictions, read_gold,
                             read_predictions, write_report)
    from .predict import load_domain_registry, load_parser

    if not args.predictions and not args.parser:
        print("error: give --predictions P.jsonl and/or --parser", file=sys.stderr)
        return 2
    try:
        registry = load_domain_registry(args.domain)
        gold = read_gold(args.gold)
        systems: dict[str, list[dict[str, Any]]] = {}
        if args.parser:
            systems["parser"] = parser_predictions(load_parser(args.domain), gold)
        for spec in args.predictions:
            name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
            systems[name or Path(path).stem] = read_predictions(path)
    except (ImportError, GrammarEngineError, ValueError, OSError) as exc:
        return _error(str(exc))
    reports = compare_systems(systems, gold, registry)
    print(format_table(reports))
    if any(report.failures for report in reports.values()):
        print()
        print(format_failures(reports))
    if args.output:
        write_report(args.output, reports, gold=str(args.gold), domain=str(args.domain))
        print(f"report written to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m training``) with the three subcommands."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.INFO)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
