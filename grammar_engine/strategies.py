"""Hypothesis strategies for tool-typed grammars: instructions with their calls, and call lists.

:func:`instructions` draws whole samples (instruction, calls, tree) from a grammar;
:func:`calls` draws valid call lists from the tool schemas alone. Both need the optional
``hypothesis`` dependency (``pip install 'grammar-engine[dev]'``).

How :func:`instructions` draws
------------------------------
Every choice is a hypothesis draw, made top-down in text order, from public API only
(``st.composite``, ``st.integers``, ``st.lists``, ``st.randoms(use_true_random=False)``):

- **Expansions.** At a nonterminal with several allowed expansions, an index is drawn into them
  sorted *shortest first*: expansions that refer back (``ref_``) or fan out (``each_``) last, then
  by minimum derivation height, number of symbols and grammar order. Each such nonterminal is drawn
  inside its own nested ``st.composite`` draw, labelled by the rule, so the shrinker can replace a
  subtree by a smaller subtree of the same rule. A unit chain ``A: B`` (A's shortest expansion) is
  flattened into A's choices and shares B's label, so an A node can also shrink to a B node found
  below it ("before X, Y" to "Y"). Expansions deeper than the budget left are excluded (``max_depth``),
  and so are those that can only call tools outside ``tools``.
- **Lists.** What Lark compiles ``x*``, ``x+`` and ``x (sep x)*`` into is drawn as an ``st.lists``
  of items (at most three), so shrinking deletes any item, the first one included.
- **Values.** Regular-expression terminals are rendered where they stand, by the grammar's value
  sources (:mod:`grammar_engine.value_sources`: enums, numeric ranges, the molecule lexicon, listed
  values, the regex) from a ``random.Random`` drawn with ``st.randoms(use_true_random=False)``,
  whose every call is a hypothesis draw; ``values=`` strategies take precedence. Numbers are planned
  by the generator's number planner: a value in the argument's range, then a surface form.

The skeleton is then replayed by the sampler's engine (:class:`grammar_engine.generation.Generator`),
which builds the text, the Lark tree and the expansions used in one pass, exactly as it does for
``grammar-engine sample``; the calls are read off the tree as a parse would read them. Nothing
consults a private random generator, so every example replays from hypothesis's database.

Distribution: each allowed expansion of a nonterminal about equally likely (hypothesis skews
integer draws toward small values and bounds now and then), lists of one to three items.

Shrinking: toward the shortest expansion at every choice and the fewest list items, so toward
fewer steps, optional parts left out, no references; values toward the first enum value, the
smallest number in range and the first listed string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    from hypothesis import reject
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - exercised only without the dev extra
    raise ImportError(
        "grammar_engine.strategies needs hypothesis: pip install 'grammar-engine[dev]'"
    ) from exc

from .errors import InstructionParseError, InvalidArgument, ValueConversionError
from .generation import FREE, Chooser, Derivation, DNode, Generator, gen_tables
from .grammar import MAX_INSTRUCTION_CHARS, Grammar, load, normalize_instruction
from .parsing import extract_calls
from .sampling import Sample
from .slots import SlotKind
from .tools import ToolRegistry, fact_alternatives, fact_placeholders
from .value_sources import ValueContext, ValueSources
from .values import MoleculeLexicon, ValueKind, default_lexicon

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

    from .tools import ArgumentSpec

__all__ = ["DEFAULT_EXTRA_DEPTH", "InstructionSample", "calls", "instructions"]

#: Depth allowed beyond the start symbol's minimum height when ``max_depth`` is not given. Smaller
#: than the sampler's default: property tests want many small examples, not a few long ones.
DEFAULT_EXTRA_DEPTH = 8


@dataclass(frozen=True, repr=False)
class InstructionSample(Sample):
    """A :class:`~grammar_engine.sampling.Sample` drawn by :func:`instructions`.

    The fields of a sample (``instruction``, ``calls``, ``tree``, ``expansions``, ``tools``,
    ``phrasing``) plus the generated tokens (``token_types``, ``token_starts``: the terminal and
    start offset of each token, in text order), which the soundness checks use to say which
    terminal a parse error falls in. The repr is short, so that a falsifying example prints the
    instruction and its calls rather than the whole tree.
    """

    token_types: tuple[str, ...] = ()
    token_starts: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return f"InstructionSample(instruction={self.instruction!r}, calls={self.calls!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's pretty printer
        printer.text(repr(self))


# -- the plan and the chooser -------------------------------------------------------------------


@dataclass(repr=False)
class _Plan:
    """What one call of :func:`instructions` needs, built once (cached per grammar and options)."""

    grammar: Grammar
    generator: Generator
    sources: _DrawnSources
    order: dict[str, tuple[int, ...]]  # expansions of each nonterminal, shortest first
    rank: dict[int, tuple[int, int, int, int]]
    excluded: frozenset[int]  # expansions that can only lead to tools outside ``tools``
    allowed_tools: frozenset[str] | None
    indexes: dict[int, st.SearchStrategy[int]] = field(default_factory=dict)
    stars: dict[str, _Star] = field(default_factory=dict)
    pairs: dict[int, _Pair] = field(default_factory=dict)
    paths: dict[str, tuple[tuple[tuple[int, ...], int], ...]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    rules: dict[str, Callable[..., st.SearchStrategy[Any]]] = field(default_factory=dict)
    rule_draws: dict[tuple[Any, ...], st.SearchStrategy[Any]] = field(default_factory=dict)
    state: _DrawState | None = None

    def __repr__(self) -> str:
        tools = f", tools={sorted(self.allowed_tools)}" if self.allowed_tools is not None else ""
        return f"<{self.grammar!r}, max_depth={self.generator.max_depth}{tools}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's pretty printer
        printer.text(repr(self))

    def index(self, k: int) -> st.SearchStrategy[int]:
        found = self.indexes.get(k)
        if found is None:
            found = self.indexes[k] = st.integers(0, k - 1)
        return found


class _DrawChooser(Chooser):
    """Chooses every expansion and number form by a hypothesis draw (index 0 = shortest)."""

    def __init__(self, plan: _Plan, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.plan = plan
        self.draw = draw

    def _ordered(self, symbol: str, candidates: Sequence[int], full: bool) -> Sequence[int]:
        plan = self.plan
        if full:
            ordered: Sequence[int] = plan.order[symbol]
        else:
            ordered = sorted(candidates, key=plan.rank.__getitem__)
        if plan.excluded:
            kept = [i for i in ordered if i not in plan.excluded]
            if kept:
                ordered = kept
        return ordered

    def choose(self, symbol: str, candidates: Sequence[int], full: bool, parent: int, rng: random.Random) -> int:
        ordered = self._ordered(symbol, candidates, full)
        if len(ordered) == 1:
            return ordered[0]
        return ordered[self.draw(self.plan.index(len(ordered)))]

    def choose_form(self, entries: Sequence[tuple[str, DNode, tuple[int, ...]]], parent: int, rng: random.Random) -> int:
        if len(entries) == 1:
            return 0
        return int(self.draw(self.plan.index(len(entries))))


# -- the skeleton: which expansion at each nonterminal ---------------------------------------------------
#
# The expansions are drawn first, top-down, each nonterminal that has a choice inside its own draw
# (a nested span whose label is the nonterminal's name), so that hypothesis's shrinker can replace a
# subtree by a smaller subtree of the same rule (``pass_to_descendant``) or delete it whole when a
# choice above it is lowered, as it does for ``from_lark``. The generator then replays this skeleton
# (``Generator.derive(forced=...)``): it renders values, plans numbers, builds the text and the tree.

#: Spans nest at most this deep (hypothesis marks deeper data invalid at 100); below, rules expand inline.
_MAX_NESTING = 48
#: Longest list drawn for one ``x*`` / ``x+`` / ``x (sep x)*`` (hypothesis averages about half of it).
_MAX_ITEMS = 3

_Draw = Callable[[st.SearchStrategy[Any]], Any]


#: What a terminal is rendered for: (tool of the enclosing call, argument of the enclosing slot,
#: value kind), as the generator tracks it.
_Ctx = tuple["str | None", "str | None", "ValueKind | None"]
_NO_CTX: _Ctx = (None, None, None)


@dataclass
class _DrawState:
    """Mutable state of one skeleton draw: precondition facts (as the generator tracks them, without
    the values of templated facts), the drawn ``random.Random`` and the chooser for numbers."""

    facts: frozenset[str]
    blocked: int
    rng: Any
    chooser: Chooser
    nesting: int = 0


@dataclass(frozen=True)
class _Star:
    """A helper rule Lark compiles ``x*`` / ``x+`` into: ``H: item | H item`` for each item form."""

    base: tuple[int, ...]  # the item expansions, shortest first
    recursive: dict[int, int]  # item expansion -> the ``H item`` expansion that repeats it


@dataclass(frozen=True)
class _Pair:
    """``A: P x Q`` and ``A: P x H Q`` where every item of ``H`` ends in ``x``: a list ``x (sep x)*``."""

    with_star: int
    star: str
    position: int  # index of ``x`` (the last symbol of P) in the expansion without the star


def _stars_and_pairs(t: Any) -> tuple[dict[str, _Star], dict[int, _Pair]]:
    """Find the list shapes of the compiled grammar, drawn as hypothesis lists (see ``_elements``)."""
    stars: dict[str, _Star] = {}
    for origin, alts in t.alts.items():
        if not origin.startswith("__") or not ("_star_" in origin or "_plus_" in origin):
            continue
        exps = [t.exps[i] for i in alts]
        base = [x for x in exps if not x.children or x.children[0] != origin]
        by_children = {x.children: x.index for x in base}
        recursive = {}
        for x in exps:
            if x.children and x.children[0] == origin:
                found = by_children.get(x.children[1:])
                if found is None:
                    break
                recursive[found] = x.index
        else:
            if base and len(recursive) == len(base) and len(base) + len(recursive) == len(exps):
                stars[origin] = _Star(tuple(x.index for x in base), recursive)
    pairs: dict[int, _Pair] = {}
    for origin, alts in t.alts.items():
        by_children = {t.exps[i].children: i for i in alts}
        for i in alts:
            children = t.exps[i].children
            for k, child in enumerate(children):
                if child not in stars or k == 0:
                    continue
                without = by_children.get(children[:k] + children[k + 1:])
                last = children[k - 1]
                if without is None or without in pairs or any(
                        t.exps[b].children[-1:] != (last,) for b in stars[child].base):
                    continue
                pairs[without] = _Pair(i, child, k - 1)
                break
    return stars, pairs


def _composite(plan: _Plan, kind: str, name: str, body: Callable[..., Any]) -> Callable[..., st.SearchStrategy[Any]]:
    """A composite whose span label is ``kind:name`` (hypothesis labels a composite by its function's
    code *and defaults*; the default ``_label`` makes one label per rule, shared across budgets)."""
    key = f"{kind}:{name}"
    found = plan.rules.get(key)
    if found is None:
        def definition(draw: _Draw, *args: Any, _label: str = key) -> Any:
            state = plan.state
            assert state is not None
            state.nesting += 1
            try:
                return body(draw, *args)
            finally:
                state.nesting -= 1

        found = plan.rules[key] = st.composite(definition)
    return found


def _cached(plan: _Plan, key: tuple[Any, ...], make: Callable[[], st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    found = plan.rule_draws.get(key)
    if found is None:
        found = plan.rule_draws[key] = make()
    return found


def _candidates(plan: _Plan, ordered: Sequence[int], budget: int, rev: bool,
                hops: Sequence[int] | None = None) -> Sequence[int]:
    """The allowed expansions among ``ordered``: within the depth budget (``hops`` unit levels
    above each), toward allowed tools, away from tools whose precondition facts are missing."""
    t = plan.generator.t
    state = plan.state
    assert state is not None
    if hops is None:
        kept = [i for i in ordered if t.exp_depth[i] <= budget]
    else:
        kept = [i for i, h in zip(ordered, hops) if t.exp_depth[i] + h <= budget]
    ordered = kept or ordered[:1]
    if plan.excluded:
        ordered = [i for i in ordered if i not in plan.excluded] or ordered
    if state.blocked and not rev:
        bits = t.tool_bits
        ordered = [i for i in ordered if not bits[i] or bits[i] & ~state.blocked] or ordered
    return ordered


def _spec(plan: _Plan, ctx: _Ctx) -> ArgumentSpec | None:
    tool, arg = ctx[0], ctx[1]
    if arg is None:
        return None
    tools = plan.grammar.tools.tools
    if tool is not None and tool in tools:
        found = tools[tool].arguments.get(arg)
        if found is not None:
            return found
    return plan.generator.t.arg_specs.get(arg)


def _enter(plan: _Plan, e: int, ctx: _Ctx, rev: bool) -> tuple[_Ctx, bool]:
    """The rendering context inside expansion ``e`` (the generator's rules, in its ``push``)."""
    typed = plan.generator.t.exps[e].typed
    if typed is None:
        return ctx, rev
    kind = typed.kind
    if kind is SlotKind.CALL:
        return (typed.target, None, None), rev
    if kind.fills_argument:
        spec = _spec(plan, (ctx[0], typed.target, None))
        return (ctx[0], typed.target if spec is not None else None, spec.kind if spec is not None else None), rev
    if kind is SlotKind.VAL:
        return (ctx[0], ctx[1], typed.value_kind or ctx[2]), rev
    if kind is SlotKind.GROUP:
        return _NO_CTX, rev
    if kind is SlotKind.REVERSED:
        return ctx, True
    return ctx, rev


def _terminal(plan: _Plan, name: str, ctx: _Ctx) -> Any:
    """A regular-expression terminal's text, rendered where it stands in the draw (so that deleting
    a subtree deletes its values' draws too); literals are left to the generator."""
    t = plan.generator.t
    if t.literal.get(name) is not None:
        return FREE
    state = plan.state
    assert state is not None
    text = plan.sources.render(ValueContext(name, ctx[0], _spec(plan, ctx), ctx[2], state.facts), state.rng)
    if not text:
        reject()  # no value source can render it here (the generator would fail the same way)
    return text


def _sub(plan: _Plan, draw: _Draw, symbol: str, budget: int, rev: bool, ctx: _Ctx) -> Any:
    """The derivation of one nonterminal child: a planned number, a list, or a rule draw."""
    t = plan.generator.t
    state = plan.state
    assert state is not None
    if symbol in t.numeric_vals:
        # the generator's number planner: the value first, then a surface form the rule derives
        planner = getattr(plan.generator, "_plan_number", None)
        if planner is not None:
            node = planner(symbol, (ctx[0], _spec(plan, ctx), ctx[2], rev, -1, None), state.chooser, state.rng)
            if node is not None:
                return node
        return FREE
    if state.nesting >= _MAX_NESTING:
        return _expand(plan, draw, symbol, budget, rev, ctx)
    if symbol in plan.stars:
        return _chain(plan, symbol, _elements(plan, draw, symbol, budget, rev, ctx, _MAX_ITEMS))
    if len(plan.paths.get(symbol, ())) > 1:
        strategy = _cached(plan, ("rule", symbol, budget, rev, ctx), lambda: _composite(
            plan, "rule", plan.labels[symbol], lambda d, *args: _expand(plan, d, *args))(symbol, budget, rev, ctx))
        return draw(strategy)
    return _expand(plan, draw, symbol, budget, rev, ctx)


def _child(plan: _Plan, draw: _Draw, child: str, term: bool, budget: int, rev: bool, ctx: _Ctx) -> Any:
    if term:
        return _terminal(plan, child, ctx)
    return _sub(plan, draw, child, budget - 1, rev, ctx)


def _children(plan: _Plan, draw: _Draw, e: int, budget: int, rev: bool, ctx: _Ctx) -> list[Any]:
    t = plan.generator.t
    x = t.exps[e]
    ctx, rev = _enter(plan, e, ctx, rev)
    kids = [_child(plan, draw, child, term, budget, rev, ctx) for child, term in zip(x.children, x.is_term)]
    _called(plan, e)
    return kids


def _called(plan: _Plan, e: int) -> None:
    typed = plan.generator.t.exps[e].typed
    if typed is not None and typed.kind is SlotKind.CALL and plan.generator.preconditions:
        generator = plan.generator
        state = plan.state
        assert state is not None
        state.facts = generator._provide(state.facts, typed.target, {})
        state.blocked = generator._blocked(state.facts)


def _elements(plan: _Plan, draw: _Draw, star: str, budget: int, rev: bool, ctx: _Ctx,
              cap: int) -> list[tuple[int, list[Any]]]:
    """Items of a list as a hypothesis list, so shrinking can delete any one of them.

    Every element draws its item form and all its children, the first one too (where only the
    last child is used), so that deleting element 0 leaves the others' draws aligned."""
    def element(d: _Draw, b: int, r: bool, c: _Ctx) -> tuple[int, list[Any]]:
        forms = _candidates(plan, plan.stars[star].base, b, r)
        e = forms[0] if len(forms) == 1 else forms[d(plan.index(len(forms)))]
        return e, _children(plan, d, e, b, r, c)

    strategy = _cached(plan, ("list", star, budget, rev, ctx, cap), lambda: st.lists(
        _composite(plan, "item", star, element)(budget, rev, ctx), min_size=1, max_size=cap))
    return draw(strategy)


def _chain(plan: _Plan, star: str, elements: list[tuple[int, list[Any]]]) -> DNode:
    """The left-recursive derivation ``H: H item`` of a list of items, as Lark compiles ``x*``."""
    recursive = plan.stars[star].recursive
    e, kids = elements[0]
    node = DNode(e, kids)
    for e, kids in elements[1:]:
        node = DNode(recursive[e], [node, *kids])
    return node


def _expand(plan: _Plan, draw: _Draw, symbol: str, budget: int, rev: bool, ctx: _Ctx) -> DNode:
    """Draw the expansion of ``symbol`` and, recursively, of its children.

    The choice is among ``plan.paths[symbol]``: expansions, and chains of unit expansions
    (``A: B``) flattened into A's list, so that an A node can be replaced by a B node drawn
    further down (see ``_unit_paths``)."""
    t = plan.generator.t
    entries = plan.paths.get(symbol)
    if not entries:
        reject()  # no usable expansion (an unrenderable terminal below): the generator fails the same way
    if budget < t.sym_depth[symbol]:
        budget = t.sym_depth[symbol]
    allowed = _candidates(plan, [p[-1] for p, _ in entries], budget, rev, hops=[len(p) - 1 for p, _ in entries])
    chosen = [(p, n) for p, n in entries if p[-1] in allowed] or list(entries[:1])
    if len(chosen) == 1:
        path = chosen[0][0]
    else:
        index = draw(plan.index(sum(n for _, n in chosen)))
        for path, n in chosen:
            if index < n:
                break
            index -= n
    for hop in path[:-1]:  # unit expansions: enter their typing, then go one level down
        ctx, rev = _enter(plan, hop, ctx, rev)
        budget -= 1
    node = _expand_one(plan, draw, path[-1], budget, rev, ctx)
    for hop in reversed(path[:-1]):
        _called(plan, hop)
        node = DNode(hop, [node])
    return node


def _expand_one(plan: _Plan, draw: _Draw, e: int, budget: int, rev: bool, ctx: _Ctx) -> DNode:
    t = plan.generator.t
    pair = plan.pairs.get(e)
    if pair is None:
        return DNode(e, _children(plan, draw, e, budget, rev, ctx))
    # ``P x Q`` or ``P x H Q``: draw x and the items of H as one list (element 0 is x alone)
    x = t.exps[e]
    k = pair.position
    inner, inner_rev = _enter(plan, e, ctx, rev)
    kids = [_child(plan, draw, c, term, budget, inner_rev, inner) for c, term in zip(x.children[:k], x.is_term[:k])]
    cap = _MAX_ITEMS if t.exp_depth[pair.with_star] <= budget else 1
    items = _elements(plan, draw, pair.star, budget - 1, inner_rev, inner, cap)
    kids.append(items[0][1][-1])
    if len(items) > 1:
        kids.append(_chain(plan, pair.star, items[1:]))
        e = pair.with_star
    kids += [_child(plan, draw, c, term, budget, inner_rev, inner)
             for c, term in zip(x.children[k + 1:], x.is_term[k + 1:])]
    _called(plan, e)
    return DNode(e, kids)


#: Unit chains are not flattened past this many index values (hypothesis integers stay uniform below 2**24).
_MAX_FLAT = 1 << 20


def _unit_paths(t: Any, order: dict[str, tuple[int, ...]], stars: dict[str, _Star], pairs: dict[int, _Pair]
                ) -> tuple[dict[str, tuple[tuple[tuple[int, ...], int], ...]], dict[str, str]]:
    """Flatten unit chains: when A's first (shortest) expansion is ``A: B``, A's choices are B's
    choices (as paths through ``A: B``) followed by A's other expansions, and A's span label is B's.

    So a B node drawn anywhere below an A node is also a valid A draw with the same index, and
    hypothesis's ``pass_to_descendant`` can replace the A node by it: "after X, Y" shrinks to "Y"
    although "Y" is a ``_simple`` and the whole a ``_step``. Each choice carries a multiplicity
    (the index is drawn uniformly over their sum): A's other expansions weigh as much as all of
    B's together, so every expansion of A stays as likely as without flattening."""
    paths: dict[str, tuple[tuple[tuple[int, ...], int], ...]] = {}
    labels: dict[str, str] = {}

    def unit(e: int) -> str | None:
        x = t.exps[e]
        if len(x.children) == 1 and not x.is_term[0] and e not in pairs:  # a list's short form is no unit
            child = x.children[0]
            if child in order and child not in stars and child not in t.numeric_vals:
                return child
        return None

    for root in order:
        chain = [root]  # follow first-expansion unit links down, then build bottom-up
        while chain[-1] not in paths and order[chain[-1]]:
            child = unit(order[chain[-1]][0])
            if child is None or child in chain:
                break
            chain.append(child)
        for symbol in reversed(chain):
            if symbol in paths:
                continue
            alts = order[symbol]
            child = unit(alts[0]) if alts else None
            below = paths.get(child) if child is not None else None
            total = sum(n for _, n in below) if below else 0
            if below is not None and len(below) > 1 and total * len(alts) <= _MAX_FLAT:
                paths[symbol] = (tuple(((alts[0], *p), n) for p, n in below)
                                 + tuple(((e,), total) for e in alts[1:]))
                labels[symbol] = labels[child]  # type: ignore[index]
            else:
                paths[symbol] = tuple(((e,), 1) for e in alts)
                labels[symbol] = symbol
    return paths, labels


class _Rng:
    """hypothesis's ``random.Random`` with ``uniform`` snapped to a grid of 1e-9 of its range.

    Every call still draws through hypothesis. The snapping keeps the subnormal floats hypothesis
    likes to try (``5e-324``) out of :func:`grammar_engine.value_sources.draw_number`: such values
    are valid there but render as long, unlike any number a person writes, and shrink poorly.
    """

    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rng, name)

    def uniform(self, a: float, b: float) -> float:
        value = self._rng.uniform(a, b)
        if b == a or not math.isfinite(value):
            return value
        return min(max(a + round((value - a) / (b - a), 9) * (b - a), min(a, b)), max(a, b))


