"""The accelerate loop: loss goes down, checkpoints resume to the same step, time budget, LoRA, 2-process DDP."""

from __future__ import annotations

import json
import random
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from training.config import AdapterConfig, TrainConfig  # noqa: E402
from training.trainer import (  # noqa: E402
    MicroBatchSchedule,
    latest_checkpoint,
    learning_rate_factor,
    planned_steps,
    read_train_log,
    train,
)
from training_fixtures import write_toy_corpus  # noqa: E402

pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    torch.set_num_threads(1)
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=200, n_heldout=20)


def _config(corpus, output, **overrides):
    settings = {"corpus_dir": str(corpus), "output_dir": str(output), "batch_size": 16, "max_steps": 12,
                "max_minutes": None, "warmup_steps": 3, "checkpoint_every": 0, "log_every": 2, "progress": False,
                "plot": False}
    settings.update(overrides)
    return TrainConfig(**settings)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_schedule_is_a_pure_function_of_seed_and_step():
    a, b = MicroBatchSchedule(50, 8, seed=1), MicroBatchSchedule(50, 8, seed=1)
    assert [a.indices(m) for m in range(20)] == [b.indices(m) for m in reversed(range(20))][::-1]
    assert sorted(i for m in range(a.per_epoch) for i in a.indices(m)) == list(range(50))
    assert a.indices(0) != a.indices(a.per_epoch)  # each epoch reshuffles
    ranks = [MicroBatchSchedule(50, 8, world_size=2, rank=r, seed=1) for r in (0, 1)]
    for m in range(ranks[0].per_epoch):
        first, second = ranks[0].indices(m), ranks[1].indices(m)
        assert len(first) == len(second) == 8 and not set(first) & set(second) or m == ranks[0].per_epoch - 1


def test_length_grouped_batches_hold_similar_lengths_and_stay_a_pure_function():
    rng = random.Random(3)
    lengths = [rng.randint(5, 300) for _ in range(1000)]

    def padding(schedule):
        waste = total = 0
        for m in range(schedule.per_epoch):
            batch = [lengths[i] for i in schedule.indices(m)]
            waste += max(batch) * len(batch) - sum(batch)
            total += max(batch) * len(batch)
        return waste / total

    plain = MicroBatchSchedule(1000, 4, seed=1)
    grouped = MicroBatchSchedule(1000, 4, seed=1, lengths=lengths, group=16)
    again = MicroBatchSchedule(1000, 4, seed=1, lengths=lengths, group=16)
    assert padding(grouped) < 0.1 < 0.3 < padding(plain)
    assert sorted(i for m in range(grouped.per_epoch) for i in grouped.indices(m)) == list(range(1000))
    assert [grouped.indices(m) for m in range(600)] == [again.indices(m) for m in reversed(range(600))][::-1]
    # batches are not in length order across a window: the window's batches are shuffled
    means = [sum(lengths[i] for i in grouped.indices(m)) for m in range(64)]
    assert means[:16] != sorted(means[:16])
    assert grouped.indices(0) != grouped.indices(grouped.per_epoch)  # each epoch regroups
    assert MicroBatchSchedule(1000, 4, seed=1, lengths=lengths, group=1).indices(5) == plain.indices(5)
    with pytest.raises(ValueError, match="lengths"):
        MicroBatchSchedule(10, 4, lengths=[1, 2], group=4)


def test_token_budget_sets_steps_from_mean_example_length():
    schedule = MicroBatchSchedule(100, 10, seed=0)
    lengths = [40] * 50 + [60] * 50  # mean 50 tokens: a step of 10 examples sees 500
    config = TrainConfig(corpus_dir="c", output_dir="o", batch_size=10, max_tokens=5_000, max_minutes=None)
    assert planned_steps(config, lengths, schedule) == 10
    config.grad_accum = 2  # twice the tokens per optimizer step
    assert planned_steps(config, lengths, schedule) == 5
    config.max_steps = 3  # max_steps still caps the budget
    assert planned_steps(config, lengths, schedule) == 3
    small = MicroBatchSchedule(45, 32, seed=0)  # batches of 32 and 13: a pass is 2 steps, 450 tokens
    short = TrainConfig(corpus_dir="c", output_dir="o", batch_size=32, max_tokens=900, max_minutes=None)
    assert planned_steps(short, [10] * 45, small) == 4
    epochs = TrainConfig(corpus_dir="c", output_dir="o", batch_size=10, epochs=2, max_minutes=None)
    assert planned_steps(epochs, lengths, schedule) == 20  # no budget: 2 passes of 10 micro-batches
    with pytest.raises(Exception, match="max_tokens"):
        TrainConfig(corpus_dir="c", output_dir="o", max_tokens=0)


