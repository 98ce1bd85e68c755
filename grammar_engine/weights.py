"""What the samplers learn from the recordings (expansion weights, the facts the recorded
instructions need, the forms of literal words), and the weighted and uniform choosers.

Each expansion's probability is the number of times the parses of the domain's recorded
instructions used it plus ``alpha`` (add-alpha smoothing, so an expansion no recording used still
appears), normalized over the expansions of its nonterminal. A comment
``//! weight <origin>#<k> = <w>`` in the grammar file replaces the smoothed count of expansion
``<origin>#<k>`` (an expansion id of :attr:`Grammar.graph`); comments are data, never executed.
``temperature`` reshapes the probabilities as ``p ** (1 / temperature)``: 1 keeps the learned
ones, larger values move toward uniform (``math.inf`` is uniform), 0 always takes the most
probable allowed expansion.

Recordings are parsed with the exact pruned-Earley parser of :mod:`grammar_engine.verification`
(falling back to :meth:`Grammar.parse` when a recording has several derivations), once per grammar
and set of recorded texts (:func:`recorded_use`), which also gives where sampled sessions start
(``session_start``) and how literal words are written (``casing``, see
:mod:`grammar_engine.sampling`); the weights are cached per grammar when the domain's own
recordings are used.
"""

from __future__ import annotations

import bisect
import math
import random
import re
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument, SamplingError
from .gen_tables import gen_tables
from .generation import Chooser, DNode
from .recordings import recorded_texts

if TYPE_CHECKING:
    from .grammar import Grammar

__all__ = [
    "ExpansionWeights",
    "RecordedUse",
    "UniformChooser",
    "WeightedChooser",
    "expansion_weights",
    "literal_words",
    "recorded_instructions",
    "recorded_use",
    "weight_overrides",
]

_WEIGHT_RE = re.compile(r"^[ \t]*//![ \t]*weight[ \t]+([\w]+)#(\d+)[ \t]*=[ \t]*(\S+)[ \t]*$", re.M)


def weight_overrides(grammar: Grammar) -> dict[int, float]:
    """Weights written in the grammar file: ``//! weight <origin>#<k> = <w>``, one per line.

    ``<origin>#<k>`` is an expansion id of :attr:`Grammar.graph` (``call_pca#2`` is the third
    alternative of ``call_pca`` as compiled). Comments are data: nothing in them is executed.

    Raises
    ------
    SamplingError
        For an unknown expansion id or a weight that is not a finite number >= 0.
    """
    ids = {exp.node_id: exp.index for exp in grammar.table.expansions}
    found: dict[int, float] = {}
    for match in _WEIGHT_RE.finditer(grammar.text):
        node_id = f"{match[1]}#{match[2]}"
        line = grammar.text.count("\n", 0, match.start()) + 1
        if node_id not in ids:
            from difflib import get_close_matches

            close = get_close_matches(node_id, list(ids), n=1)
            raise SamplingError(
                f"{grammar.source}:{line}: '//! weight {node_id}' names no expansion"
                + (f"; did you mean {close[0]!r}?" if close else "")
            )
        try:
            weight = float(match[3])
        except ValueError:
            weight = -1.0
        if not math.isfinite(weight) or weight < 0:
            raise SamplingError(f"{grammar.source}:{line}: weight of {node_id} must be a number >= 0, got {match[3]!r}")
        found[ids[node_id]] = weight
    return found


@dataclass(frozen=True)
class ExpansionWeights:
    """Per-expansion probabilities, normalized per nonterminal.

    Attributes
    ----------
    probabilities
        ``{expansion index: probability among its nonterminal's expansions}``.
    counts
        How often the recordings' parses used each expansion.
    parsed, failed
        Recordings that parsed, and that did not (these teach nothing).
    overrides
        Weights taken from the grammar file.
    temperature, alpha
        As passed.
    """

    probabilities: dict[int, float]
    counts: dict[int, int]
    parsed: int
    failed: int
    overrides: dict[int, float]
    temperature: float
    alpha: float


def recorded_instructions(grammar: Grammar, recordings: Any) -> list[str]:
    if recordings is None:
        path = grammar.recorded_path
        if path is None:
            return []
        recordings = path
    if isinstance(recordings, (str, Path)):
        return recorded_texts(recordings)
    out = []
    for item in recordings:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("instruction"), str):
            out.append(item["instruction"])
        else:
            raise InvalidArgument(f"recordings must hold instructions (str or {{'instruction': ...}}), got {item!r}")
    return out