class _DrawnSources:
    """The grammar's value sources, with user strategies (``values=``) tried first.

    Only ``render`` is used by the generator; ``draw`` is set for the duration of one draw.
    """

    def __init__(self, base: ValueSources, explicit: Mapping[str, st.SearchStrategy[str]]) -> None:
        self.base = base
        self.explicit = dict(explicit)
        self.draw: Callable[[st.SearchStrategy[Any]], Any] | None = None

    def _strategy(self, ctx: ValueContext) -> st.SearchStrategy[str] | None:
        explicit = self.explicit
        if not explicit:
            return None
        short = str(ctx.terminal).rsplit("__", 1)[-1]
        keys = [str(ctx.terminal), short.lstrip("_")]
        # argument keys are for the terminals that carry the value, not for the "," or "and"
        # between list items (``_NAME`` terminals are punctuation Lark leaves out of the tree)
        if ctx.argument is not None and not short.startswith("_"):
            if ctx.tool is not None:
                keys.insert(0, f"{ctx.tool}.{ctx.argument.name}")
            keys.append(ctx.argument.name)
        for key in keys:
            if key in explicit:
                return explicit[key]
        return None

    def render(self, ctx: ValueContext, rng: random.Random) -> str | None:
        strategy = self._strategy(ctx)
        if strategy is not None and self.draw is not None:
            text = self.draw(strategy)
            if not isinstance(text, str):
                raise InvalidArgument(f"values[...] for terminal {ctx.terminal} drew {text!r}, not a str")
            if not self.base.matches(ctx.terminal, text):
                reject()  # the text would not lex as this terminal: not a sample of the grammar
            return text
        return self.base.render(ctx, rng)


