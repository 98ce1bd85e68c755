"""A byte-level BPE tokenizer trained on the corpus, with every digit its own token.

Numbers as single BPE tokens let a tiny model memorise phrasing -> value; with digits split it
copies values digit by digit and generalizes to unseen numbers (held-out exact match 0.66 ->
0.86 in the training notes). With ``split_spaces`` every space is a token of its own, so a word
copied from the instruction into the calls keeps its tokens. It costs longer sequences, so it is
off by default and a domain turns it on in its ``training.json`` where copying words pays for
them: singlecell, whose genes, obs keys and labels are copied word for word (not chem).

The byte-level alphabet covers every character, so any SMILES, path or gene name can be written,
and every ASCII character is a single token (which constrained decoding relies on to close any
open structure one character at a time).

The BPE trainer stops below ``vocab_size`` on a small corpus: size the embedding from
``len(tokenizer)``, never from the requested size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._imports import require
from .data import CALLS_MARKER, END_MARKER, PAD_TOKEN, SPECIAL_TOKENS, USER_MARKER, Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = ["example_texts", "load_tokenizer", "save_tokenizer", "train_tokenizer"]


def example_texts(examples: Iterable[Example]) -> Iterable[str]:
    """The texts a tokenizer is trained on: each example's prompt and target."""
    for example in examples:
        yield example.prompt
        yield example.target


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 1024, min_frequency: int = 2, model_max_length: int = 512,
    split_spaces: bool = False, extra_tokens: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE with individual digits and wrap it for transformers.

    Parameters
    ----------
    texts
        Training text (prompts and targets of the corpus).
    vocab_size
        Upper bound of the vocabulary, special tokens and the 256 byte symbols included.
    min_frequency
        A merge must occur at least this often.
    model_max_length
        Recorded on the tokenizer (the tiny model's position limit).
    split_spaces
        Make every whitespace character a token of its own, so that no token joins a space to a
        word: ``CST3`` after a space in the instruction and after a quote in the calls is then the
        same token sequence, and the model copies it instead of learning two spellings.
    extra_tokens
        Words that are always one token each and decode as written (the value placeholders of
        :mod:`training.value_placeholders`); BPE learns no merges from them.

    Returns
    -------
    PreTrainedTokenizerFast
        With ``<|pad|>`` (id 0) as padding, ``<|end|>`` as end of sequence, and ``<|user|>``,
        ``<|calls|>`` as extra special tokens; no chat template (the plain format is used).
    """
    require("tokenizers", "transformers", purpose="training a tokenizer")
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    steps = [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    if split_spaces:
        steps.insert(0, pre_tokenizers.Split(Regex(r"\s"), behavior="isolated"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(steps)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    if extra_tokens:
        pattern = re.compile("|".join(re.escape(t) for t in extra_tokens))
        texts = (pattern.sub(" ", text) for text in texts)
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=END_MARKER,
        additional_special_tokens=[USER_MARKER, CALLS_MARKER],
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )
    if extra_tokens:
        tokenizer.add_tokens(list(extra_tokens))
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> Path:
    """Save with ``save_pretrained`` into ``directory`` (created) and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def load_tokenizer(name_or_path: str | Path, *, padding_side: str | None = None) -> PreTrainedTokenizerBase:
    """Load a tokenizer with ``AutoTokenizer.from_pretrained`` and make it able to pad.

    A tokenizer without a pad token pads with its end-of-sequence token. ``padding_side``
    (``"left"`` for batched generation) is set when given.
    """
    require("transformers", purpose="loading a tokenizer")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    return tokenizer
