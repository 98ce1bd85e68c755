"""A plain accelerate training loop: loss on the calls only, checkpoints, resume, time budget.

Why a hand-written loop and not ``transformers.Trainer``: the loop is short, starts in a second
rather than five, and keeps the two things this project tests exactly under our control: which
examples each optimizer step sees, and how a resumed run continues.

Which examples a step sees is a pure function of ``(seed, step)``
(:class:`MicroBatchSchedule`): micro-batch ``m`` is a slice of the ``m // per_epoch``-th
seeded shuffle. A run resumed from the checkpoint of step ``k`` therefore replays steps
``k + 1 ...`` exactly as the uninterrupted run would, reaches the same final step count, and
(the model having no dropout, the RNG states being restored) the same weights.

The learning rate is also a pure function: linear warmup, then cosine decay to
``min_lr_ratio * lr`` over ``max(step progress, time progress)``, so a run stopped by
``max_minutes`` still ends annealed. Under DDP the elapsed time is agreed across processes each
step (the maximum over ranks), so every rank uses the same learning rate.

Multi-process: ``Accelerator(cpu=True)`` when there is no GPU, so that a CPU launch with
``accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no
--dynamo_backend no -m training train ...`` (or ``torchrun --nproc_per_node 2``) trains one
model with gloo instead of two independent ones. ``batch_size`` is per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._imports import is_matplotlib_available, is_tqdm_available, require
from .config import ConfigError, TrainConfig
from .data import (
    IGNORE_INDEX,
    build_examples,
    encode_example,
    read_corpus,
    read_manifest,
    registry_from_definitions,
    resolve_prompt_format,
)
from .molecule_names import MoleculeNames
from .value_placeholders import ValuePlaceholders, placeholder_tokens

__all__ = [
    "CHECKPOINT_STATE",
    "MicroBatchSchedule",
    "TrainResult",
    "latest_checkpoint",
    "learning_rate_factor",
    "plot_loss",
    "read_train_log",
    "train",
]

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_STATE = "trainer_state.json"
TRAIN_LOG = "train_log.jsonl"


@dataclass
class TrainResult:
    """What a :func:`train` run did."""

    output_dir: Path
    steps: int
    total_steps: int
    stopped: str  # "completed", "time_budget" or "interrupted" (stop_after_steps)
    final_loss: float | None
    tokens_per_second: float
    elapsed_s: float
    resumed_from: int | None = None
    model: Any = field(default=None, repr=False)  # the trained model, unwrapped
    is_main_process: bool = True  # False on the other ranks of a multi-process run

    def summary(self) -> str:
        """One line for the console."""
        loss = "n/a" if self.final_loss is None else f"{self.final_loss:.4f}"
        return (f"{self.stopped} at step {self.steps}/{self.total_steps} in {self.elapsed_s:.0f}s: "
                f"loss {loss}, {self.tokens_per_second:,.0f} tokens/s -> {self.output_dir}")


class MicroBatchSchedule:
    """Which examples each process gets in micro-batch ``m``; a pure function of the seed.

    Epoch ``e`` is a shuffle of all examples by ``random.Random(seed * 1_000_003 + e)``, cut
    into global batches of ``batch_size * world_size``; process ``rank`` takes its slice. With
    several processes the last global batch of an epoch wraps around to the start of the same
    epoch's order, so every process has a full batch and they stay in step.

    With ``lengths`` and ``group`` > 1, batches hold examples of similar length, so that little
    of each batch is padding (random batches of 4 instructions are about 40% padding, grouped
    ones under 3%): the shuffled order is cut into windows of ``group`` optimizer steps
    (``accumulate`` global batches each), each window is sorted by length, and the window's steps
    are put back in a shuffled order. A step's examples are thus the same for batches of 16 and
    for 2 accumulated micro-batches of 8.

    Examples
    --------
    >>> s = MicroBatchSchedule(10, 4, seed=0)
    >>> s.per_epoch, sorted(s.indices(0) + s.indices(1) + s.indices(2)) == list(range(10))
    (3, True)
    """

    def __init__(self, n_examples: int, batch_size: int, *, world_size: int = 1, rank: int = 0,
                 seed: int = 0, lengths: Sequence[int] | None = None, group: int = 1,
                 accumulate: int = 1) -> None:
        if n_examples < 1:
            raise ValueError("the training split is empty")
        if lengths is not None and len(lengths) != n_examples:
            raise ValueError(f"{len(lengths)} lengths for {n_examples} examples")
        self.lengths = list(lengths) if lengths is not None and group > 1 else None
        self.group = group
        self.accumulate = accumulate
        self.n_examples = n_examples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.global_batch = batch_size * world_size
        self.per_epoch = math.ceil(n_examples / self.global_batch)
        self._epoch = -1
        self._order: list[int] = []

    def order(self, epoch: int) -> list[int]:
        """The shuffled example order of ``epoch``."""
        if epoch != self._epoch:
            order = list(range(self.n_examples))
            rng = random.Random(self.seed * 1_000_003 + epoch)
            rng.shuffle(order)
            if self.lengths is not None:
                order = self._grouped(order, rng)
            self._epoch, self._order = epoch, order
        return self._order

    def _grouped(self, order: list[int], rng: random.Random) -> list[int]:
        """``order`` with each window of ``group`` optimizer steps sorted by length, its steps shuffled."""
        assert self.lengths is not None
        size = self.global_batch * self.accumulate  # the examples of one optimizer step stay together
        window = size * self.group
        out: list[int] = []
        for start in range(0, len(order), window):
            part = sorted(order[start:start + window], key=self.lengths.__getitem__)
            batches = [part[i:i + size] for i in range(0, len(part), size)]
            full = [b for b in batches if len(b) == size]
            rng.shuffle(full)
            out += [i for b in full for i in b] + [i for b in batches if len(b) < size for i in b]
        return out

    def indices(self, micro_batch: int) -> list[int]:
        """This process's example indices in global micro-batch ``micro_batch``."""
        epoch, position = divmod(micro_batch, self.per_epoch)
        order = self.order(epoch)
        chunk = order[position * self.global_batch:(position + 1) * self.global_batch]
        if self.world_size > 1:
            while len(chunk) < self.global_batch:
                chunk += order[:self.global_batch - len(chunk)]
        return chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def total_steps(self, epochs: float, grad_accum: int) -> int:
        """Optimizer steps of ``epochs`` passes with ``grad_accum`` micro-batches per step."""
        return max(1, math.ceil(epochs * self.per_epoch / grad_accum))