def _resolve_grammar(grammar: Grammar | str | Path) -> Grammar:
    if isinstance(grammar, Grammar):
        return grammar
    if isinstance(grammar, (str, Path)):
        return load(grammar)
    raise InvalidArgument(
        f"grammar must be a Grammar or a path to a domain folder, got {type(grammar).__name__} {grammar!r}"
    )


def _check_tools(registry: ToolRegistry, tools: Iterable[str] | None) -> frozenset[str] | None:
    if tools is None:
        return None
    if isinstance(tools, str):
        tools = [tools]
    try:
        names = list(tools)
    except TypeError:
        raise InvalidArgument(f"tools must be an iterable of tool names, got {tools!r}") from None
    for name in names:
        if not isinstance(name, str):
            raise InvalidArgument(f"tools must hold tool names (str), got {name!r} of type {type(name).__name__}")
        if name not in registry:
            close = get_close_matches(name, list(registry.tools), n=1)
            raise InvalidArgument(
                f"tools names {name!r}, which is not a tool of domain {registry.domain!r}"
                + (f"; did you mean {close[0]!r}?" if close else f"; tools: {sorted(registry.tools)}")
            )
    if not names:
        raise InvalidArgument("tools must name at least one tool (None means every tool)")
    return frozenset(names)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise InvalidArgument(f"{name} must be a whole number >= {minimum} or None, got {value!r}")


