"""Fine-tune and evaluate a model on the verified corpora of grammar-engine.

Importing this package is cheap: torch, transformers, peft and accelerate are imported only by
the functions that need them (:mod:`training.trainer`, :mod:`training.modeling`,
:mod:`training.predict`, :mod:`training.constrained`). A missing dependency raises an
``ImportError`` that says ``pip install 'grammar-engine[train]'``.

Layout: :mod:`~training.config` (dataclass configs), :mod:`~training.data` (corpus -> prompt,
target, token ids; pure Python), :mod:`~training.tokenizer` (digit-splitting byte-level BPE),
:mod:`~training.modeling` (tiny Llama, pretrained models, LoRA), :mod:`~training.trainer`
(accelerate loop), :mod:`~training.predict` (batched generation), :mod:`~training.constrained`
(schema-constrained decoding), :mod:`~training.evaluation` (exact match, P/R/F1),
:mod:`~training.molecule_names` and :mod:`~training.value_placeholders` (values the plain format
writes by name or by placeholder),
:mod:`~training.cli` (``train``, ``predict``, ``evaluate``).
"""

from ._imports import (
    TRAIN_EXTRA_HINT,
    is_accelerate_available,
    is_matplotlib_available,
    is_peft_available,
    is_rdkit_available,
    is_tokenizers_available,
    is_torch_available,
    is_tqdm_available,
    is_transformers_available,
    require,
)
from .config import AdapterConfig, ConfigError, DecodeConfig, ModelConfig, TrainConfig
from .data import Example, build_examples, calls_to_json, encode_example, extract_calls, read_corpus
from .evaluation import EvaluationReport, compare_systems, comparable_calls, evaluate_predictions

__all__ = [
    "TRAIN_EXTRA_HINT",
    "AdapterConfig",
    "ConfigError",
    "DecodeConfig",
    "EvaluationReport",
    "Example",
    "ModelConfig",
    "TrainConfig",
    "build_examples",
    "calls_to_json",
    "comparable_calls",
    "compare_systems",
    "encode_example",
    "evaluate_predictions",
    "extract_calls",
    "is_accelerate_available",
    "is_matplotlib_available",
    "is_peft_available",
    "is_rdkit_available",
    "is_tokenizers_available",
    "is_torch_available",
    "is_tqdm_available",
    "is_transformers_available",
    "read_corpus",
    "require",
]