def planned_steps(config: TrainConfig, lengths: list[int], schedule: MicroBatchSchedule) -> int:
    """Optimizer steps of a run: the token budget (capped by ``max_steps``), else ``max_steps``, else ``epochs``.

    A token budget becomes the passes over the data (in tokens of this run's tokenizer) that
    hold it, so runs on different corpora see about the same number of tokens; ``max_steps``
    caps it when both are set.
    """
    if config.max_tokens:
        # passes over the data that hold the budget (a pass's last batch may be short)
        epochs = config.max_tokens / max(sum(lengths), 1)
        steps = schedule.total_steps(epochs, config.grad_accum)
        return min(steps, config.max_steps) if config.max_steps else steps
    return config.max_steps or schedule.total_steps(config.epochs, config.grad_accum)


def learning_rate_factor(
    step: int, total_steps: int, *, warmup_steps: int, min_ratio: float, time_fraction: float = 0.0
) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Linear warmup over ``warmup_steps``, then cosine decay from 1 to ``min_ratio`` over
    ``max(step progress, time_fraction)``.

    Examples
    --------
    >>> [round(learning_rate_factor(s, 10, warmup_steps=2, min_ratio=0.1), 3) for s in (0, 1, 2, 9)]
    [0.5, 1.0, 1.0, 0.134]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(1.0, max(progress, time_fraction))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint of the highest step in ``output_dir`` (None when there is none).

    A checkpoint counts once its ``trainer_state.json`` exists: that file is written last, so a
    run killed while saving leaves a directory that is skipped.
    """
    root = Path(output_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if (p / CHECKPOINT_STATE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def read_train_log(output_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``MODEL_DIR/train_log.jsonl``."""
    path = Path(output_dir) / TRAIN_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss(output_dir: str | Path) -> Path | None:
    """Draw ``MODEL_DIR/loss.png`` from the train log; None when matplotlib or the log is missing."""
    records = read_train_log(output_dir)
    if not records or not is_matplotlib_available():
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas instead of pyplot: no global backend switch, no GUI, no leaked figures.
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot([r["step"] for r in records], [r["loss"] for r in records], linewidth=1.2)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (calls only)")
    axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    rate = records[-1].get("tokens_per_s")
    axes.set_title(f"final loss {records[-1]['loss']:.4f}" + (f", {rate:,.0f} tokens/s" if rate else ""))
    figure.tight_layout()
    path = Path(output_dir) / "loss.png"
    figure.savefig(path)
    return path