def _value_keys(grammar: Grammar) -> set[str]:
    keys: set[str] = set()
    for name, literal in grammar.table.terminals.items():
        if literal is None:
            keys.add(name)
            keys.add(name.rsplit("__", 1)[-1].lstrip("_"))
    for tool in grammar.tools:
        for arg in tool.arguments:
            keys.add(f"{tool.name}.{arg}")
            keys.add(arg)
    return keys


def _check_values(
    values: Mapping[str, Any] | None, known: set[str], what: str
) -> dict[str, st.SearchStrategy[Any]]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise InvalidArgument(f"values must be a mapping of names to strategies, got {type(values).__name__}")
    out = {}
    for key, strategy in values.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"values keys must be str, got {key!r}")
        if key not in known:
            close = get_close_matches(key, sorted(known), n=1)
            raise InvalidArgument(
                f"values[{key!r}] names no {what}"
                + (f"; did you mean {close[0]!r}?" if close else f"; valid names: {sorted(known)[:20]}")
            )
        if not isinstance(strategy, st.SearchStrategy):
            raise InvalidArgument(
                f"values[{key!r}] must be a hypothesis strategy, got {strategy!r}; wrap a constant in st.just(...)"
            )
        out[key] = strategy
    return out


def _needs_context(grammar: Grammar, exp: Any) -> int:
    """1 for an expansion that refers back (``ref_``) or fans out (``each_``), else 0.

    Shortest first would put "it" before "aspirin"; but "it" needs an earlier call to refer to, so
    a failing example shrunk toward it keeps an extra call. These expansions go after the others.
    """
    typed = grammar.table.typed
    names = [exp.name, *(c for c, term in zip(exp.children, exp.is_term) if not term)]
    return int(any((k := typed.get(n)) is not None and k.kind in (SlotKind.REF, SlotKind.EACH) for n in names))