def test_learning_rate_warms_up_then_anneals_by_steps_or_time():
    factors = [learning_rate_factor(s, 100, warmup_steps=10, min_ratio=0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and max(factors) == 1.0 and factors[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(x >= y for x, y in zip(factors[10:], factors[11:]))
    assert learning_rate_factor(20, 100, warmup_steps=10, min_ratio=0.1, time_fraction=1.0) == pytest.approx(0.1)


def test_short_run_lowers_the_loss_and_writes_log_and_plot(corpus, tmp_path):
    pytest.importorskip("matplotlib")
    result = train(_config(corpus, tmp_path / "m", max_steps=60, log_every=10, plot=True))
    assert (result.stopped, result.steps, result.total_steps) == ("completed", 60, 60)
    log = read_train_log(tmp_path / "m")
    assert [r["step"] for r in log] == [10, 20, 30, 40, 50, 60]
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert all(r["tokens_per_s"] > 0 for r in log)
    assert (tmp_path / "m" / "loss.png").stat().st_size > 1000
    info = json.loads((tmp_path / "m" / "model_info.json").read_text())
    assert info["prompt_format"] == "plain" and info["steps"] == 60 and len(info["tools"]) == 12
    for name in ("config.json", "model.safetensors", "tokenizer.json", "training_config.json"):
        assert (tmp_path / "m" / name).is_file()
    assert TrainConfig.load(tmp_path / "m" / "training_config.json").max_steps == 60


def test_resume_after_a_kill_reaches_the_same_step_and_weights(corpus, tmp_path):
    straight = train(_config(corpus, tmp_path / "straight", checkpoint_every=4))
    killed = train(_config(corpus, tmp_path / "resumed", checkpoint_every=4), stop_after_steps=6)
    assert (killed.stopped, killed.steps) == ("interrupted", 6)
    assert latest_checkpoint(tmp_path / "resumed").name == "step-000004"
    resumed = train(_config(corpus, tmp_path / "resumed", checkpoint_every=4, resume=True))
    assert (resumed.stopped, resumed.resumed_from, resumed.steps) == ("completed", 4, straight.steps)
    a, b = _weights(straight.model), _weights(resumed.model)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # the log holds each step once: the killed run's records past the checkpoint were dropped
    assert [r["step"] for r in read_train_log(tmp_path / "resumed")] == list(range(2, 13, 2))
    assert [r["loss"] for r in read_train_log(tmp_path / "resumed")] == pytest.approx(
        [r["loss"] for r in read_train_log(tmp_path / "straight")], rel=1e-4)


def test_resume_refuses_a_checkpoint_of_other_data(corpus, tmp_path):
    from training.config import ConfigError

    train(_config(corpus, tmp_path / "m", checkpoint_every=2), stop_after_steps=3)
    other = write_toy_corpus(tmp_path / "other", n_train=100, n_heldout=5, seed=7)
    with pytest.raises(ConfigError, match="other data"):
        train(_config(other, tmp_path / "m", checkpoint_every=2, resume=True))


def test_time_budget_stops_saves_and_can_resume(corpus, tmp_path):
    result = train(_config(corpus, tmp_path / "m", max_steps=10_000, max_minutes=0.005))
    assert result.stopped == "time_budget" and 0 < result.steps < 10_000
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert latest_checkpoint(tmp_path / "m").name == f"step-{result.steps:06d}"
    again = train(_config(corpus, tmp_path / "m", max_steps=10_000, max_minutes=0.005, resume=True))
    assert again.resumed_from == result.steps and again.steps > result.steps and again.total_steps == 10_000


def test_lora_run_saves_adapter_and_base_and_reloads(corpus, tmp_path):
    pytest.importorskip("peft")
    from training.modeling import load_trained

    result = train(_config(corpus, tmp_path / "m", max_steps=4, adapter=AdapterConfig(r=4)))
    assert (tmp_path / "m" / "adapter_config.json").is_file() and (tmp_path / "m" / "base" / "config.json").is_file()
    model, tokenizer, info = load_trained(tmp_path / "m")
    assert info["adapter"] is True
    ids = tokenizer(["<|user|>log1p the data<|calls|>"], return_tensors="pt", add_special_tokens=False)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, result.model(**ids).logits)


def test_cli_train_command(corpus, tmp_path, capsys):
    from training.cli import main

    code = main(["train", str(corpus), "--output", str(tmp_path / "m"), "--max-steps", "3", "--batch-size", "8",
                 "--no-progress", "--checkpoint-every", "0", "--max-minutes", "0"])
    assert code == 0
    assert "completed at step 3/3" in capsys.readouterr().out
    assert main(["train", str(corpus), "--output", str(tmp_path / "m"), "--lr", "-1"]) == 2


def test_every_train_flag_reaches_the_config():
    import argparse

    from training.cli import _TRAIN_FLAGS, _train_config, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    given = {name: kind(7) for _flag, name, kind in _TRAIN_FLAGS}
    argv = ["train", "corpus", "--output", "model"]
    for flag, name, _kind in _TRAIN_FLAGS:
        argv += [flag, str(given[name])]
    config = _train_config(parser.parse_args(argv)).to_dict()
    assert {name: config[name] for name in given} == given


DDP_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    import torch
    from training.config import TrainConfig
    from training.trainer import train

    corpus, output = sys.argv[1], sys.argv[2]
    result = train(TrainConfig(corpus_dir=corpus, output_dir=output, batch_size=8, max_steps=6, max_minutes=None,
                               warmup_steps=2, checkpoint_every=3, log_every=2, progress=False, plot=False))
    digest = hashlib.sha256()
    for name, tensor in sorted(result.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    rank = int(os.environ.get("RANK", "0"))
    with open(os.path.join(output, f"rank{rank}.json"), "w") as handle:
        json.dump({"rank": rank, "world": int(os.environ.get("WORLD_SIZE", "1")), "steps": result.steps,
                   "sha": digest.hexdigest()}, handle)
""")


def test_two_process_ddp_on_cpu_keeps_ranks_identical(corpus, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
               str(script), str(corpus), str(tmp_path / "m")]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "m" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["steps"] for r in ranks] == [6, 6]
    assert ranks[0]["sha"] == ranks[1]["sha"]
    assert json.loads((tmp_path / "m" / "model_info.json").read_text())["world_size"] == 2
    assert [r["step"] for r in read_train_log(tmp_path / "m")] == [2, 4, 6]


def test_gradient_accumulation_matches_one_big_batch(corpus, tmp_path):
    big = train(_config(corpus, tmp_path / "big", batch_size=16, max_steps=3, warmup_steps=1))
    accumulated = train(_config(corpus, tmp_path / "acc", batch_size=8, grad_accum=2, max_steps=3, warmup_steps=1))
    half = train(_config(corpus, tmp_path / "half", batch_size=8, max_steps=3, warmup_steps=1))
    a, b, c = _weights(big.model), _weights(accumulated.model), _weights(half.model)

    def gap(x, y):
        return max((x[k] - y[k]).abs().max().item() for k in x)

    # Adam turns float rounding in near-zero gradients into updates of ~1e-5; a wrong normalisation
    # or batch order moves weights by ~1e-2, as plain batches of 8 do
    assert gap(a, b) < 1e-4 < 1e-3 < gap(a, c)


@pytest.mark.parametrize(("name", "kind"), [("ddp.yaml", "MULTI_GPU"), ("fsdp.yaml", "FSDP")])
def test_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    path = ROOT / "training" / "accelerate" / name
    config = load_config_from_file(str(path))
    assert config.distributed_type.value == kind and config.num_processes >= 2
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
    else:  # the CPU two-process command is documented next to the GPU config
        assert "--multi_gpu --num_processes 2 --num_machines 1" in path.read_text()


def test_lora_on_a_pretrained_directory(corpus, tmp_path):
    """`--model PATH --lora`: any from_pretrained directory as the base; only the adapter is saved."""
    pytest.importorskip("peft")
    from training.config import ModelConfig
    from training.modeling import load_trained
    from training.predict import Predictor

    train(_config(corpus, tmp_path / "base", max_steps=3))
    result = train(_config(corpus, tmp_path / "m", max_steps=3, adapter=AdapterConfig(r=2),
                           model=ModelConfig(name_or_path=str(tmp_path / "base"))))
    assert not (tmp_path / "m" / "model.safetensors").exists() and not (tmp_path / "m" / "base").exists()
    assert (tmp_path / "m" / "tokenizer.json").is_file()
    model, tokenizer, info = load_trained(tmp_path / "m")
    assert info["base_model"] == str(tmp_path / "base") and info["adapter"]
    ids = tokenizer(["<|user|>compute a pca<|calls|>"], return_tensors="pt", add_special_tokens=False)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, result.model(**ids).logits)
    assert len(Predictor(model, tokenizer, info=info).predict(["compute a pca"])) == 1