@dataclass(frozen=True)
class RecordedUse:
    """What the parses of the recorded instructions teach the samplers.

    Attributes
    ----------
    counts
        How often the parses used each expansion (by expansion index).
    parsed, failed
        Recordings that parsed, and that did not.
    needs
        The facts the recorded instructions need before their calls beyond the domain's initial
        state (:meth:`~grammar_engine.tools.ToolRegistry.needed_before`): ``plot umap colored by
        leiden`` is said once the embedding and the clusters exist.
    forms
        How the recordings write the words of the grammar's literals, for each word they write
        otherwise than in lower case at least once: ``{"umap": {"umap": 12, "UMAP": 6}}``. A
        capital that only starts a sentence is not counted (``sentence_case`` draws that), nor a
        word of one letter.
    """

    counts: Counter[int]
    parsed: int
    failed: int
    needs: frozenset[str]
    forms: dict[str, dict[str, int]]


#: A word of an instruction or a literal: letters and digits, hyphens inside (``t-SNE``); not a part
#: of an identifier or a path (``S_score``, ``data/pbmc.h5ad``).
WORD_RE = re.compile(r"(?<![\w./-])[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*(?![\w/]|[.-]\w)")
#: Where a sentence starts: the text's start, or after ``.``, ``?``, ``!`` or a line break.
_SENTENCE_START_RE = re.compile(r"(?:^|[.?!\n])\s*$")


def literal_words(grammar: Grammar) -> frozenset[str]:
    """The words of the grammar's string literals, in lower case (literals match in any case)."""
    return frozenset(w.lower() for literal in grammar.table.terminals.values() if literal
                     for w in WORD_RE.findall(literal))


def recorded_use(grammar: Grammar, recordings: Any = None) -> RecordedUse:
    """Parse the recorded instructions (``recordings`` as for :func:`expansion_weights`) once per
    grammar and set of texts, and count what they use."""
    texts = tuple(recorded_instructions(grammar, recordings))
    cached = _USES.setdefault(grammar, {}).get(texts)
    if cached is not None:
        return cached
    counts: Counter[int] = Counter()
    needs: set[str] = set()
    vocabulary = literal_words(grammar)
    forms: dict[str, Counter[str]] = {}
    parsed = failed = 0
    for text in texts:
        found = grammar.try_parse(text)
        if found is None:
            failed += 1
            continue
        parsed += 1
        counts.update(found.expansions)
        needs |= grammar.tools.needed_before(found.calls)
        for match in WORD_RE.finditer(found.text):
            word = match.group()
            lower = word.lower()
            if len(word) < 2 or lower not in vocabulary:
                continue
            if word == lower.capitalize() and _SENTENCE_START_RE.search(found.text, 0, match.start()):
                continue
            forms.setdefault(lower, Counter())[word] += 1
    kept = {lower: dict(sorted(seen.items())) for lower, seen in sorted(forms.items()) if set(seen) != {lower}}
    result = RecordedUse(counts, parsed, failed, frozenset(needs), kept)
    _USES[grammar][texts] = result
    return result