def _plan(grammar: Grammar, max_depth: int | None, preconditions: bool, allowed: frozenset[str] | None,
          explicit: dict[str, st.SearchStrategy[str]]) -> _Plan:
    key = (max_depth, preconditions, allowed, tuple(sorted((k, id(v)) for k, v in explicit.items())))
    # kept on the grammar itself: a plan refers to its grammar, so a WeakKeyDictionary would never let go
    cache = vars(grammar).setdefault("_strategy_plans", {})
    found = cache.get(key)
    if found is not None:
        return found
    t = gen_tables(grammar)
    start_depth = t.sym_depth.get(t.start)
    depth = max_depth if max_depth is not None else (start_depth or 0) + DEFAULT_EXTRA_DEPTH
    sources = _DrawnSources(ValueSources(grammar), explicit)
    generator = Generator(grammar, max_depth=depth, sources=sources,  # type: ignore[arg-type]
                          preconditions=preconditions)
    rank = {e.index: (_needs_context(grammar, e), t.exp_depth.get(e.index, 1 << 30), len(e.children), e.index)
            for e in t.exps}
    order = {symbol: tuple(sorted(alts, key=rank.__getitem__)) for symbol, alts in t.alts.items()}
    excluded: frozenset[int] = frozenset()
    if allowed is not None:
        mask = 0
        for name in allowed:
            mask |= 1 << t.tool_index[name]
        # an expansion every derivation of which calls only tools outside ``allowed``
        excluded = frozenset(i for i, bits in enumerate(t.tool_bits) if bits and not bits & mask)
    stars, pairs = _stars_and_pairs(t)
    # a list is drawn through its shorter form: the expansion with the star is not a choice of its own
    merged = {pair.with_star for pair in pairs.values()}
    order = {symbol: tuple(i for i in alts if i not in merged) for symbol, alts in order.items()}
    paths, labels = _unit_paths(t, order, stars, pairs)
    plan = _Plan(grammar, generator, sources, order, rank, excluded, allowed, stars=stars, pairs=pairs,
                 paths=paths, labels=labels)
    if len(cache) > 32:
        cache.clear()
    cache[key] = plan
    return plan


