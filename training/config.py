"""Configuration of training and decoding: dataclasses that validate themselves and round-trip JSON.

Every field carries ``metadata={"help": ...}``; the CLI builds its option help from it
(:func:`field_help`), so the documentation of an option lives in one place. ``__post_init__``
checks each value and each combination of values and names the field to change.
:meth:`to_dict`/:meth:`from_dict` and :meth:`save`/:meth:`load` round-trip through JSON; an unknown
key warns (a config written by a newer version still loads) instead of failing.

Adding an option touches these places: the field here (with help), its check in
``__post_init__``, the CLI flag in :mod:`training.cli`, and the code that reads it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from grammar_engine.errors import InvalidArgument, Location

__all__ = [
    "AdapterConfig",
    "ConfigError",
    "DecodeConfig",
    "ModelConfig",
    "DOMAIN_TRAINING_FILE",
    "TrainConfig",
    "domain_train_config",
    "domain_training_file",
    "field_help",
]

_C = TypeVar("_C", bound="_JsonConfig")

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
PROMPT_FORMATS = ("auto", "plain", "chat")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class ConfigError(InvalidArgument, ValueError):
    """A config field has a bad value; the message names ``Class.field``, the value and the fix.

    It is an :class:`~grammar_engine.errors.InvalidArgument` (and so a ``TypeError``) and also a
    ``ValueError``, so either ``except`` catches it.
    """


def field_help(cls: type, name: str) -> str:
    """The ``help`` metadata of field ``name`` of dataclass ``cls`` (for argparse).

    Examples
    --------
    >>> field_help(TrainConfig, "lr")
    'peak learning rate of AdamW (after warmup; cosine decay to min_lr_ratio * lr)'
    """
    for f in dataclasses.fields(cls):
        if f.name == name:
            return str(f.metadata.get("help", ""))
    raise KeyError(f"{cls.__name__} has no field {name!r}")


class _JsonConfig:
    """JSON round trip and checks shared by the config dataclasses."""

    # field name -> config class, for fields holding a nested config
    _nested: ClassVar[dict[str, type]] = {}

    def _fail(self, name: str, value: Any, requirement: str, fix: str = "") -> None:
        message = f"{type(self).__name__}.{name} {requirement}, got {value!r}"
        raise ConfigError(message, hint=fix)

    def _check_positive(self, name: str, *, allow_none: bool = False, allow_zero: bool = False) -> None:
        value = getattr(self, name)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self._fail(name, value, "must be a finite number")
        if value < 0 or (value == 0 and not allow_zero):
            self._fail(name, value, "must be >= 0" if allow_zero else "must be > 0")

    def _check_int(self, name: str, *, minimum: int = 1, allow_none: bool = False) -> None:
        value = getattr(self, name)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            self._fail(name, value, "must be an integer")
        if value < minimum:
            self._fail(name, value, f"must be >= {minimum}")

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            self._fail(name, value, f"must be one of {list(choices)}")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data (nested configs as dicts)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, _JsonConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
        """Build a config from :meth:`to_dict` output; unknown keys warn and are ignored."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} must be built from a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            warnings.warn(
                f"{cls.__name__}: ignoring unknown keys {unknown} (known: {sorted(names)})",
                UserWarning,
                stacklevel=2,
            )
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                continue
            nested = cls._nested.get(key)
            if nested is not None and isinstance(value, dict):
                value = nested.from_dict(value)  # type: ignore[attr-defined]
            kwargs[key] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        """The config as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls: type[_C], text: str) -> _C:
        """Parse :meth:`to_json` output."""
        return cls._from_text(text, None)

    @classmethod
    def _from_text(cls: type[_C], text: str, path: str | Path | None) -> _C:
        where = f"{path}: " if path is not None else ""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            location = Location(str(path), exc.lineno, exc.colno) if path is not None else None
            raise ConfigError(f"{cls.__name__}: invalid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})",
                              location, hint="a config file is one JSON object of field names and values") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}{cls.__name__}: a config is a JSON object, got {type(data).__name__}",
                              hint='write {"field": value, ...}')
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            if path is None:
                raise
            raise ConfigError(f"{where}{exc.message}", hint=exc.hint) from None

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` and return it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls: type[_C], path: str | Path) -> _C:
        """Read a config written by :meth:`save`, or by hand (any subset of the fields).

        Raises
        ------
        ConfigError
            Naming ``path`` (and the line and column of a JSON syntax error) for a bad file.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the config ({exc})", hint="pass a UTF-8 JSON file") from None
        return cls._from_text(text, path)