def expansion_weights(
    grammar: Grammar,
    *,
    recordings: Any = None,
    alpha: float = 1.0,
    temperature: float = 1.0,
    overrides: bool | dict[int, float] = True,
) -> ExpansionWeights:
    """Learn expansion probabilities from recorded instructions.

    Parameters
    ----------
    grammar
        The grammar.
    recordings
        A JSONL path, or instructions (str or ``{"instruction": ...}``); default: the domain's
        ``recorded.jsonl`` (none: every count is 0 and the result is uniform before overrides).
    alpha
        Smoothing added to every count (> 0 keeps every expansion possible).
    temperature
        ``p ** (1 / temperature)``, renormalized: 1 learned, ``math.inf`` uniform, 0 greedy (the
        probabilities are then 1 for the most probable expansion of each nonterminal).
    overrides
        True: read ``//! weight`` comments; False: ignore them; a dict: use these.
    """
    if not isinstance(alpha, (int, float)) or alpha < 0:
        raise InvalidArgument(f"alpha must be a number >= 0, got {alpha!r}")
    if not isinstance(temperature, (int, float)) or temperature < 0 or math.isnan(temperature):
        raise InvalidArgument(f"temperature must be a number >= 0, got {temperature!r}")
    cache_key = (float(alpha), float(temperature), overrides is True) if recordings is None and not isinstance(overrides, dict) else None
    cached = _WEIGHTS.setdefault(grammar, {}).get(cache_key) if cache_key is not None else None
    if cached is not None:
        return cached
    use = recorded_use(grammar, recordings)
    counts, parsed, failed = use.counts, use.parsed, use.failed
    chosen = weight_overrides(grammar) if overrides is True else (dict(overrides) if overrides else {})
    probabilities: dict[int, float] = {}
    for origin, exps in grammar.table.by_origin.items():
        raw = [chosen[e.index] if e.index in chosen else counts[e.index] + alpha for e in exps]
        if temperature == 0:
            best = max(raw)
            raw = [1.0 if r == best and r > 0 else 0.0 for r in raw]
        elif math.isinf(temperature):
            raw = [1.0 if r > 0 else 0.0 for r in raw]
        elif temperature != 1:
            raw = [r ** (1.0 / temperature) if r > 0 else 0.0 for r in raw]
        total = sum(raw)
        for exp, r in zip(exps, raw):
            probabilities[exp.index] = r / total if total > 0 else 1.0 / len(exps)
    result = ExpansionWeights(probabilities, dict(counts), parsed, failed, chosen, float(temperature), float(alpha))
    if cache_key is not None:
        _WEIGHTS[grammar][cache_key] = result
    return result


_WEIGHTS: weakref.WeakKeyDictionary[Any, dict[Any, ExpansionWeights]] = weakref.WeakKeyDictionary()
_USES: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], RecordedUse]] = weakref.WeakKeyDictionary()


class UniformChooser(Chooser):
    """Uniform over the allowed expansions of each nonterminal (the baseline)."""


class WeightedChooser(Chooser):
    """Draw expansions by :class:`ExpansionWeights` (restricted to the allowed ones)."""

    def __init__(self, grammar: Grammar, weights: ExpansionWeights) -> None:
        self.p = weights.probabilities
        self.greedy = weights.temperature == 0
        self._cum: dict[str, tuple[list[float], float, tuple[int, ...]]] = {}
        for symbol, cands in gen_tables(grammar).alts.items():
            cum, total = [], 0.0
            for i in cands:
                total += self.p.get(i, 0.0)
                cum.append(total)
            self._cum[symbol] = (cum, total, cands)
        self._form_weight: dict[tuple[int, ...], float] = {}

    def choose(self, symbol: str, candidates: Sequence[int], full: bool, parent: int, rng: random.Random) -> int:
        p = self.p
        if self.greedy:
            best = max(p.get(i, 0.0) for i in candidates)
            tied = [i for i in candidates if p.get(i, 0.0) == best]
            return tied[0] if len(tied) == 1 else tied[int(rng.random() * len(tied))]
        if full:
            cum, total, cands = self._cum[symbol]
            if total > 0:
                return cands[min(bisect.bisect_right(cum, rng.random() * total), len(cands) - 1)]
        weights = [p.get(i, 0.0) for i in candidates]
        total = sum(weights)
        if total <= 0:  # every allowed expansion has weight 0: fall back to uniform among them
            return candidates[int(rng.random() * len(candidates))]
        r = rng.random() * total
        for i, w in zip(candidates, weights):
            r -= w
            if r < 0:
                return i
        return candidates[-1]

    def choose_form(self, entries: Sequence[tuple[str, DNode, tuple[int, ...]]], parent: int, rng: random.Random) -> int:
        weights = []
        for _text, _node, used in entries:
            w = self._form_weight.get(used)
            if w is None:
                w = 1.0
                for e in used:
                    w *= self.p.get(e, 0.0)
                self._form_weight[used] = w
            weights.append(w)
        total = sum(weights)
        if total <= 0:
            return int(rng.random() * len(entries))
        if self.greedy:
            return weights.index(max(weights))
        r = rng.random() * total
        for k, w in enumerate(weights):
            r -= w
            if r < 0:
                return k
        return len(entries) - 1