@st.composite
def _samples(draw: Callable[[st.SearchStrategy[Any]], Any], plan: _Plan, max_chars: int, valid: bool,
             verify: bool) -> InstructionSample:
    grammar = plan.grammar
    generator = plan.generator
    facts = frozenset(grammar.tools.initial_state)
    rng = _Rng(draw(st.randoms(use_true_random=False, note_method_calls=False)))
    chooser = _DrawChooser(plan, draw)
    outer = plan.state, plan.sources.draw
    plan.state = _DrawState(facts, generator._blocked(facts) if generator.preconditions else 0, rng, chooser)
    plan.sources.draw = draw
    try:
        skeleton = _expand(plan, draw, generator.t.start, generator.max_depth, False, _NO_CTX)
        derivation = generator.derive(rng, chooser, forced=skeleton)  # type: ignore[arg-type]
    finally:
        plan.state, plan.sources.draw = outer
    if not isinstance(derivation, Derivation):
        reject()  # no derivation within the budget (a value that cannot be rendered)
    text = derivation.text
    if len(text) > max_chars or text != normalize_instruction(text):
        reject()
    try:
        found = extract_calls(derivation.tree, text, grammar.table, grammar.tools, grammar.lexicon)
    except (ValueConversionError, RecursionError):
        reject()  # e.g. "it" with nothing before it: a derivation whose calls cannot be read
    if not found or (valid and any(grammar.tools.validate_call(c) for c in found)):
        reject()
    if plan.allowed_tools is not None and any(c["name"] not in plan.allowed_tools for c in found):
        reject()
    if plan.generator.preconditions and grammar.tools.sequence_problems(found):
        reject()
    if verify:
        try:
            if grammar.parse(text).calls != found:
                reject()
        except InstructionParseError:
            reject()
    return InstructionSample(text, found, derivation.tree, derivation.expansions,
                             tuple(c["name"] for c in found), derivation.phrasing,
                             state=frozenset(grammar.tools.initial_state),
                             token_types=derivation.token_types, token_starts=derivation.token_starts)


