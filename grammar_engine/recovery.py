"""Error recovery: read an instruction that does not parse by skipping the few words in the way.

Real instructions carry words no grammar foresaw ("hey can u run louvain ..."). When
:meth:`Grammar.parse` rejects a text, :func:`parse_with_recovery` deletes whole words at the
place the parser stopped (the word there, or the one before it, since Earley stops where no
reading can continue, which can be one word after the culprit) and parses again, breadth first,
so a reading with the fewest skipped words wins (the first found, trying the word at the stop
before the one ahead of it). Only syntax errors are mended this way. It gives up after ``max_skips`` words, after
``max_parses`` parses, or when the skipped words would be more than ``max_share`` of the text.

Some words are never skipped, because leaving them out changes the request rather than
tidying it (:func:`keeps_meaning`): a word with a digit in it (``1,``, ``radius 5``, a SMILES, a
path), a word shaped like an identifier (an underscore, two capitals, or a capital and a digit:
``pct_counts_mt``, ``PPBP``; capitals count only in a text that has lower-case letters too),
unless it is a word of the grammar's own literals (``QC``, ``UMAP``, ``log1p``), and a negation
(``not``, ``nothing``, ``without``). A reading that needs one
of them skipped is not offered; the instruction then fails as the strict parser failed, and a
caller such as ``predict --with-parser`` hands it to the model.

A recovered reading is a guess: the result names every skipped word with its column, so a caller
reports it (``grammar-engine parse`` writes them as ``"skipped"``) rather than passing it off as
a parse. Grammar authors work with the strict parser (``decompose``), which never skips.
"""

from __future__ import annotations

import re
import weakref
from collections import deque
from dataclasses import dataclass

from .errors import InstructionParseError, InvalidArgument
from .grammar import _WORD_RE, Grammar, normalize_instruction
from .parsing import Decomposition
from .weights import literal_words

__all__ = ["NEGATIONS", "Recovered", "SkippedWord", "keeps_meaning", "parse_with_recovery"]

NEGATIONS = frozenset({"not", "no", "nothing", "none", "never", "neither", "nor", "without", "except",
                       "excluding", "cannot", "can't", "don't", "doesn't", "isn't", "aren't", "won't",
                       "shouldn't", "mustn't"})
"""Words that turn a request around; recovery never skips them."""