@dataclass
class ModelConfig(_JsonConfig):
    """Which model to train, and the size of the ``tiny`` one built from scratch.

    The tiny defaults (hidden 64, 4 layers, 2 heads, feed-forward 192: about 0.3M parameters
    with a 1,024-token vocabulary) reach the best accuracy in a fixed wall-clock budget on one
    CPU thread: a narrower model sees more examples in the same minutes, and the 0.9M-parameter
    model (hidden 128) was still underfitting when its 6 minutes ran out
    (``benchmarks/bench_training.py``).
    """

    name_or_path: str = field(
        default="tiny",
        metadata={"help": "'tiny' builds a ~0.3M-parameter Llama and a byte-level BPE tokenizer from the "
                          "corpus; anything else is a local directory or hub name for from_pretrained"},
    )
    hidden_size: int = field(default=64, metadata={"help": "tiny model: hidden size"})
    num_layers: int = field(default=4, metadata={"help": "tiny model: decoder layers"})
    num_heads: int = field(default=2, metadata={"help": "tiny model: attention heads (divides hidden_size)"})
    intermediate_size: int = field(default=192, metadata={"help": "tiny model: feed-forward size"})
    max_position_embeddings: int = field(
        default=512, metadata={"help": "tiny model: longest prompt + completion in tokens"}
    )
    vocab_size: int = field(
        default=1024,
        metadata={"help": "tiny model: vocabulary the BPE tokenizer may grow to (it stops below on a "
                          "small corpus; the embedding is sized from the trained tokenizer)"},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "weights dtype when loading: auto (float32 on CPU, the saved dtype on GPU), "
                          "float32, bfloat16, float16"},
    )
    split_spaces: bool = field(
        default=False,
        metadata={"help": "tiny tokenizer: every space its own token, so a word is spelled with the same "
                          "tokens in the instruction and in the calls (a domain's training.json turns it on "
                          "where it measured better: singlecell, not chem)"},
    )
    molecule_names: bool = field(
        default=True,
        metadata={"help": "plain format: a molecule the instruction names is written by that name and read "
                          "back as its SMILES through the corpus's lexicon"},
    )
    value_placeholders: bool = field(
        default=True,
        metadata={"help": "plain format: the instruction's numbers and paths become numbered placeholders "
                          "that the calls refer to, and are put back after generation"},
    )
    value_symbols: bool = field(
        default=False,
        metadata={"help": "with value_placeholders: identifier-shaped words the corpus only used as string "
                          "values (gene symbols, obs keys: CD3E, donor_id) are placeholders too (a domain's "
                          "training.json turns it on where it measured better: singlecell)"},
    )
    value_number_words: bool = field(
        default=True,
        metadata={"help": "with value_placeholders: numbers written in words (fifty, ten thousand, 1 million) "
                          "are placeholders too, put back as the number they spell"},
    )
    prompt_format: str = field(
        default="auto",
        metadata={"help": "plain (<|user|>...<|calls|>JSON<|end|>), chat (the tokenizer's chat template "
                          "with tools), or auto (chat when the tokenizer has a template)"},
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name_or_path, str) or not self.name_or_path.strip():
            self._fail("name_or_path", self.name_or_path, "must be 'tiny' or a model directory/name")
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings"):
            self._check_int(name)
        self._check_int("vocab_size", minimum=300)  # 256 bytes + special tokens + some merges
        if self.hidden_size % self.num_heads:
            self._fail("num_heads", self.num_heads, f"must divide hidden_size ({self.hidden_size})")
        self._check_choice("dtype", DTYPES)
        self._check_choice("prompt_format", PROMPT_FORMATS)
        for name in ("split_spaces", "molecule_names", "value_placeholders", "value_symbols", "value_number_words"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, getattr(self, name), "must be true or false")

    @property
    def is_tiny(self) -> bool:
        """Whether this config builds the tiny model from scratch."""
        return self.name_or_path == "tiny"


