"""Models: the tiny Llama built from scratch, pretrained models, LoRA adapters, the MODEL_DIR layout.

MODEL_DIR holds what ``predict`` needs::

    config.json, model.safetensors     full training: the trained weights
    adapter_config.json,               LoRA: the adapter; its base is base/ (tiny) or the
      adapter_model.safetensors          hub name / path in model_info.json
    base/                              LoRA on the tiny model: the random initial weights
    tokenizer.json, tokenizer_config.json
    model_info.json                    prompt format, tools, base model, longest target, sizes
    training_config.json               the TrainConfig of the run
    train_log.jsonl, loss.png          step, loss, learning rate, tokens/s
    checkpoints/step-NNNNNN/           accelerate save_state + trainer_state.json

The tiny model is saved with ``save_pretrained`` right after it is built and read back through
``AutoModelForCausalLM.from_pretrained``, so training starts from the same loading path that
``predict`` uses later.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._imports import require
from .config import AdapterConfig, ModelConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LORA_TARGET_MODULES",
    "apply_lora",
    "build_tiny_model",
    "count_parameters",
    "load_base_model",
    "load_trained",
    "lora_target_modules",
    "read_model_info",
    "resolve_dtype",
    "tiny_llama_config",
]

MODEL_INFO = "model_info.json"

LORA_TARGET_MODULES: dict[str, list[str]] = {
    # attention projections of the decoder families we expect to fine-tune
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mixtral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi3": ["qkv_proj", "o_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
    "smollm3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "olmo2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gpt2": ["c_attn"],
    "gpt_bigcode": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "falcon": ["query_key_value"],
    "bloom": ["query_key_value"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "gptj": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "gpt_neo": ["q_proj", "k_proj", "v_proj", "out_proj"],
}
"""Module names LoRA wraps per ``config.model_type``; others fall back to peft's own table."""


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' info logging and its load/save progress bars inside the block."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def resolve_dtype(name: str = "auto") -> torch.dtype | None:
    """The torch dtype to load weights in: ``auto`` is float32 on CPU, the saved dtype on GPU (None)."""
    import torch

    if name == "auto":
        return None if torch.cuda.is_available() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def count_parameters(model: Any, *, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters; tied weights counted once."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


def tiny_llama_config(tokenizer: PreTrainedTokenizerBase, config: ModelConfig) -> Any:
    """A ``LlamaConfig`` sized from ``len(tokenizer)`` and the tiny fields of ``config``."""
    require("transformers", purpose="building the tiny model")
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase, config: ModelConfig, save_dir: str | Path, *, seed: int = 0
) -> PreTrainedModel:
    """Build the tiny Llama with seeded random weights, save it, and load it back.

    Parameters
    ----------
    tokenizer
        Sizes the embedding (``len(tokenizer)``) and gives the pad and end ids.
    config
        Hidden size, layers, heads, feed-forward size, positions.
    save_dir
        Where the initial weights are written with ``save_pretrained``.
    seed
        Seeds the weight initialization.

    Returns
    -------
    PreTrainedModel
        The model as ``AutoModelForCausalLM.from_pretrained(save_dir)`` returns it (float32).
    """
    require("torch", "transformers", purpose="building the tiny model")
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    llama_config = tiny_llama_config(tokenizer, config)
    fork_devices: list[Any] = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(str(save_dir))
        return AutoModelForCausalLM.from_pretrained(str(save_dir), dtype=torch.float32)


def load_base_model(name_or_path: str | Path, *, dtype: str = "auto") -> PreTrainedModel:
    """Load a causal LM with ``AutoModelForCausalLM.from_pretrained`` (float32 on CPU)."""
    require("torch", "transformers", purpose="loading a model")
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    torch_dtype = resolve_dtype(dtype)
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    with quiet_transformers():
        return AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)


def lora_target_modules(model: Any) -> list[str]:
    """The module names LoRA should wrap in ``model``, by architecture.

    Looks ``model.config.model_type`` up in :data:`LORA_TARGET_MODULES`, then in peft's own
    table; failing both, every linear layer inside attention blocks whose name ends in
    ``q_proj``/``k_proj``/``v_proj``/``o_proj``, else every ``nn.Linear`` except the output head.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if model_type in LORA_TARGET_MODULES:
        return list(LORA_TARGET_MODULES[model_type])
    try:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TABLE

        if model_type in PEFT_TABLE and isinstance(PEFT_TABLE[model_type], list):
            return list(PEFT_TABLE[model_type])
    except ImportError:  # pragma: no cover - peft is required before we get here
        pass
    import torch

    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear)}
    preferred = [n for n in ("q_proj", "k_proj", "v_proj", "o_proj") if n in names]
    return preferred or sorted(names - {"lm_head", "embed_out", "output"})


def apply_lora(model: PreTrainedModel, adapter: AdapterConfig) -> Any:
    """Wrap ``model`` with a peft LoRA adapter (only the adapter weights train)."""
    require("peft", purpose="LoRA training")
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=adapter.target_modules or lora_target_modules(model),
    )
    return get_peft_model(model, lora)


def read_model_info(model_dir: str | Path) -> dict[str, Any]:
    """``MODEL_DIR/model_info.json`` (empty when the directory is a plain pretrained model)."""
    path = Path(model_dir) / MODEL_INFO
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_trained(
    model_dir: str | Path, *, dtype: str = "auto", padding_side: str = "left"
) -> tuple[Any, PreTrainedTokenizerBase, dict[str, Any]]:
    """Load a trained MODEL_DIR (full weights or LoRA adapter) with its tokenizer and info.

    Returns
    -------
    tuple
        ``(model in eval mode, tokenizer padded on padding_side, model_info dict)``.
    """
    require("torch", "transformers", purpose="loading a trained model")
    from .tokenizer import load_tokenizer

    model_dir = Path(model_dir)
    info = read_model_info(model_dir)
    tokenizer = load_tokenizer(model_dir, padding_side=padding_side)
    if (model_dir / "adapter_config.json").is_file():
        require("peft", purpose="loading a LoRA adapter")
        from peft import PeftModel

        base_dir = model_dir / "base"
        base_name = str(base_dir) if base_dir.is_dir() else info.get("base_model")
        if not base_name:
            base_name = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
        base = load_base_model(base_name, dtype=dtype)
        with quiet_transformers():
            model = PeftModel.from_pretrained(base, str(model_dir))
    else:
        model = load_base_model(model_dir, dtype=dtype)
    model.eval()
    return model, tokenizer, info
