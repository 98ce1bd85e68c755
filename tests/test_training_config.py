"""Training configs: JSON round trip, validation naming the field, help metadata, lazy imports."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import AdapterConfig, ConfigError, DecodeConfig, ModelConfig, TrainConfig, field_help

pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("config", [
    TrainConfig(),
    TrainConfig(corpus_dir="c", output_dir="m", adapter=AdapterConfig(r=4, target_modules=["q_proj"]),
                max_steps=10, max_minutes=None, model=ModelConfig(hidden_size=64, num_heads=2)),
    ModelConfig(name_or_path="some/model", prompt_format="chat"),
    AdapterConfig(),
    DecodeConfig(max_new_tokens=64, allow_empty=True),
])
def test_json_round_trip(config, tmp_path):
    cls = type(config)
    assert cls.from_json(config.to_json()) == config
    assert cls.load(config.save(tmp_path / "c.json")) == config
    assert pickle.loads(pickle.dumps(config)) == config
    assert copy.deepcopy(config) == config


def test_nested_configs_are_rebuilt_from_dicts():
    config = TrainConfig.from_dict({"model": {"hidden_size": 64, "num_heads": 2}, "adapter": {"r": 2}})
    assert isinstance(config.model, ModelConfig) and config.model.hidden_size == 64
    assert isinstance(config.adapter, AdapterConfig) and config.adapter.r == 2


def test_unknown_keys_warn_and_are_ignored():
    with pytest.warns(UserWarning, match="unknown keys \\['learning_rate'\\]"):
        config = TrainConfig.from_dict({"learning_rate": 1.0, "lr": 0.01})
    assert config.lr == 0.01


BAD = [
    (TrainConfig, {"lr": 0}, "TrainConfig.lr must be > 0"),
    (TrainConfig, {"lr": float("nan")}, "TrainConfig.lr must be a finite number"),
    (TrainConfig, {"batch_size": 0}, "TrainConfig.batch_size must be >= 1"),
    (TrainConfig, {"batch_size": 2.5}, "TrainConfig.batch_size must be an integer"),
    (TrainConfig, {"grad_accum": True}, "TrainConfig.grad_accum must be an integer"),
    (TrainConfig, {"epochs": -1}, "TrainConfig.epochs must be > 0"),
    (TrainConfig, {"max_steps": 0}, "TrainConfig.max_steps must be >= 1"),
    (TrainConfig, {"max_minutes": -2}, "TrainConfig.max_minutes must be > 0"),
    (TrainConfig, {"mixed_precision": "fp8"}, "TrainConfig.mixed_precision must be one of"),
    (TrainConfig, {"min_lr_ratio": 2}, "TrainConfig.min_lr_ratio must be in"),
    (TrainConfig, {"max_length": 4096}, "TrainConfig.max_length must not exceed model.max_position_embeddings"),
    (TrainConfig, {"model": ModelConfig(prompt_format="chat")}, "TrainConfig.model"),
    (ModelConfig, {"num_heads": 3}, "ModelConfig.num_heads must divide hidden_size"),
    (ModelConfig, {"name_or_path": ""}, "ModelConfig.name_or_path"),
    (ModelConfig, {"vocab_size": 100}, "ModelConfig.vocab_size must be >= 300"),
    (ModelConfig, {"dtype": "float64"}, "ModelConfig.dtype must be one of"),
    (AdapterConfig, {"dropout": 1.0}, "AdapterConfig.dropout must be in"),
    (AdapterConfig, {"target_modules": []}, "AdapterConfig.target_modules"),
    (DecodeConfig, {"max_new_tokens": 2}, "DecodeConfig.max_new_tokens must be >= 8"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD)
def test_validation_names_the_field(cls, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace(".", "\\.").replace("[", "\\[")):
        cls(**kwargs)


def test_config_error_is_a_value_error_and_type_error():
    with pytest.raises(ValueError):
        TrainConfig(lr=-1)
    with pytest.raises(TypeError):
        TrainConfig(lr=-1)


def test_paths_are_checked_when_training():
    with pytest.raises(ConfigError, match="--output MODEL_DIR"):
        TrainConfig(corpus_dir="c").validate_paths()


def test_max_minutes_zero_means_no_budget():
    assert TrainConfig(max_minutes=0).max_minutes is None


def test_every_field_has_help():
    for cls in (TrainConfig, ModelConfig, AdapterConfig, DecodeConfig):
        for f in dataclasses.fields(cls):
            assert field_help(cls, f.name), f"{cls.__name__}.{f.name} has no help"


def test_importing_training_imports_no_torch():
    code = ("import sys, training, training.cli, training.config, training.data, training.evaluation; "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_require_names_the_extra(monkeypatch):
    from training import _imports

    monkeypatch.setattr(_imports, "_available", lambda module: module not in ("torch", "rdkit"))
    with pytest.raises(ImportError, match=r"testing needs torch: pip install 'grammar-engine\[train\]'"):
        _imports.require("torch", "json", purpose="testing")
    with pytest.raises(ImportError, match=r"grammar-engine\[chem\]"):
        _imports.require("rdkit")
    _imports.require("json")


def test_public_names_match_all():
    import training

    if getattr(training, "__file__", None) is None:
        pytest.skip("`training` resolves to a namespace package: reinstall with `pip install -e .`")
    public = {name for name in vars(training) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(training, name)).__name__ == "module"}
    assert set(training.__all__) == public - modules - {"annotations"}


def test_a_config_file_error_names_the_file_line_and_column(tmp_path):
    bad = tmp_path / "training.json"
    bad.write_text('{"lr": 0.1,\n "epochs": }')
    with pytest.raises(ConfigError, match=r"training\.json:2:12: TrainConfig: invalid JSON"):
        TrainConfig.load(bad)
    bad.write_text('{"lr": -1}')
    with pytest.raises(ConfigError, match=r"training\.json: TrainConfig\.lr must be > 0"):
        TrainConfig.load(bad)
    bad.write_text("[1]")
    with pytest.raises(ConfigError, match="a config is a JSON object"):
        TrainConfig.load(bad)


def test_a_domain_ships_its_training_settings(tmp_path):
    from training.config import domain_train_config

    root = Path(__file__).resolve().parent.parent / "grammars"
    singlecell = domain_train_config(root / "singlecell").model
    assert (singlecell.split_spaces, singlecell.value_symbols) == (True, True)
    assert domain_train_config(root / "chem").to_dict() == TrainConfig().to_dict()  # no file: the defaults
    (tmp_path / "training.json").write_text('{"model": {"hidden_size": 48, "num_heads": 5}}')
    with pytest.raises(ConfigError, match="training.json: ModelConfig.num_heads must divide hidden_size"):
        domain_train_config(tmp_path)