@dataclass
class AdapterConfig(_JsonConfig):
    """A LoRA adapter (peft): rank, scaling, dropout, which modules to wrap."""

    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "module names to wrap; None picks them from the architecture "
                          "(llama/mistral/qwen: q,k,v,o projections; gpt2: c_attn; ...)"},
    )

    def __post_init__(self) -> None:
        self._check_int("r")
        self._check_int("alpha")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            self._fail("dropout", self.dropout, "must be in [0, 1)")
        if self.target_modules is not None:
            if isinstance(self.target_modules, str):
                self.target_modules = [self.target_modules]
            if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
                self._fail("target_modules", self.target_modules, "must be None or a non-empty list of names")
            self.target_modules = list(self.target_modules)


@dataclass
class TrainConfig(_JsonConfig):
    """Everything ``grammar-engine train`` needs; saved as ``MODEL_DIR/training_config.json``.

    Training stops at the first of ``max_steps``, ``max_tokens`` (else ``epochs``) and ``max_minutes``. The defaults
    (tiny model, lr 3e-3, batch 4, one thread, ten minutes) are chosen by measurement on a 2-core
    CPU: at the same token budget (300k tokens of a singlecell corpus), micro-batches of 4 reached
    0.21 held-out exact match against 0.12 for 8 and 0.08 for 32, at the same or higher tokens/s.
    Batches hold examples of similar length (``group_by_length``): at the same 6 minutes on a
    singlecell corpus that gave 1.4x the tokens per second of plain shuffled batches (whose
    tokens are about 40% padding) and 0.353 held-out exact match against 0.313.
    On a GPU, raise ``batch_size`` (and ``lr`` with it).
    """

    _nested: ClassVar[dict[str, type]] = {"model": ModelConfig, "adapter": AdapterConfig}

    corpus_dir: str = field(default="", metadata={"help": "corpus directory written by `grammar-engine sample`"})
    output_dir: str = field(default="", metadata={"help": "MODEL_DIR: model, tokenizer, logs, checkpoints"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the model to train"})
    adapter: AdapterConfig | None = field(
        default=None, metadata={"help": "a LoRA adapter to train instead of all weights (None: full training)"}
    )
    epochs: float = field(default=30.0, metadata={"help": "passes over the training split (fractions allowed)"})
    max_steps: int | None = field(
        default=None, metadata={"help": "optimizer steps; overrides epochs when set"}
    )
    max_tokens: int | None = field(
        default=None,
        metadata={"help": "token budget (prompt + completion, no padding, all processes): sets the optimizer "
                          "steps from the corpus' mean example length; overrides epochs, and max_steps "
                          "still caps it"},
    )
    max_minutes: float | None = field(
        default=10.0,
        metadata={"help": "wall-clock budget of this run in minutes (None or 0: no budget); the learning "
                          "rate anneals by elapsed time too, so a budget-stopped run ends annealed"},
    )
    batch_size: int = field(default=4, metadata={"help": "examples per micro-batch per process"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    group_by_length: int = field(
        default=64,
        metadata={"help": "batch examples of similar length: sort windows of this many batches by length "
                          "(cuts padding from about 40 to 3 percent at batch 4; 1: plain shuffled batches)"},
    )
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate of AdamW (after warmup; cosine decay "
                                                      "to min_lr_ratio * lr)"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final learning rate as a fraction of lr"})
    warmup_steps: int = field(default=30, metadata={"help": "linear warmup steps"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0: no clipping)"})
    max_length: int = field(default=384, metadata={"help": "examples longer than this many tokens are cut"})
    seed: int = field(default=0, metadata={"help": "seed of weights init, shuffling and dropout"})
    checkpoint_every: int = field(
        default=1000, metadata={"help": "save a resumable checkpoint every N optimizer steps (0: never)"}
    )
    keep_checkpoints: int = field(default=2, metadata={"help": "how many recent checkpoints to keep"})
    resume: bool = field(
        default=False, metadata={"help": "continue from the last checkpoint in output_dir to its final step"}
    )
    log_every: int = field(default=10, metadata={"help": "write train_log.jsonl every N steps"})
    mixed_precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on a GPU that supports it, else no), no, bf16, fp16"},
    )
    num_threads: int = field(
        default=1,
        metadata={"help": "torch CPU threads per process (0: torch's default); one is fastest on a shared machine"},
    )
    progress: bool = field(default=True, metadata={"help": "show a tqdm progress bar"})
    plot: bool = field(default=True, metadata={"help": "draw MODEL_DIR/loss.png (needs matplotlib)"})

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if isinstance(self.adapter, dict):
            self.adapter = AdapterConfig.from_dict(self.adapter)
        if not isinstance(self.model, ModelConfig):
            self._fail("model", self.model, "must be a ModelConfig")
        if self.adapter is not None and not isinstance(self.adapter, AdapterConfig):
            self._fail("adapter", self.adapter, "must be an AdapterConfig or None")
        self._check_positive("epochs")
        self._check_int("max_steps", allow_none=True)
        self._check_int("max_tokens", allow_none=True)
        if self.max_minutes == 0:
            self.max_minutes = None
        self._check_positive("max_minutes", allow_none=True)
        for name in ("batch_size", "grad_accum", "group_by_length", "max_length", "log_every", "keep_checkpoints"):
            self._check_int(name)
        self._check_positive("lr")
        if isinstance(self.min_lr_ratio, bool) or not isinstance(self.min_lr_ratio, (int, float)) \
                or not 0 <= self.min_lr_ratio <= 1:
            self._fail("min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        self._check_int("warmup_steps", minimum=0)
        self._check_positive("weight_decay", allow_zero=True)
        self._check_positive("max_grad_norm", allow_zero=True)
        self._check_int("seed", minimum=0)
        self._check_int("checkpoint_every", minimum=0)
        self._check_int("num_threads", minimum=0)
        self._check_choice("mixed_precision", MIXED_PRECISION)
        if self.model.is_tiny and self.max_length > self.model.max_position_embeddings:
            self._fail("max_length", self.max_length,
                       f"must not exceed model.max_position_embeddings ({self.model.max_position_embeddings})",
                       "lower max_length or raise model.max_position_embeddings")
        if self.model.is_tiny and self.model.prompt_format == "chat":
            self._fail("model", "prompt_format='chat'", "cannot be used with the tiny model (its tokenizer has "
                       "no chat template)", "use prompt_format 'plain' or 'auto'")

    def validate_paths(self) -> None:
        """Check that ``corpus_dir`` and ``output_dir`` are set (what the train command needs)."""
        if not self.corpus_dir:
            self._fail("corpus_dir", self.corpus_dir, "must name a corpus directory")
        if not self.output_dir:
            self._fail("output_dir", self.output_dir, "must name the model directory to write",
                       "pass --output MODEL_DIR")


@dataclass
class DecodeConfig(_JsonConfig):
    """How ``grammar-engine predict`` generates calls."""

    batch_size: int = field(default=32, metadata={"help": "instructions per generate() call (left padded)"})
    max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "tokens to generate at most; None: 1.5x the longest training target + 16 "
                          "(from MODEL_DIR/model_info.json), else 256"},
    )
    allow_empty: bool = field(
        default=False, metadata={"help": "constrained decoding: allow the empty call list []"}
    )
    num_threads: int = field(default=1, metadata={"help": "torch CPU threads (0: torch's default)"})

    def __post_init__(self) -> None:
        self._check_int("batch_size")
        self._check_int("max_new_tokens", allow_none=True, minimum=8)
        self._check_int("num_threads", minimum=0)


DOMAIN_TRAINING_FILE = "training.json"
"""A domain folder's training settings: a :class:`TrainConfig` JSON object with the fields whose
best value was measured for that domain (``{"model": {"split_spaces": true}}``)."""


def domain_training_file(domain_dir: str | Path) -> Path | None:
    """``domain_dir``'s :data:`DOMAIN_TRAINING_FILE`, or ``None`` when it ships none."""
    path = Path(domain_dir) / DOMAIN_TRAINING_FILE
    return path if path.is_file() else None


def domain_train_config(domain_dir: str | Path) -> TrainConfig:
    """The training settings ``domain_dir`` ships in :data:`DOMAIN_TRAINING_FILE`, else the defaults.

    The pipeline and the benchmarks start from these; ``grammar-engine train --config
    DOMAIN_DIR/training.json`` does the same by hand.
    """
    path = domain_training_file(domain_dir)
    return TrainConfig.load(path) if path is not None else TrainConfig()