def instructions(
    grammar: Grammar | str | Path,
    tools: Iterable[str] | None = None,
    *,
    max_depth: int | None = None,
    values: Mapping[str, st.SearchStrategy[str]] | None = None,
    max_chars: int = MAX_INSTRUCTION_CHARS,
    preconditions: bool = True,
    valid: bool = True,
    verify: bool = False,
) -> st.SearchStrategy[InstructionSample]:
    """A strategy of samples of ``grammar``: the instruction, its calls and its parse tree.

    Parameters
    ----------
    grammar
        A :class:`~grammar_engine.grammar.Grammar`, or a domain folder to load.
    tools
        Only samples whose calls all use these tools (default: any tool). Choices that can only
        lead to other tools are never drawn; the rest are filtered.
    max_depth
        Depth budget of a derivation (default: the start symbol's minimum height plus
        :data:`DEFAULT_EXTRA_DEPTH`).
    values
        Strategies of text for regular-expression terminals, keyed by terminal name (``GENE``,
        ``numbers__DIGITS`` or ``DIGITS``), by ``"tool.argument"`` or by argument name; the most
        specific key wins. Drawn text that the terminal does not match is rejected.
    max_chars
        Longest instruction (``Grammar.parse`` rejects longer ones).
    preconditions
        Steer toward, and keep only, call sequences that meet the tools' preconditions.
    valid
        Keep only samples whose calls fit the tool schemas (off: draw them all, as the ``schemas``
        soundness check does, to report the rule that derives an invalid call).
    verify
        Keep only samples whose text parses back to their own calls. Off by default: the
        soundness checks (:mod:`grammar_engine.testing`) want to *see* the samples that do not.

    Returns
    -------
    SearchStrategy[InstructionSample]
        Each sample's ``calls`` are read off the generated tree (as a parse would read them) and
        fit the tool schemas.

    Raises
    ------
    InvalidArgument
        At once, for an unknown tool or ``values`` key, or a bad option.

    Notes
    -----
    See the module docstring for the distribution and how examples shrink.

    Examples
    --------
    >>> from hypothesis import given
    >>> grammar = load("grammars/example")
    >>> @given(instructions(grammar, tools=["pca"]))
    ... def test_pca_parses(sample):
    ...     assert grammar.parse(sample.instruction).calls == sample.calls
    >>> test_pca_parses()
    """
    grammar = _resolve_grammar(grammar)
    allowed = _check_tools(grammar.tools, tools)
    _check_int("max_depth", max_depth, 1)
    _check_int("max_chars", max_chars, 1)
    explicit = _check_values(values, _value_keys(grammar), "regular-expression terminal, tool argument or argument")
    if gen_tables(grammar).sym_depth.get(grammar.table.start) is None:
        raise InvalidArgument(f"the start symbol of {grammar.source} derives no finite instruction")
    plan = _plan(grammar, max_depth, bool(preconditions), allowed, explicit)
    return _samples(plan, max_chars, bool(valid), bool(verify))


# -- call lists from the schemas ----------------------------------------------------------------------

_WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12).filter(lambda s: s[0].isalpha())
_PATH = st.builds(lambda stem, ext: f"{stem}.{ext}", _WORD, st.sampled_from(["h5ad", "smi", "png", "csv", "txt"]))


def _listed(registry: ToolRegistry, *names: str) -> list[str]:
    for name in names:
        found = registry.value_sources.get(name)
        if found:
            return list(found)
    return []


