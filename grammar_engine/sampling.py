"""Samplers: new instructions from a grammar, with their calls right by construction and verified.

:func:`sample` is a lazy stream of :class:`Sample` objects. A strategy decides which expansion to
take at each nonterminal (the rest, from depth budgets to value rendering, is
:mod:`grammar_engine.generation`):

``uniform``
    Every allowed expansion of a nonterminal is equally likely: the baseline.
``weighted``
    Each expansion has a probability learned from the recorded instructions of the domain: the
    number of times their parses used it plus ``alpha`` (add-alpha smoothing, so an expansion no
    recording used still appears), normalized per nonterminal. A comment
    ``//! weight <origin>#<k> = <w>`` in the grammar file replaces the smoothed count of expansion
    ``<origin>#<k>`` (the expansion ids of :attr:`Grammar.graph`). ``temperature`` reshapes the
    probabilities as ``p ** (1 / temperature)``: 1 keeps the learned ones, larger values move toward
    uniform (``math.inf`` is uniform), 0 always takes the most probable allowed expansion.
``coverage``
    Prefers what has not been produced yet (see :mod:`grammar_engine.coverage`).

Every sample is checked before it is yielded: its calls are read off the generated tree and fit
the tool schemas and their conditional value domains (``"domains"`` in ``tools.json``), the call
sequence satisfies the tools' preconditions from the facts its session established (instructions
are drawn as the steps of sessions: ``session_start``, ``session_length``), and the text parses back to exactly
those calls (:mod:`grammar_engine.verification`). A sample that fails is never yielded; it
is counted by reason in :attr:`SampleStream.report`, and generation retries (at most
``max_attempts`` times per sample, then :class:`~grammar_engine.errors.SamplingError`).

:func:`near` replays a parsed instruction and resamples one subtree at a time.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from lark import Token, Tree

from .errors import InstructionParseError, InvalidArgument, SamplingError
from .generation import FREE, Chooser, Derivation, DNode, Generator, derivation_of_parse, gen_tables
from .grammar import MAX_INSTRUCTION_CHARS, normalize_instruction
from .verification import Verifier, VerifyMode, verifier_for
from .weights import (  # re-exported: the weighted and uniform strategies live there
    ExpansionWeights,
    UniformChooser,
    WeightedChooser,
    WORD_RE,
    expansion_weights,
    recorded_use,
    weight_overrides,
)

if TYPE_CHECKING:
    from .grammar import Grammar

__all__ = [
    "DEFAULT_SENTENCE_CASE",
    "DEFAULT_SESSION_LENGTH",
    "Casing",
    "ExpansionWeights",
    "Sample",
    "SampleStream",
    "SamplingReport",
    "SamplingStrategy",
    "SessionStart",
    "UniformChooser",
    "WeightedChooser",
    "expansion_weights",
    "near",
    "recorded_defaults",
    "register_strategy",
    "sample",
    "strategy_options",
    "verifier_for",
    "weight_overrides",
]



class SamplingStrategy(str, Enum):
    """The built-in sampling strategies (``--strategy`` on the command line)."""

    WEIGHTED = "weighted"
    COVERAGE = "coverage"
    UNIFORM = "uniform"


StrategyFactory = Callable[..., Chooser]
"""``factory(grammar, **options) -> Chooser``; options are those :func:`sample` passes on."""

#: The options of :func:`sample` that every strategy takes, with their defaults.
_OPTIONS = {
    "max_depth": None, "temperature": 1.0, "alpha": 1.0, "recordings": None, "weights": None,
    "verify": "auto", "max_attempts": 200, "preconditions": True, "max_chars": MAX_INSTRUCTION_CHARS,
    "sources": None, "audit_every": 32, "session_length": None, "sentence_case": None, "session_start": None,
    "casing": None,
}

_STRATEGIES: dict[str, tuple[StrategyFactory, dict[str, Any]]] = {}


def register_strategy(name: SamplingStrategy | str, factory: StrategyFactory, *,
                      options: dict[str, Any] | None = None) -> None:
    """Register a strategy under ``name``; a duplicate name raises :class:`InvalidArgument`.

    ``options`` are the strategy's own options of :func:`sample`, with their defaults: they are
    accepted beside the common ones and passed on to ``factory``, except the stream options
    (``until_covered``), which the stream itself takes.
    """
    key = name.value if isinstance(name, SamplingStrategy) else str(name)
    if key in _STRATEGIES:
        raise InvalidArgument(f"sampling strategy {key!r} is already registered")
    own = dict(options or {})
    clash = sorted(set(own) & set(_OPTIONS))
    if clash:
        raise InvalidArgument(f"strategy {key!r} declares options {clash} that every strategy already has")
    _STRATEGIES[key] = (factory, own)


@dataclass(frozen=True)
class Sample:
    """One generated instruction with its calls and its derivation.

    Attributes
    ----------
    instruction
        The instruction text (already normalized: :func:`grammar_engine.grammar.normalize_instruction`
        leaves it unchanged).
    calls
        Its tool calls, in the JSON form of the tool contract.
    tree
        The parse tree Lark builds for it (generated directly, identical to a parse).
    expansions
        Indices into ``grammar.table.expansions`` of the expansions used, in post-order (the order
        of :attr:`grammar_engine.parsing.Decomposition.expansions`).
    tools
        The tool of each call, in call order.
    phrasing
        The expansion ids (``call_pca#2``) of the call rules used, in text order.
    state
        The facts that held before the instruction (see ``session_start`` and ``session_length`` of :func:`sample`): its
        calls satisfy the tools' preconditions from there,
        ``grammar.tools.sequence_problems(calls, state=state) == []``.
    """

    instruction: str
    calls: list[dict[str, Any]]
    tree: Tree
    expansions: tuple[int, ...]
    tools: tuple[str, ...]
    phrasing: tuple[str, ...]
    state: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """``{"instruction", "calls"}``, JSON-ready."""
        return {"instruction": self.instruction, "calls": self.calls}


def _weighted_factory(grammar: Grammar, *, recordings: Any = None, alpha: float = 1.0, temperature: float = 1.0,
                      weights: dict[int, float] | None = None, **_: Any) -> Chooser:
    learned = expansion_weights(grammar, recordings=recordings, alpha=alpha, temperature=temperature,
                                overrides=weights if weights is not None else True)
    return WeightedChooser(grammar, learned)


def _uniform_factory(grammar: Grammar, **_: Any) -> Chooser:
    return UniformChooser()


register_strategy(SamplingStrategy.WEIGHTED, _weighted_factory)
register_strategy(SamplingStrategy.UNIFORM, _uniform_factory)


# -- the stream -----------------------------------------------------------------------------------------


@dataclass
class SamplingReport:
    """What a :class:`SampleStream` did: attempts, samples, rejections by reason, timing."""

    strategy: str
    seed: int | None
    attempts: int = 0
    samples: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    generate_seconds: float = 0.0
    verify_seconds: float = 0.0
    verifier: dict[str, Any] = field(default_factory=dict)
    #: The strategy's own account (the coverage strategy's phase and given-up targets), if it keeps one.
    progress: Callable[[], dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @property
    def raw_per_second(self) -> float:
        """Derivations per second, calls and schema checks included, verification excluded."""
        return self.attempts / self.generate_seconds if self.generate_seconds else 0.0

    @property
    def verified_per_second(self) -> float:
        """Verified samples per second, everything included."""
        total = self.generate_seconds + self.verify_seconds
        return self.samples / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"strategy": self.strategy, "seed": self.seed, "attempts": self.attempts, "samples": self.samples,
                "rejected": dict(sorted(self.rejected.items())),
                "raw_per_second": round(self.raw_per_second, 1),
                "verified_per_second": round(self.verified_per_second, 1), "verifier": self.verifier,
                **({"coverage": self.progress()} if self.progress is not None else {})}


#: Mean instructions per sampled session (the ``session_length`` option's default).
DEFAULT_SESSION_LENGTH = 1.0
#: Share of instructions that start with a capital letter (the ``sentence_case`` option's default).
DEFAULT_SENTENCE_CASE = 0.5


class SessionStart(str, Enum):
    """The facts a sampled session starts from (the ``session_start`` option)."""

    #: The domain's initial state plus every fact the recorded instructions need before their calls
    #: (:attr:`grammar_engine.weights.RecordedUse.needs`): people say ``plot umap colored by leiden``
    #: late in an analysis, and from here the learned weights choose among the tools as they do.
    #: It is the union of the states the recordings were said in, not one that a run of calls
    #: reaches, so sessions from it are not run on data.
    RECORDED = "recorded"
    #: The domain's initial state (``state`` in ``tools.json``): a session's calls run as a whole
    #: on a freshly loaded dataset.
    INITIAL = "initial"


class Casing(str, Enum):
    """How literal words are written (the ``casing`` option); literals match in any case."""

    #: As the recordings write them, in the same shares (:attr:`grammar_engine.weights.RecordedUse.forms`):
    #: ``UMAP`` in 6 of 19 where the recordings write ``UMAP`` 6 times and ``umap`` 12 (the
    #: grammar's own form counts once more).
    RECORDED = "recorded"
    #: As the grammar writes them.
    GRAMMAR = "grammar"


def recorded_defaults(strategy: SamplingStrategy | str) -> dict[str, str]:
    """The ``session_start`` and ``casing`` a strategy gets unless told: what the recordings teach
    (``"recorded"``), except for the uniform baseline, which learns nothing from them."""
    key = strategy.value if isinstance(strategy, SamplingStrategy) else str(strategy)
    if key == SamplingStrategy.UNIFORM.value:
        return {"session_start": SessionStart.INITIAL.value, "casing": Casing.GRAMMAR.value}
    return {"session_start": SessionStart.RECORDED.value, "casing": Casing.RECORDED.value}


#: Consecutive rejections after which a session starts afresh (its facts may leave little to say).
_SESSION_PATIENCE = 8
class SampleStream(Iterator[Sample]):
    """A lazy stream of verified samples; :attr:`report` counts what it did so far."""

    def __init__(self, grammar: Grammar, n: int | None, chooser: Chooser, generator: Generator,
                 verifier: Verifier | None, rng: random.Random, report: SamplingReport, *,
                 max_attempts: int, max_chars: int, session_length: float = 1.0,
                 sentence_case: float = 0.0, until_covered: bool = False,
                 start_state: frozenset[str] | None = None,
                 forms: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] | None = None) -> None:
        self.grammar = grammar
        self.n = n
        self.chooser = chooser
        self.generator = generator
        self.verifier = verifier
        self.rng = rng
        self.report = report
        self.max_attempts = max_attempts
        self.max_chars = max_chars
        self.session_length = session_length
        self.sentence_case = sentence_case
        self.until_covered = until_covered
        #: The facts each session starts from (the domain's initial state unless given).
        self.start_state = frozenset(grammar.tools.initial_state) if start_state is None else start_state
        self.state = self.start_state
        self.forms = forms or {}
        self._rejected_in_row = 0
        self._forced: DNode | None = None

    def __iter__(self) -> SampleStream:
        return self

    def __next__(self) -> Sample:
        if self.n is not None and self.report.samples >= self.n:
            raise StopIteration
        if self.until_covered and getattr(self.chooser, "exhausted", False):
            raise StopIteration
        for _ in range(self.max_attempts):
            result = self.attempt(self._forced)
            if isinstance(result, Sample):
                return result
        raise SamplingError(
            f"no valid sample in {self.max_attempts} attempts; rejections so far: {dict(self.report.rejected)}"
        )

    def attempt(self, forced: DNode | None = None) -> Sample | str:
        """One derivation, checked; the sample, or the reason it was rejected."""
        report = self.report
        report.attempts += 1
        chooser = self.chooser
        chooser.begin()
        t0 = time.perf_counter()
        reason, sample = self._build(forced)
        t1 = time.perf_counter()
        report.generate_seconds += t1 - t0
        if sample is not None and self.verifier is not None:
            d, calls = sample
            problem = self.verifier.check(d, calls)
            report.verify_seconds += time.perf_counter() - t1
            if problem:
                reason, sample = problem, None
        if sample is None:
            report.rejected[reason] += 1
            chooser.reject()
            self._rejected_in_row += 1
            if self._rejected_in_row >= _SESSION_PATIENCE:
                self.state = self.start_state
            return reason
        d, calls = sample
        result = Sample(d.text, calls, d.tree, d.expansions, tuple(c["name"] for c in calls), d.phrasing,
                        self.state)
        report.samples += 1
        chooser.accept(result)
        self._next_state(calls)
        return result

    def _next_state(self, calls: list[dict[str, Any]]) -> None:
        """Continue the session after an accepted instruction, or start a new one.

        A session ends after each instruction with probability ``1 / session_length``, so sessions
        are ``session_length`` instructions long on average; with 1, every instruction starts from
        :attr:`start_state` (and no random number is drawn).
        """
        self._rejected_in_row = 0
        if self.session_length > 1 and self.rng.random() * self.session_length >= 1:
            self.state = frozenset(self.grammar.tools.state_after(calls, state=self.state))
        else:
            self.state = self.start_state

    def _build(self, forced: DNode | None) -> tuple[str, tuple[Derivation, list[dict[str, Any]]] | None]:
        d = self.generator.derive(self.rng, self.chooser, forced=forced, state=self.state)
        if isinstance(d, str):
            return d, None
        if self.forms:
            d = self._cased(d)
        text = d.text
        if len(text) > self.max_chars:
            return "length", None
        if normalize_instruction(text) != text:  # Grammar.parse would read another text
            return "normalize", None
        try:
            calls = self.grammar.decompose_tree(d.tree, text).calls
        except InstructionParseError:
            return "calls", None
        except RecursionError:
            return "recursion", None
        if not calls:
            return "no_calls", None
        if self.sentence_case and text[:1].islower() and self.rng.random() < self.sentence_case:
            d = self._capitalized(d, calls)
        if self.grammar.tools.sequence_problems(calls, state=self.state):
            return "precondition", None
        if any(self.grammar.tools.domain_problems(call) for call in calls):
            return "domain", None
        return "", (d, calls)

    def _cased(self, d: Derivation) -> Derivation:
        """``d`` with the words of its literals written in the forms the recordings use, drawn in
        their shares (see :class:`Casing`). Every form of a word has the word's length and literals
        match in any case, so tokens, tree and calls stay; a literal the tree keeps is left as is."""
        literals = self.grammar.table.terminals
        chars: list[str] | None = None
        kept: set[int] | None = None
        for token_type, start in zip(d.token_types, d.token_starts):
            literal = literals.get(token_type)
            if not literal:
                continue
            for match in WORD_RE.finditer(literal):
                choice = self.forms.get(match.group().lower())
                if choice is None:
                    continue
                if kept is None:
                    kept = {t.start_pos for t in d.tree.scan_values(lambda v: isinstance(v, Token))} \
                        if isinstance(d.tree, Tree) else set()
                if start in kept:
                    break
                forms, cumulative = choice
                form = forms[bisect.bisect(cumulative, self.rng.random() * cumulative[-1])]
                a = start + match.start()
                if d.text[a:a + len(form)] != form:
                    chars = chars if chars is not None else list(d.text)
                    chars[a:a + len(form)] = form
        if chars is None:
            return d
        return Derivation("".join(chars), d.tree, d.expansions, d.token_types, d.token_starts, d.phrasing)

    def _capitalized(self, d: Derivation, calls: list[dict[str, Any]]) -> Derivation:
        """``d`` with its first letter upper-cased, as people start sentences; ``d`` itself where
        that would change a call (the first word is a case-sensitive value, a gene or a path).

        Literals match in any case, so the text still parses to the same tree. When the tree
        keeps the first token (a value, a kept keyword), that token is replaced on a copy of the
        path to it (subtrees may be shared).
        """
        text = d.text[0].upper() + d.text[1:]
        root = d.tree
        first = next(iter(root.scan_values(lambda v: isinstance(v, Token) and v.start_pos == 0)), None) \
            if isinstance(root, Tree) else None
        if first is not None:
            root = copy.copy(root)
            node: Any = root
            while node is not None:
                node.children = list(node.children)
                for k, child in enumerate(node.children):
                    if child is first:
                        node.children[k] = child.update(value=text[:len(child)])
                        node = None
                        break
                    if isinstance(child, Tree) and any(v is first for v in child.scan_values(lambda v: True)):
                        node.children[k] = copy.copy(child)
                        node = node.children[k]
                        break
                else:
                    return d
        try:
            if self.grammar.decompose_tree(root, text).calls != calls:
                return d
        except (InstructionParseError, RecursionError):
            return d
        return Derivation(text, root, d.expansions, d.token_types, d.token_starts, d.phrasing)


def _form_table(forms: dict[str, dict[str, int]]) -> dict[str, tuple[tuple[str, ...], tuple[float, ...]]]:
    """``{word: (forms, cumulative weights)}``: each recorded form weighs its count, and the
    grammar's lower-case form one more, so a form the recordings wrote once is not forced."""
    table = {}
    for lower, seen in forms.items():
        weights = {**seen, lower: seen.get(lower, 0) + 1}
        names = tuple(sorted(weights))
        table[lower] = (names, tuple(itertools.accumulate(float(weights[n]) for n in names)))
    return table


def _check_options(opts: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise InvalidArgument(f"unknown sampling options {unknown}; valid options: {sorted(allowed)}")
    merged = dict(allowed)
    merged.update(opts)
    return merged


def _registered(strategy: SamplingStrategy | str) -> tuple[StrategyFactory, dict[str, Any]]:
    key = strategy.value if isinstance(strategy, SamplingStrategy) else str(strategy)
    if key == SamplingStrategy.COVERAGE.value and key not in _STRATEGIES:
        from . import coverage  # noqa: F401 - imports coverage_guided, which registers the strategy
    if key not in _STRATEGIES:
        valid = sorted(set(_STRATEGIES) | {SamplingStrategy.COVERAGE.value})
        raise InvalidArgument(f"unknown strategy {key!r}; valid strategies: {valid}")
    return _STRATEGIES[key]


def _strategy_factory(strategy: SamplingStrategy | str) -> StrategyFactory:
    return _registered(strategy)[0]


def strategy_options(strategy: SamplingStrategy | str) -> dict[str, Any]:
    """The options a strategy declares beyond the common ones, with their defaults."""
    return dict(_registered(strategy)[1])


def sample(
    grammar: Grammar,
    n: int | None = None,
    *,
    strategy: SamplingStrategy | str = SamplingStrategy.WEIGHTED,
    seed: int | None = 0,
    rng: random.Random | None = None,
    **options: Any,
) -> SampleStream:
    """A lazy stream of ``n`` verified samples (endless when ``n`` is None).

    ``Grammar.sample(n, strategy=..., seed=...)`` delegates here; the CLI goes through
    :func:`grammar_engine.corpus.write_corpus` instead.

    Parameters
    ----------
    grammar
        The grammar to sample from.
    n
        How many samples; None for an endless stream.
    strategy
        ``"weighted"`` (default), ``"coverage"`` or ``"uniform"`` (see the module docstring).
    seed
        Seed of the stream's ``random.Random``; the same grammar, options and seed give the same
        samples. Ignored when ``rng`` is given.
    rng
        A ``random.Random`` to draw from instead of a seeded one.
    **options
        ``max_depth`` (depth budget), ``temperature``, ``alpha``, ``recordings``, ``weights``
        (``{expansion index: weight}`` replacing the grammar file's overrides), ``verify``
        (``"auto"``: exact, ``"fast"``, ``"reference"``, ``"off"``), ``max_attempts`` (per sample, default 200),
        ``preconditions`` (steer toward valid call sequences, default True), ``max_chars``,
        ``sources`` (a :class:`~grammar_engine.value_sources.ValueSources`), ``audit_every``,
        ``session_start`` (``"recorded"``, the default except for the uniform strategy: sessions
        start from the domain's initial state plus every fact the recorded instructions need
        before their calls, so that ``umap`` alone is drawn as often as people say it;
        ``"initial"``: from the domain's initial state, so that a session's calls run as a whole
        on a freshly loaded dataset; see :class:`SessionStart`), ``session_length`` (default 1:
        every instruction starts a session; larger: instructions are the steps of sessions of that
        mean length, each starting from the facts the earlier ones established), ``casing``
        (``"recorded"``, the default except for the uniform strategy: the words of literals are
        written in the forms and shares the recordings use, ``UMAP`` beside ``umap``; ``"grammar"``:
        as the grammar writes them; see :class:`Casing`), ``sentence_case`` (default 0.5: the share of instructions
        whose first letter is upper-cased, as people start sentences, where that changes no call);
        the coverage strategy adds ``targets`` (kinds to steer toward), ``fallback`` (strategy once
        they are covered), ``max_repeat``, ``max_size``, ``focus_below`` and ``focus_tries`` (see
        :mod:`grammar_engine.coverage_guided`), and ``until_covered`` (end the stream once every
        target is covered or given up; ``n`` is then the budget).

    Raises
    ------
    InvalidArgument
        For an unknown strategy or option, or a bad value.
    SamplingError
        While iterating, when no valid sample comes out of ``max_attempts`` attempts.

    Examples
    --------
    >>> import grammar_engine.grammar as g
    >>> grammar = g.load("grammars/example")
    >>> [s.tools for s in sample(grammar, 2, strategy="uniform", seed=3)]  # doctest: +SKIP
    [('pca',), ('normalize', 'log1p')]
    """
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise InvalidArgument(f"n must be a whole number >= 0 or None, got {n!r}")
    factory, own = _registered(strategy)
    key = strategy.value if isinstance(strategy, SamplingStrategy) else str(strategy)
    opts = _check_options(options, {**_OPTIONS, **own})
    until_covered = opts.pop("until_covered", False)
    if not isinstance(until_covered, bool):
        raise InvalidArgument(f"until_covered must be True or False, got {until_covered!r}")
    max_attempts = opts.pop("max_attempts")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidArgument(f"max_attempts must be a whole number >= 1, got {max_attempts!r}")
    max_depth = opts.pop("max_depth")
    if max_depth is not None and (not isinstance(max_depth, int) or max_depth < 1):
        raise InvalidArgument(f"max_depth must be a whole number >= 1, got {max_depth!r}")
    verify = opts.pop("verify")
    try:
        mode = VerifyMode(verify)
    except ValueError:
        raise InvalidArgument(f"verify must be one of {[m.value for m in VerifyMode]}, got {verify!r}") from None
    generator = Generator(grammar, max_depth=max_depth, sources=opts.pop("sources"),
                          preconditions=bool(opts.pop("preconditions")))
    audit_every = opts.pop("audit_every")
    max_chars = opts.pop("max_chars")
    session_length = opts.pop("session_length")
    if session_length is None:
        session_length = DEFAULT_SESSION_LENGTH
    if isinstance(session_length, bool) or not isinstance(session_length, (int, float)) \
            or not 1 <= session_length < float("inf"):
        raise InvalidArgument(f"session_length must be a number >= 1, got {session_length!r}")
    sentence_case = opts.pop("sentence_case")
    if sentence_case is None:
        sentence_case = DEFAULT_SENTENCE_CASE
    if isinstance(sentence_case, bool) or not isinstance(sentence_case, (int, float)) or not 0 <= sentence_case <= 1:
        raise InvalidArgument(f"sentence_case must be a number in [0, 1], got {sentence_case!r}")
    learned = recorded_defaults(key)
    session_start = opts.pop("session_start")
    casing = opts.pop("casing")
    try:
        start = SessionStart(learned["session_start"] if session_start is None else session_start)
    except ValueError:
        raise InvalidArgument(f"session_start must be one of {[s.value for s in SessionStart]}, "
                              f"got {session_start!r}") from None
    try:
        cased = Casing(learned["casing"] if casing is None else casing) is Casing.RECORDED
    except ValueError:
        raise InvalidArgument(f"casing must be one of {[c.value for c in Casing]}, got {casing!r}") from None
    starts_recorded = start is SessionStart.RECORDED and generator.preconditions
    use = recorded_use(grammar, opts.get("recordings")) if starts_recorded or cased else None
    start_state = frozenset(grammar.tools.initial_state)
    if use is not None and starts_recorded:
        start_state |= use.needs
    forms = _form_table(use.forms) if use is not None and cased else {}
    verifier = None if mode is VerifyMode.OFF else verifier_for(grammar, mode.value, audit_every=audit_every)
    chooser = factory(grammar, generator=generator, **opts)
    report = SamplingReport(key, seed if rng is None else None,
                            verifier=verifier.describe() if verifier is not None else {"kind": "off"},
                            progress=getattr(chooser, "progress", None))
    return SampleStream(grammar, n, chooser, generator, verifier, rng or random.Random(seed), report,
                        max_attempts=max_attempts, max_chars=max_chars, session_length=float(session_length),
                        sentence_case=float(sentence_case), until_covered=until_covered, start_state=start_state,
                        forms=forms)


# -- near --------------------------------------------------------------------------------------------------


def _sites(root: DNode) -> list[tuple[DNode, int]]:
    """Every (parent, child position) holding a sub-derivation, in pre-order."""
    sites = []
    stack = [root]
    while stack:
        node = stack.pop()
        found = [(node, k) for k, kid in enumerate(node.kids) if isinstance(kid, DNode)]
        sites.extend(found)
        stack.extend(node.kids[k] for _, k in reversed(found))
    return sites


def near(
    grammar: Grammar,
    instruction: str,
    n: int,
    *,
    strategy: SamplingStrategy | str = SamplingStrategy.WEIGHTED,
    seed: int | None = 0,
    **options: Any,
) -> list[Sample]:
    """``n`` verified variants of ``instruction`` that keep its tree but resample one subtree each.

    The instruction is parsed; its derivation is replayed with every token as written, except one
    subtree (a different one for each variant, cycling through the subtrees in an order drawn from
    ``seed``), which the strategy samples afresh. Variants differ from the instruction and from each
    other; fewer than ``n`` come back when the instruction has fewer distinct neighbours within
    ``n * max_attempts`` attempts.

    Parameters
    ----------
    grammar, strategy, seed, **options
        As for :func:`sample`.
    instruction
        An instruction in the grammar's language.
    n
        How many variants.

    Raises
    ------
    InstructionParseError
        When ``instruction`` does not parse.
    """
    if not isinstance(n, int) or n < 0:
        raise InvalidArgument(f"n must be a whole number >= 0, got {n!r}")
    decomposition = grammar.parse(instruction)
    tables = gen_tables(grammar)
    root = derivation_of_parse(tables, decomposition.text, decomposition.expansions)
    if root is None:
        raise SamplingError(f"cannot replay the parse of {decomposition.text!r}")
    options.setdefault("session_length", 1)  # variants of one instruction, each from the session start
    stream = sample(grammar, None, strategy=strategy, seed=seed, **options)
    rng = stream.rng
    sites = _sites(root)
    rng.shuffle(sites)
    seen = {decomposition.text}
    out: list[Sample] = []
    if not sites:
        return out
    attempts = 0
    k = 0
    budget = n * stream.max_attempts
    while len(out) < n and attempts < budget:
        parent, position = sites[k % len(sites)]
        k += 1
        original = parent.kids[position]
        parent.kids[position] = FREE
        try:
            for _ in range(4):
                attempts += 1
                result = stream.attempt(root)
                if isinstance(result, Sample) and result.instruction not in seen:
                    seen.add(result.instruction)
                    out.append(result)
                    break
        finally:
            parent.kids[position] = original
    return out