_IDENTIFIER_RE = re.compile(r"[A-Z].*[A-Z0-9]")
_LITERALS: weakref.WeakKeyDictionary[Grammar, frozenset[str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class SkippedWord:
    """A word left out of the reading: its text and its 1-based column in the normalized instruction."""

    word: str
    column: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"word": self.word, "column": self.column}


@dataclass(frozen=True)
class Recovered:
    """The outcome of :func:`parse_with_recovery`: a decomposition and the words it skipped (none when strict)."""

    decomposition: Decomposition
    skipped: tuple[SkippedWord, ...]
    parses: int

    @property
    def calls(self) -> list[dict[str, object]]:
        """The calls of the reading."""
        return self.decomposition.calls


def keeps_meaning(word: str, literals: frozenset[str] = frozenset(), *, capitals: bool = True) -> bool:
    """Whether skipping ``word`` would change what the instruction asks (see the module docstring).

    ``literals`` are the grammar's literal words in lower case; an identifier-shaped word among
    them (``UMAP``, ``QC``) may be skipped like any other word. With ``capitals`` False (a text
    written all in capitals), capitals do not make a word an identifier.
    """
    bare = word.strip("\"'`()[]{}<>.,;:!?")
    if bare.lower().replace("\u2019", "'") in NEGATIONS:
        return True
    shaped = "_" in bare or any(c.isdigit() for c in bare) or (capitals and _IDENTIFIER_RE.search(bare))
    return bool(shaped) and bare.lower() not in literals


def _literals(grammar: Grammar) -> frozenset[str]:
    cached = _LITERALS.get(grammar)
    if cached is None:
        cached = _LITERALS[grammar] = literal_words(grammar)
    return cached


def _located(error: InstructionParseError) -> bool:
    """Whether the error is a syntax error at a place in the text (not a value or schema problem)."""
    return bool(error.context or error.expected)


def _error_word(words: list[tuple[int, int]], kept: tuple[int, ...], error: InstructionParseError,
                text: str) -> int | None:
    """Position in ``kept`` of the word where the parser stopped (the last word when it ran out of text)."""
    offset = sum(len(line) + 1 for line in text.split("\n")[: error.line - 1]) + error.column - 1
    cursor = 0
    for position, index in enumerate(kept):
        start, end = words[index]
        length = end - start
        if offset < cursor + length:
            return position
        cursor += length + 1
    return len(kept) - 1 if kept else None


def parse_with_recovery(
    grammar: Grammar,
    text: str,
    *,
    max_skips: int = 3,
    max_parses: int = 16,
    max_share: float = 0.34,
    skip_meaningful: bool = False,
) -> Recovered:
    """Parse ``text``; when it does not parse, skip as few words as possible so that it does.

    Parameters
    ----------
    grammar
        The domain grammar.
    text
        The instruction.
    max_skips
        Most words skipped in one reading.
    max_parses
        Most parses tried in all (each costs one :meth:`Grammar.parse`).
    max_share
        Most skipped words as a share of the instruction's words.
    skip_meaningful
        Also skip words that carry meaning (:func:`keeps_meaning`); off by default, as a reading
        without them answers another request.

    Raises
    ------
    InstructionParseError
        The strict parser's error, when no reading within the limits parses (or the text is empty
        or too long, which no skipping mends).
    """
    if max_skips < 0 or max_parses < 1:
        raise InvalidArgument(f"max_skips must be >= 0 and max_parses >= 1, got {max_skips!r} and {max_parses!r}")
    try:
        return Recovered(grammar.parse(text), (), 1)
    except InstructionParseError as first:
        failure = first
    norm = normalize_instruction(text)
    spans = [(m.start(), m.end()) for m in _WORD_RE.finditer(norm)]
    if not spans or failure.text != norm or not _located(failure):
        raise failure  # empty, too long, or a value or schema problem: not a matter of words
    limit = min(max_skips, int(len(spans) * max_share))
    literals = _literals(grammar)
    capitals = any(c.islower() for c in norm)
    kept_words = set() if skip_meaningful else {i for i, (start, end) in enumerate(spans)
                                                if keeps_meaning(norm[start:end], literals, capitals=capitals)}
    queue: deque[tuple[tuple[int, ...], InstructionParseError]] = deque([(tuple(range(len(spans))), failure)])
    seen: set[tuple[int, ...]] = {tuple(range(len(spans)))}
    parses = 1
    while queue:
        kept, error = queue.popleft()
        if len(spans) - len(kept) >= limit:
            continue
        stop = _error_word(spans, kept, error, error.text)
        if stop is None:
            continue
        for drop in dict.fromkeys(p for p in (stop, stop - 1) if 0 <= p < len(kept)):
            if kept[drop] in kept_words:
                continue
            candidate = kept[:drop] + kept[drop + 1:]
            if not candidate or candidate in seen:
                continue
            if parses >= max_parses:
                raise failure
            seen.add(candidate)
            parses += 1
            reduced = " ".join(norm[spans[i][0]:spans[i][1]] for i in candidate)
            try:
                decomposition = grammar.parse(reduced)
            except InstructionParseError as exc:
                if _located(exc):
                    queue.append((candidate, exc))
                continue
            if not decomposition.calls:
                continue
            kept = set(candidate)
            skipped = tuple(SkippedWord(norm[spans[i][0]:spans[i][1]], spans[i][0] + 1)
                            for i in range(len(spans)) if i not in kept)
            return Recovered(decomposition, skipped, parses)
    raise failure