# -- helpers of train() ----------------------------------------------------------------------


def _mixed_precision(requested: str) -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _data_hash(encoded: Sequence[dict[str, list[int]]]) -> str:
    digest = hashlib.sha256()
    for item in encoded:
        digest.update(json.dumps([item["input_ids"], item["labels"]]).encode())
    return digest.hexdigest()[:16]


def _collate(encoded: Sequence[dict[str, list[int]]], indices: Sequence[int], pad_id: int) -> dict[str, Any]:
    import torch

    rows = [encoded[i] for i in indices]
    width = max(len(r["input_ids"]) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        input_ids[i, :n] = torch.tensor(row["input_ids"])
        labels[i, :n] = torch.tensor(row["labels"])
        mask[i, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def _optimizer(model: Any, config: TrainConfig) -> Any:
    import torch

    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=(0.9, 0.95))


def _append_log(output_dir: Path, record: dict[str, Any]) -> None:
    with open(output_dir / TRAIN_LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_log(output_dir: Path, last_step: int) -> None:
    """Drop log records past ``last_step`` (written by a run killed after its last checkpoint)."""
    records = [r for r in read_train_log(output_dir) if r["step"] <= last_step]
    (output_dir / TRAIN_LOG).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class _Progress:
    """tqdm on the main process when wanted and installed; a no-op otherwise."""

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self.bar = None
        if enabled and is_tqdm_available():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)

    def update(self, loss: float | None = None, tokens_per_s: float | None = None) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(config: TrainConfig, *, stop_after_steps: int | None = None) -> TrainResult:
    """Train a model on a corpus directory and save it to ``config.output_dir``.

    Parameters
    ----------
    config
        What to train, on what, for how long (see :class:`~training.config.TrainConfig`).
    stop_after_steps
        Stop after this many optimizer steps of this run without saving anything beyond the
        periodic checkpoints, as if the process were killed (for testing resume).

    Returns
    -------
    TrainResult
        Steps done, why it stopped, final loss, throughput, and the unwrapped model.

    Raises
    ------
    ConfigError
        When paths are missing, or ``resume`` finds a checkpoint made from other data.
    CorpusFormatError
        When the corpus has no training shard or a malformed record.
    ImportError
        When the ``train`` extra is not installed (the message says what to install).
    """
    config.validate_paths()
    require("torch", "transformers", "accelerate", purpose="training")
    if config.adapter is not None:
        require("peft", purpose="LoRA training")
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed

    from .modeling import apply_lora, build_tiny_model, count_parameters, load_base_model, quiet_transformers
    from .tokenizer import example_texts, load_tokenizer, train_tokenizer

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(config.output_dir)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision=_mixed_precision(config.mixed_precision))
    main = accelerator.is_main_process
    world = accelerator.num_processes
    set_seed(config.seed)

    checkpoint = latest_checkpoint(out) if config.resume else None
    if config.resume and checkpoint is None:
        warnings.warn(f"--resume: no checkpoint in {out / CHECKPOINT_DIR}; starting from scratch", stacklevel=2)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:
            # a fresh run must not mix with an earlier run's checkpoints, log or adapter (which
            # load_trained would prefer over the full weights this run may write)
            for stale in (CHECKPOINT_DIR, "base"):
                shutil.rmtree(out / stale, ignore_errors=True)
            for stale in (TRAIN_LOG, "adapter_config.json", "adapter_model.safetensors", "loss.png"):
                (out / stale).unlink(missing_ok=True)
    accelerator.wait_for_everyone()

    # -- data and tokenizer --
    manifest = read_manifest(config.corpus_dir)
    records = read_corpus(config.corpus_dir, "train")
    tools = manifest.get("tools") or records[0].get("tools") or []
    registry = registry_from_definitions(tools, manifest.get("domain", "")) if tools else None
    lexicon = manifest.get("molecules") if config.model.molecule_names else None
    molecules = MoleculeNames(lexicon) if lexicon and registry is not None and registry.takes_molecules else None
    placeholders = (ValuePlaceholders.from_records(records, registry, symbols=config.model.value_symbols,
                                                   number_words=config.model.value_number_words)
                    if config.model.value_placeholders else None)
    if config.model.is_tiny:
        if checkpoint is None and main:
            plain = build_examples(records, prompt_format="plain", registry=registry, molecules=molecules,
                                   placeholders=placeholders)
            tokenizer = train_tokenizer(example_texts(plain), vocab_size=config.model.vocab_size,
                                        model_max_length=config.model.max_position_embeddings,
                                        split_spaces=config.model.split_spaces,
                                        extra_tokens=placeholder_tokens() if placeholders else ())
            tokenizer.save_pretrained(str(out))
        accelerator.wait_for_everyone()
        tokenizer = load_tokenizer(out)  # every rank reads the saved one: identical, and the predict path
    else:
        tokenizer = load_tokenizer(config.model.name_or_path)
    prompt_format = resolve_prompt_format(config.model.prompt_format, tokenizer)
    if prompt_format != "plain":
        molecules = placeholders = None
    examples = build_examples(records, prompt_format=prompt_format, tokenizer=tokenizer, tools=tools,
                              registry=registry, molecules=molecules, placeholders=placeholders)
    encoded = [encode_example(e, tokenizer, config.max_length) for e in examples]
    data_hash = _data_hash(encoded)
    max_target = max(sum(1 for label in e["labels"] if label != IGNORE_INDEX) for e in encoded)

    # -- model --
    if config.model.is_tiny:
        init_dir = out / "base" if config.adapter is not None else out
        if main:
            model = build_tiny_model(tokenizer, config.model, init_dir, seed=config.seed)
        accelerator.wait_for_everyone()
        if not main:
            model = load_base_model(init_dir, dtype="float32")
    else:
        model = load_base_model(config.model.name_or_path, dtype=config.model.dtype)
    if config.adapter is not None:
        model = apply_lora(model, config.adapter)
    parameters = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    optimizer = _optimizer(model, config)
    model, optimizer = accelerator.prepare(model, optimizer)

    lengths = [len(e["input_ids"]) for e in encoded]
    schedule = MicroBatchSchedule(len(encoded), config.batch_size, world_size=world,
                                  rank=accelerator.process_index, seed=config.seed,
                                  lengths=lengths, group=config.group_by_length, accumulate=config.grad_accum)
    total_steps = planned_steps(config, lengths, schedule)
    start_step, elapsed_before = 0, 0.0
    if checkpoint is not None:
        state = json.loads((checkpoint / CHECKPOINT_STATE).read_text(encoding="utf-8"))
        if state["data_hash"] != data_hash or state["world_size"] != world:
            raise ConfigError(
                f"checkpoint {checkpoint} was made from other data or another number of processes "
                f"(data {state['data_hash']} vs {data_hash}, processes {state['world_size']} vs {world})",
                hint="resume with the same corpus, tokenizer and launch, or train without --resume",
            )
        accelerator.load_state(str(checkpoint))
        start_step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        if state["total_steps"] != total_steps:
            logger.warning("resuming to the checkpoint's final step %d (this config gives %d)",
                           state["total_steps"], total_steps)
        total_steps = int(state["total_steps"])
        if main:
            _truncate_log(out, start_step)

    info = {
        "base_model": config.model.name_or_path,
        "adapter": config.adapter is not None,
        "prompt_format": prompt_format,
        "domain": manifest.get("domain", ""),
        "tools": tools,
        "molecules": molecules.names if molecules is not None else None,
        "value_placeholders": placeholders.to_dict() if placeholders is not None else None,
        "max_target_tokens": max_target,
        "parameters": parameters,
        "trainable_parameters": trainable,
        "train_examples": len(encoded),
        "corpus_dir": str(config.corpus_dir),
        "grammar_hash": manifest.get("grammar_hash"),
        "world_size": world,
    }
    if main:
        config.save(out / "training_config.json")
        _write_json(out / "model_info.json", info)
        logger.info("training %s (%d parameters, %d trainable) on %d examples for %d steps",
                    config.model.name_or_path, parameters, trainable, len(encoded), total_steps)

    def save_checkpoint(step: int, elapsed: float) -> None:
        directory = out / CHECKPOINT_DIR / f"step-{step:06d}"
        with _quiet_logger("accelerate.utils.other"):  # "Removed shared tensor": tied embeddings, reloaded fine
            accelerator.save_state(str(directory))
        accelerator.wait_for_everyone()
        if main:
            _write_json(directory / CHECKPOINT_STATE, {
                "step": step, "total_steps": total_steps, "elapsed_s": elapsed,
                "data_hash": data_hash, "world_size": world, "seed": config.seed,
            })
            done = sorted((p for p in (out / CHECKPOINT_DIR).glob("step-*") if (p / CHECKPOINT_STATE).is_file()),
                          key=lambda p: int(p.name.split("-")[1]))
            for old in done[:-config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    budget = config.max_minutes * 60.0 if config.max_minutes else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = accelerator.device
    progress = _Progress(config.progress and main, total_steps, start_step)
    run_start = time.perf_counter()
    window = {"loss": 0.0, "steps": 0, "tokens": 0, "start": run_start}
    last_loss: float | None = None
    rate = 0.0
    run_tokens = 0
    stopped = "completed"
    step = start_step
    model.train()
    try:
        while step < total_steps:
            elapsed_run = time.perf_counter() - run_start
            if world > 1:  # every rank must use the same time (learning rate, budget decision)
                elapsed_run = float(accelerator.gather(torch.tensor([elapsed_run], device=device)).max())
            if budget is not None and elapsed_run >= budget:
                stopped = "time_budget"
                break
            factor = learning_rate_factor(
                step, total_steps, warmup_steps=config.warmup_steps, min_ratio=config.min_lr_ratio,
                time_fraction=elapsed_run / budget if budget else 0.0,
            )
            for group in optimizer.param_groups:
                group["lr"] = config.lr * factor
            batches = [_collate(encoded, schedule.indices(step * config.grad_accum + j), pad_id)
                       for j in range(config.grad_accum)]
            n_labels = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
            step_loss = 0.0
            for j, batch in enumerate(batches):
                batch = {k: v.to(device) for k, v in batch.items()}
                sync = j == len(batches) - 1
                with (contextlib.nullcontext() if sync else accelerator.no_sync(model)):
                    with accelerator.autocast():
                        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                    loss = torch.nn.functional.cross_entropy(
                        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                        batch["labels"][:, 1:].reshape(-1),
                        ignore_index=IGNORE_INDEX, reduction="sum",
                    ) / max(n_labels, 1)
                    accelerator.backward(loss)
                step_loss += float(loss.detach())
                tokens = int(batch["attention_mask"].sum())
                window["tokens"] += tokens
                run_tokens += tokens
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window["loss"] += step_loss
            window["steps"] += 1

            logged = None
            if step % config.log_every == 0 or step == total_steps:
                totals = torch.tensor([window["loss"], window["steps"], window["tokens"]], device=device,
                                      dtype=torch.float64)
                totals = accelerator.reduce(totals, reduction="sum") if world > 1 else totals
                now = time.perf_counter()
                last_loss = float(totals[0] / max(float(totals[1]), 1.0))
                rate = float(totals[2]) / max(now - window["start"], 1e-9)
                logged = {"step": step, "loss": round(last_loss, 6), "lr": config.lr * factor,
                          "tokens_per_s": round(rate, 1),
                          "elapsed_s": round(elapsed_before + now - run_start, 2),
                          "epoch": round(step * config.grad_accum / schedule.per_epoch, 3)}
                if main:
                    _append_log(out, logged)
                window = {"loss": 0.0, "steps": 0, "tokens": 0, "start": now}
            progress.update(last_loss if logged else None, rate)

            if stop_after_steps is not None and step - start_step >= stop_after_steps and step < total_steps:
                stopped = "interrupted"
                break
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total_steps:
                save_checkpoint(step, elapsed_before + time.perf_counter() - run_start)
    finally:
        progress.close()

    run_seconds = time.perf_counter() - run_start
    elapsed = elapsed_before + run_seconds
    rate = run_tokens * world / max(run_seconds, 1e-9)  # all processes, whole run (the log has windows)
    unwrapped = accelerator.unwrap_model(model)
    if stopped == "interrupted":
        return TrainResult(out, step, total_steps, stopped, last_loss, rate, elapsed,
                           resumed_from=start_step if checkpoint else None, model=unwrapped,
                           is_main_process=main)
    if stopped == "time_budget" and step < total_steps and step > start_step:
        save_checkpoint(step, elapsed)  # `--resume` continues to total_steps
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model) if accelerator.distributed_type == DistributedType.FSDP else None
    if main:
        with quiet_transformers():
            if state_dict is not None:
                unwrapped.save_pretrained(str(out), state_dict=state_dict)
            else:
                unwrapped.save_pretrained(str(out))
            if not config.model.is_tiny:
                tokenizer.save_pretrained(str(out))
        info.update({"steps": step, "total_steps": total_steps, "stopped": stopped, "final_loss": last_loss,
                     "tokens_per_s": round(rate, 1), "elapsed_s": round(elapsed, 2)})
        _write_json(out / "model_info.json", info)
        if config.plot:
            plot_loss(out)
    accelerator.wait_for_everyone()
    return TrainResult(out, step, total_steps, stopped, last_loss, rate, elapsed,
                       resumed_from=start_step if checkpoint else None, model=unwrapped,
                           is_main_process=main)
