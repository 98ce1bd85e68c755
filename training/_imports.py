"""Optional dependencies of the training package, probed lazily and cached.

Nothing here imports torch or transformers: :func:`importlib.util.find_spec` only looks the
package up, so ``import training`` stays cheap and works without the ``train`` extra. Code that
needs a dependency calls :func:`require` first, which raises one message naming what to install.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

__all__ = [
    "TRAIN_EXTRA_HINT",
    "is_accelerate_available",
    "is_matplotlib_available",
    "is_peft_available",
    "is_rdkit_available",
    "is_tokenizers_available",
    "is_torch_available",
    "is_tqdm_available",
    "is_transformers_available",
    "require",
]

TRAIN_EXTRA_HINT = "pip install 'grammar-engine[train]'"

# Which extra provides each optional module (what `require` tells the user to install).
_EXTRA_OF = {
    "torch": TRAIN_EXTRA_HINT,
    "transformers": TRAIN_EXTRA_HINT,
    "peft": TRAIN_EXTRA_HINT,
    "accelerate": TRAIN_EXTRA_HINT,
    "tokenizers": TRAIN_EXTRA_HINT,
    "tqdm": TRAIN_EXTRA_HINT,
    "matplotlib": "pip install 'grammar-engine[plot]'",
    "rdkit": "pip install 'grammar-engine[chem]'",
}


@lru_cache(maxsize=None)
def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-installed package
        return False


def is_torch_available() -> bool:
    """Whether ``torch`` can be imported (cached)."""
    return _available("torch")


def is_transformers_available() -> bool:
    """Whether ``transformers`` can be imported (cached)."""
    return _available("transformers")


def is_peft_available() -> bool:
    """Whether ``peft`` can be imported (cached)."""
    return _available("peft")


def is_accelerate_available() -> bool:
    """Whether ``accelerate`` can be imported (cached)."""
    return _available("accelerate")


def is_tokenizers_available() -> bool:
    """Whether ``tokenizers`` can be imported (cached)."""
    return _available("tokenizers")


def is_tqdm_available() -> bool:
    """Whether ``tqdm`` can be imported (cached)."""
    return _available("tqdm")


def is_matplotlib_available() -> bool:
    """Whether ``matplotlib`` can be imported (cached)."""
    return _available("matplotlib")


def is_rdkit_available() -> bool:
    """Whether RDKit can be imported (cached)."""
    return _available("rdkit")


def require(*modules: str, purpose: str = "training") -> None:
    """Raise ImportError naming the install command when any of ``modules`` is missing.

    Parameters
    ----------
    *modules
        Top-level module names (``"torch"``, ``"transformers"``, ...).
    purpose
        What the caller was about to do, for the message.

    Raises
    ------
    ImportError
        ``"<purpose> needs torch, peft: pip install 'grammar-engine[train]'"``.
    """
    missing = [m for m in modules if not _available(m)]
    if missing:
        hints = sorted({_EXTRA_OF.get(m, f"pip install {m}") for m in missing})
        raise ImportError(f"{purpose} needs {', '.join(missing)}: {' ; '.join(hints)}")