def _argument_values(registry: ToolRegistry, lexicon: MoleculeLexicon, tool: str, spec: ArgumentSpec,
                     explicit: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    for key in (f"{tool}.{spec.name}", spec.name):
        if key in explicit:
            return explicit[key]
    kind = spec.kind
    lo, hi = spec.minimum, spec.maximum
    if kind is ValueKind.INT:
        return st.integers(None if lo is None else math.ceil(lo), None if hi is None else math.floor(hi))
    if kind is ValueKind.NUMBER:
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if kind is ValueKind.BOOL:
        return st.booleans()
    enum = spec.enum
    item: st.SearchStrategy[str]
    if enum:
        item = st.sampled_from(enum)
    elif kind in (ValueKind.MOLECULE, ValueKind.MOLECULE_LIST):
        pool = _listed(registry, "SMILES") or [s for n in lexicon.names if (s := lexicon.smiles(n))]
        item = st.sampled_from(pool) if pool else _WORD
    elif kind is ValueKind.PATH:
        pool = _listed(registry, spec.name.upper() + "_PATH", "PATH")
        item = st.sampled_from(pool) if pool else _PATH
    else:
        pool = [v for v in _listed(registry, spec.name.upper()) if v]
        item = st.sampled_from(pool) if pool else _WORD
    if kind.is_list:
        return st.lists(item, min_size=1, max_size=3)
    return item


def _ready(registry: ToolRegistry, name: str, state: frozenset[str]) -> bool:
    """Whether ``name`` can be called now: each requirement is a fact that holds, or is templated
    over required arguments some facts can fill (optional ones may be left out)."""
    tool = registry[name]
    for requirement in tool.requires:
        holes = fact_placeholders(requirement)
        if not holes:
            if not any(fact in state for fact in fact_alternatives(requirement)):
                return False
        elif holes <= set(tool.required):
            if not all(registry.requirement_values(name, hole, {}, state) for hole in holes):
                return False
    return True


def _call_lists(draw: Callable[[st.SearchStrategy[Any]], Any], registry: ToolRegistry, lexicon: MoleculeLexicon,
                names: tuple[str, ...], min_size: int, max_size: int,
                explicit: Mapping[str, st.SearchStrategy[Any]]) -> list[dict[str, Any]]:
    state = frozenset(registry.initial_state)
    out: list[dict[str, Any]] = []
    size = draw(st.integers(min_size, max_size))
    for _ in range(size):
        # tools whose requirements can hold now; templated ones are met by drawing the value
        ready = [name for name in names if _ready(registry, name, state)]
        if not ready:
            break
        name = draw(st.sampled_from(ready))
        tool = registry[name]
        args: dict[str, Any] = {}
        for arg, spec in tool.arguments.items():
            if not spec.required and not draw(st.booleans()):
                continue
            # a value the facts allow, given the arguments drawn before it
            found = registry.requirement_values(name, arg, args, state)
            if found and not any(key in explicit for key in (f"{name}.{arg}", arg)):
                item = st.sampled_from(found)
                args[arg] = draw(st.lists(item, min_size=1, max_size=3) if spec.kind.is_list else item)
            else:
                args[arg] = draw(_argument_values(registry, lexicon, name, spec, explicit))
        call = registry.normalize_call({"name": name, "arguments": args})
        if registry.validate_call(call) or registry.sequence_problems([*out, call]):
            reject()  # an optional templated argument with no fact to take it from
        out.append(call)
        state = frozenset(registry.state_after([call], state=state))
    if len(out) < min_size:
        reject()
    return out


def calls(
    grammar: Grammar | str | Path,
    tools: Iterable[str] | None = None,
    *,
    min_size: int = 1,
    max_size: int = 4,
    values: Mapping[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """A strategy of valid call lists, drawn from the tool schemas alone (no grammar rule is used).

    Every list fits the schemas (:meth:`ToolRegistry.validate_call`), is normalized (arguments
    equal to their default dropped) and meets the tools' preconditions in order: a tool is drawn
    only when the facts it requires hold, and a templated requirement (``groups:{groupby}``)
    draws its argument among the facts that satisfy it.

    Parameters
    ----------
    grammar
        A grammar (its ``tools`` are used), a :class:`~grammar_engine.tools.ToolRegistry`, or a
        domain folder or ``tools.json`` path (the grammar itself is not loaded).
    tools
        Draw only these tools (default: every tool).
    min_size, max_size
        Bounds on the number of calls.
    values
        Strategies of JSON values keyed by ``"tool.argument"`` or argument name (default: from
        the schema: ranges, enums, ``tools.json`` ``values`` lists, the molecule lexicon).

    Notes
    -----
    Shrinks toward fewer calls, the first tool in schema order, optional arguments left out,
    numbers toward their minimum and strings toward the first listed value.
    """
    registry, lexicon = _schemas(grammar)
    allowed = _check_tools(registry, tools)
    _check_int("min_size", min_size, 0)
    _check_int("max_size", max_size, 0)
    if max_size < min_size:
        raise InvalidArgument(f"max_size ({max_size}) must be >= min_size ({min_size})")
    known = {f"{t.name}.{a}" for t in registry for a in t.arguments} | {a for t in registry for a in t.arguments}
    explicit = _check_values(values, known, "tool argument")
    names = tuple(t.name for t in registry if allowed is None or t.name in allowed)

    def call_lists(draw: Callable[[st.SearchStrategy[Any]], Any]) -> list[dict[str, Any]]:
        return _call_lists(draw, registry, lexicon, names, min_size, max_size, explicit)

    call_lists.__name__ = call_lists.__qualname__ = "calls_of_" + re.sub(r"\W", "_", registry.domain)
    return st.composite(call_lists)()


def _schemas(source: Any) -> tuple[ToolRegistry, MoleculeLexicon]:
    """The tool registry (and molecule lexicon) of a grammar, a registry, a domain folder or a tools.json."""
    if isinstance(source, Grammar):
        return source.tools, source.lexicon
    if isinstance(source, ToolRegistry):
        return source, default_lexicon()
    if isinstance(source, (str, Path)):
        path = Path(source)
        folder = path if path.is_dir() else path.parent
        tools_file = path / "tools.json" if path.is_dir() else path
        if tools_file.suffix != ".json":
            tools_file = folder / "tools.json"
        lexicon_file = folder / "molecules.tsv"
        lexicon = MoleculeLexicon.from_file(lexicon_file) if lexicon_file.is_file() else default_lexicon()
        return ToolRegistry.from_file(tools_file), lexicon
    raise InvalidArgument(
        f"calls() takes a Grammar, a ToolRegistry or a path to a domain folder or tools.json, got {source!r}"
    )
