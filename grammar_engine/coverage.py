"""Coverage of a grammar by samples, its lower bound, and the coverage-guided strategy.

Targets are read off the grammar (only rules people wrote count: helpers Lark generates, whose
names start with ``__``, are looked through):

===============  ===================================================================================
kind             one target per
===============  ===================================================================================
expansion        expansion of a user rule that can take part in a derivation (``call_pca#2``)
path2            pair (parent expansion, expansion directly under it), helpers looked through
tool_phrasing    call expansion, with its tool (``pca`` x ``call_pca#2``)
tool_pair        ordered pair of tools (a, b) that can follow each other in a multi-step instruction
                 (both expressible; b's preconditions satisfiable)
enum_value       enum value of a tool argument a slot can fill (a default counts when omitted)
range_edge       declared ``minimum``/``maximum`` of a numeric argument a slot can fill
===============  ===================================================================================

:func:`measure` reports what any iterable of samples covers (generated :class:`Sample`\\ s,
:class:`~grammar_engine.parsing.Decomposition`\\ s, or instruction strings, which are parsed), with a
curve at checkpoints. :func:`lower_bound` gives the fewest derivations that could cover every
expansion target, computed on the rule graph.

The ``coverage`` strategy (:class:`CoverageChooser`, registered with
:func:`grammar_engine.sampling.sample`) prefers what has not been produced yet: at each nonterminal,
an uncovered expansion or 2-path first, then the expansion under which the most uncovered targets
remain (counting each child, so a repetition that reaches more targets is taken, up to
``max_repeat`` times in a row), an uncovered tool pair after the previous call, uncovered enum values
and range edges for the slot values, and, once nothing it can steer toward is left, the fallback
strategy (``weighted`` by default). Coverage commits only when a sample is accepted. The
strategy lives in :mod:`grammar_engine.coverage_guided`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import networkx as nx

from .errors import InstructionParseError, InvalidArgument
from .gen_tables import gen_tables
from .slots import SlotKind
from .tools import fact_alternatives, fill_fact
from .values import ValueKind

if TYPE_CHECKING:
    from .grammar import Grammar
    from .sampling import Sample
    from .parsing import Decomposition

__all__ = [
    "CoverageChooser",
    "CoverageReport",
    "CoverageTargets",
    "TargetKind",
    "coverage_targets",
    "lower_bound",
    "measure",
    "sample_targets",
    "size_of",
]


class TargetKind(str, Enum):
    """The kinds of coverage targets."""

    EXPANSION = "expansion"
    PATH2 = "path2"
    TOOL_PHRASING = "tool_phrasing"
    TOOL_PAIR = "tool_pair"
    ENUM_VALUE = "enum_value"
    RANGE_EDGE = "range_edge"


@dataclass(frozen=True)
class CoverageTargets:
    """Every target of a grammar, by kind (see the module docstring)."""

    by_kind: dict[TargetKind, frozenset[Any]]
    user: frozenset[int]  # user expansions that can take part in a derivation

    def total(self) -> dict[str, int]:
        """How many targets of each kind."""
        return {kind.value: len(targets) for kind, targets in self.by_kind.items()}


_TARGETS: weakref.WeakKeyDictionary[Any, CoverageTargets] = weakref.WeakKeyDictionary()


def _user_children(grammar: Grammar) -> dict[int, frozenset[int]]:
    """For each usable expansion, the user expansions directly under it (helpers looked through)."""
    t = gen_tables(grammar)
    cache: dict[str, frozenset[int]] = {}

    def below(symbol: str) -> frozenset[int]:
        found = cache.get(symbol)
        if found is not None:
            return found
        out: set[int] = set()
        seen = {symbol}
        stack = [symbol]
        while stack:
            sym = stack.pop()
            for e in t.alts.get(sym, ()):
                x = t.exps[e]
                if x.user:
                    out.add(e)
                    continue
                for child, term in zip(x.children, x.is_term):
                    if not term and child not in seen:
                        seen.add(child)
                        stack.append(child)
        cache[symbol] = frozenset(out)
        return cache[symbol]

    result: dict[int, frozenset[int]] = {}
    for exps in t.alts.values():
        for e in exps:
            x = t.exps[e]
            kids: set[int] = set()
            for child, term in zip(x.children, x.is_term):
                if not term:
                    kids |= below(child)
            result[e] = frozenset(kids)
    return result


def _feasible_tools(grammar: Grammar, tools: set[str]) -> set[str]:
    """Tools whose preconditions some sequence of expressible tools can establish."""
    facts = set(grammar.tools.initial_state)
    prefixes: set[str] = set()  # of templated facts some tool provides ("obs:" for "obs:{key_added}")

    def holds_one(fact: str) -> bool:
        if "{" in fact:
            prefix = fact.split("{", 1)[0]
            return prefix in prefixes or any(f.startswith(prefix) for f in facts)
        return fact in facts

    def holds(requirement: str) -> bool:  # "a:{x} | b:{x}": one alternative is enough
        return any(holds_one(fact) for fact in fact_alternatives(requirement))

    ok: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in sorted(tools - ok):
            tool = grammar.tools[name]
            if all(holds(f) for f in tool.requires):
                ok.add(name)
                changed = True
                defaults = {k: v.default for k, v in tool.arguments.items() if v.has_default}
                for template in tool.provides:
                    try:
                        facts.add(fill_fact(template, defaults))
                    except (KeyError, IndexError, ValueError):
                        prefixes.add(template.split("{", 1)[0])
    return ok


def coverage_targets(grammar: Grammar) -> CoverageTargets:
    """Every coverage target of ``grammar`` (cached per grammar)."""
    found = _TARGETS.get(grammar)
    if found is not None:
        return found
    t = gen_tables(grammar)
    usable = {e for exps in t.alts.values() for e in exps}
    user = frozenset(e for e in usable if t.exps[e].user)
    children = _user_children(grammar)
    paths = frozenset((p, c) for p in user for c in children.get(p, ()))
    phrasings = frozenset(
        (t.exps[e].target, t.exps[e].node_id) for e in user
        if t.exps[e].typed is not None and t.exps[e].typed.kind is SlotKind.CALL and t.exps[e].target in grammar.tools
    )
    expressible = {tool for tool, _ in phrasings}
    feasible = _feasible_tools(grammar, expressible)
    pairs = frozenset((a, b) for a in sorted(feasible) for b in sorted(feasible))
    graph = grammar.graph
    enum_values: set[tuple[str, str, Any]] = set()
    edges: set[tuple[str, str, str]] = set()
    for tool in sorted(expressible):
        schema = grammar.tools[tool]
        for arg, spec in schema.arguments.items():
            node = f"argument:{tool}.{arg}"
            fillers = [u for u, _v, d in graph.in_edges(node, data=True) if d.get("kind") == "fills"] if node in graph else []
            if not fillers:
                continue
            if spec.enum:
                enum_values.update((tool, arg, v) for v in spec.enum)
            if spec.kind in (ValueKind.INT, ValueKind.NUMBER):
                free = [u for u in fillers if grammar.table.typed.get(u) and grammar.table.typed[u].kind in (SlotKind.ARG, SlotKind.EACH)]
                if free:
                    if spec.minimum is not None:
                        edges.add((tool, arg, "min"))
                    if spec.maximum is not None:
                        edges.add((tool, arg, "max"))
    found = CoverageTargets(
        {
            TargetKind.EXPANSION: user,
            TargetKind.PATH2: paths,
            TargetKind.TOOL_PHRASING: phrasings,
            TargetKind.TOOL_PAIR: pairs,
            TargetKind.ENUM_VALUE: frozenset(enum_values),
            TargetKind.RANGE_EDGE: frozenset(edges),
        },
        user,
    )
    _TARGETS[grammar] = found
    return found


# -- what one sample covers --------------------------------------------------------------------------


def _user_paths(grammar: Grammar, post: Sequence[int]) -> set[tuple[int, int]] | None:
    """2-paths of a derivation given by its post-order expansions (None if they do not nest)."""
    t = gen_tables(grammar)
    stack: list[list[int]] = []
    out: set[tuple[int, int]] = set()
    for e in post:
        if e >= len(t.exps):
            return None
        x = t.exps[e]
        k = x.n_nonterminals
        if k > len(stack):
            return None
        frontier: list[int] = []
        for part in stack[len(stack) - k:] if k else ():
            frontier.extend(part)
        if k:
            del stack[len(stack) - k:]
        if x.user:
            out.update((e, c) for c in frontier)
            frontier = [e]
        stack.append(frontier)
    return out if len(stack) == 1 else None


def sample_targets(grammar: Grammar, sample: Sample | Decomposition) -> dict[TargetKind, set[Any]]:
    """The targets one sample covers (every kind; unknown targets are kept, :func:`measure` filters)."""
    t = gen_tables(grammar)
    post = sample.expansions
    exps = set(post)
    out: dict[TargetKind, set[Any]] = {
        TargetKind.EXPANSION: {e for e in exps if e < len(t.exps) and t.exps[e].user},
        TargetKind.PATH2: _user_paths(grammar, post) or set(),
        TargetKind.TOOL_PHRASING: {
            (t.exps[e].target, t.exps[e].node_id) for e in exps
            if e < len(t.exps) and t.exps[e].user and t.exps[e].typed is not None and t.exps[e].typed.kind is SlotKind.CALL
        },
    }
    calls = sample.calls
    out[TargetKind.TOOL_PAIR] = {(a["name"], b["name"]) for a, b in zip(calls, calls[1:])}
    enums: set[tuple[str, str, Any]] = set()
    edges: set[tuple[str, str, str]] = set()
    for call in calls:
        schema = grammar.tools.tools.get(call["name"])
        if schema is None:
            continue
        args = call.get("arguments", {})
        for arg, spec in schema.arguments.items():
            value = args.get(arg)
            if spec.enum:
                if value is None and spec.has_default:
                    value = spec.default
                for v in value if isinstance(value, list) else [value]:
                    if v is not None:
                        enums.add((call["name"], arg, v))
            if value is not None and spec.kind in (ValueKind.INT, ValueKind.NUMBER) and not isinstance(value, bool):
                if spec.minimum is not None and value == spec.minimum:
                    edges.add((call["name"], arg, "min"))
                if spec.maximum is not None and value == spec.maximum:
                    edges.add((call["name"], arg, "max"))
    out[TargetKind.ENUM_VALUE] = enums
    out[TargetKind.RANGE_EDGE] = edges
    return out


def size_of(grammar: Grammar, sample: Sample | Decomposition) -> int:
    """User expansions in one sample's derivation: the size that ``lower_bound(max_size=...)`` limits."""
    t = gen_tables(grammar)
    return sum(1 for e in sample.expansions if t.exps[e].user)


# -- the lower bound ------------------------------------------------------------------------------------


def lower_bound(grammar: Grammar, max_size: int | None = None) -> int:
    """The fewest derivations that could cover every expansion target (a valid lower bound).

    With ``max_size``, only derivations of at most that many user expansions count (what a sampler
    with a size limit draws): each covers at most ``max_size`` targets, so at least
    ``ceil(targets / max_size)`` are needed, and the larger of the two bounds is returned. Without
    it, one long derivation through a recursive step list may cover almost everything, so the
    graph bound alone is far below what instructions of bounded length need.

    Computed on the graph of symbols and expansions reachable from the start symbol:

    - a nonterminal is *single* when no derivation can contain it twice (it is on no cycle and
      the sum, over its parents, of how often a parent's expansion names it, is at most one);
    - an expansion ``e`` *dominates* a node when every path from the start passes through ``e``,
      so every derivation containing that node contains ``e``;
    - the derivations that cover the targets under different expansions of a single nonterminal
      are different derivations, so their needs add up; targets under one expansion that are
      covered in parallel take the largest need.

    ``need(e) = max(1 if e is a target, max need of the nodes e immediately dominates)``;
    ``need(N) = sum of need over N's expansions`` for a single ``N`` (else the largest), and the
    bound is ``need(start)`` (at least 1 when there is any target).
    """
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1):
        raise InvalidArgument(f"max_size must be a whole number >= 1, got {max_size!r}")
    targets = coverage_targets(grammar).user
    graph_bound = _graph_lower_bound(grammar, targets)
    if max_size is None:
        return graph_bound
    return max(graph_bound, -(-len(targets) // max_size))


def _graph_lower_bound(grammar: Grammar, targets: frozenset[int]) -> int:
    t = gen_tables(grammar)
    graph = nx.DiGraph()
    start = t.start
    for symbol, exps in t.alts.items():
        for e in exps:
            graph.add_edge(("s", symbol), ("e", e))
            for child, term in zip(t.exps[e].children, t.exps[e].is_term):
                if not term and child in t.alts:
                    graph.add_edge(("e", e), ("s", child))
    root = ("s", start)
    if root not in graph:
        return 1 if targets else 0
    reach = nx.descendants(graph, root) | {root}
    sub = graph.subgraph(reach)
    # how often each symbol can occur in one derivation: 1, or more (cycles, several mentions)
    symbols = nx.DiGraph()
    for symbol, exps in t.alts.items():
        if ("s", symbol) not in reach:
            continue
        for e in exps:
            for child, term in zip(t.exps[e].children, t.exps[e].is_term):
                if not term and child in t.alts:
                    symbols.add_edge(symbol, child)
    symbols.add_node(start)
    repeated: set[str] = set()
    for component in nx.strongly_connected_components(symbols):
        if len(component) > 1 or any(symbols.has_edge(n, n) for n in component):
            repeated |= component
    occurs: dict[str, float] = {start: 1.0}
    condensed = nx.condensation(symbols)
    for comp in nx.topological_sort(condensed):
        members = condensed.nodes[comp]["members"]
        for symbol in members:
            count = occurs.get(symbol, 0.0)
            if symbol in repeated:
                count = math.inf
            occurs[symbol] = count
            most: dict[str, int] = {}
            for e in t.alts.get(symbol, ()):
                for child in t.exps[e].children:
                    if child in t.alts:
                        mentions = t.exps[e].children.count(child)
                        most[child] = max(most.get(child, 0), mentions)
            for child, mentions in most.items():
                occurs[child] = math.inf if count == math.inf else occurs.get(child, 0.0) + count * mentions
    # summed over parents (several parents can occur together): an upper bound, so "single" is safe
    single = {s for s, n in occurs.items() if n <= 1}
    dominators = nx.immediate_dominators(sub, root)
    tree: dict[Any, list[Any]] = {}
    dom_tree = nx.DiGraph()
    dom_tree.add_node(root)
    for node, parent in dominators.items():
        if node != parent:
            tree.setdefault(parent, []).append(node)
            dom_tree.add_edge(parent, node)
    order = list(nx.dfs_postorder_nodes(dom_tree, root))
    value: dict[Any, int] = {}
    for node in order:
        kids = tree.get(node, [])
        if node[0] == "e":
            value[node] = max([1 if node[1] in targets else 0] + [value.get(k, 0) for k in kids])
        elif node[1] in single:
            alts = {("e", e) for e in t.alts.get(node[1], ())}
            total = sum(value.get(k, 0) for k in kids if k in alts)
            others = [value.get(k, 0) for k in kids if k not in alts]
            value[node] = max([total] + others)
        else:
            value[node] = max([value.get(k, 0) for k in kids] or [0])
    return max(value.get(root, 0), 1 if targets else 0)


# -- measuring ----------------------------------------------------------------------------------------------


@dataclass
class CoverageReport:
    """Coverage reached by a run of samples.

    Attributes
    ----------
    samples
        Samples measured (instructions that did not parse are counted in ``invalid``).
    covered, total
        Targets covered and targets in the grammar, by kind.
    curve
        ``{"samples": n, kind: covered, ...}`` at each checkpoint reached (and at the end).
    full_expansion_at
        How many samples it took to cover every expansion target (None: not reached).
    lower_bound
        :func:`lower_bound` of the grammar.
    largest
        The most user expansions in one measured sample.
    size_lower_bound
        ``lower_bound(grammar, max_size=largest)``: the fewest derivations no larger than the
        largest measured sample that could cover every expansion target; the yardstick for
        ``full_expansion_at``.
    uncovered
        Up to 50 uncovered targets per kind, for reading.
    """

    samples: int = 0
    invalid: int = 0
    covered: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    curve: list[dict[str, int]] = field(default_factory=list)
    full_expansion_at: int | None = None
    lower_bound: int = 0
    largest: int = 0
    size_lower_bound: int = 0
    uncovered: dict[str, list[str]] = field(default_factory=dict)

    def ratio(self, kind: TargetKind | str) -> float:
        """Share of the targets of ``kind`` covered (1.0 when there are none)."""
        key = TargetKind(kind).value
        return self.covered.get(key, 0) / self.total[key] if self.total.get(key) else 1.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"samples": self.samples, "invalid": self.invalid, "covered": self.covered, "total": self.total,
                "ratios": {k: round(self.ratio(k), 4) for k in self.total}, "curve": self.curve,
                "full_expansion_at": self.full_expansion_at, "lower_bound": self.lower_bound,
                "largest": self.largest, "size_lower_bound": self.size_lower_bound, "uncovered": self.uncovered}


def _as_sample(grammar: Grammar, item: Any) -> Any:
    if isinstance(item, str):
        return grammar.parse(item)
    if isinstance(item, dict) and isinstance(item.get("instruction"), str):
        return grammar.parse(item["instruction"])
    if hasattr(item, "expansions") and hasattr(item, "calls"):
        return item
    raise InvalidArgument(f"measure() takes samples, decompositions or instruction strings, got {type(item).__name__}")


def measure(grammar: Grammar, samples: Iterable[Any], *, checkpoints: Iterable[int] = (100, 1000, 10000)) -> CoverageReport:
    """Measure the coverage of ``samples`` (``Grammar.coverage(samples)`` delegates here).

    Parameters
    ----------
    grammar
        The grammar whose targets are counted.
    samples
        Any iterable of :class:`~grammar_engine.sampling.Sample`, ``Decomposition``, instruction
        strings or ``{"instruction": ...}`` records (strings are parsed; those that do not parse
        count as ``invalid``). Consumed once, lazily.
    checkpoints
        Sample counts at which the curve records coverage.
    """
    targets = coverage_targets(grammar)
    marks = sorted(set(int(c) for c in checkpoints))
    covered: dict[TargetKind, set[Any]] = {k: set() for k in TargetKind}
    report = CoverageReport(total=targets.total(), lower_bound=lower_bound(grammar))
    expansions_total = len(targets.by_kind[TargetKind.EXPANSION])
    for item in samples:
        try:
            parsed = _as_sample(grammar, item)
        except InstructionParseError:
            report.invalid += 1
            parsed = None
        report.samples += 1
        if parsed is not None:
            report.largest = max(report.largest, size_of(grammar, parsed))
            for kind, found in sample_targets(grammar, parsed).items():
                covered[kind] |= found & targets.by_kind[kind]
            if report.full_expansion_at is None and len(covered[TargetKind.EXPANSION]) == expansions_total:
                report.full_expansion_at = report.samples
        if marks and report.samples == marks[0]:
            marks.pop(0)
            report.curve.append({"samples": report.samples, **{k.value: len(v) for k, v in covered.items()}})
    if not report.curve or report.curve[-1]["samples"] != report.samples:
        report.curve.append({"samples": report.samples, **{k.value: len(v) for k, v in covered.items()}})
    report.covered = {k.value: len(v) for k, v in covered.items()}
    if report.largest:
        report.size_lower_bound = lower_bound(grammar, max_size=report.largest)
    t = gen_tables(grammar)
    for kind in TargetKind:
        missing = targets.by_kind[kind] - covered[kind]
        rendered = sorted(_render_target(t, kind, m) for m in missing)
        report.uncovered[kind.value] = rendered[:50]
    return report


def _render_target(t: Any, kind: TargetKind, target: Any) -> str:
    if kind is TargetKind.EXPANSION:
        return t.exps[target].node_id
    if kind is TargetKind.PATH2:
        return f"{t.exps[target[0]].node_id} > {t.exps[target[1]].node_id}"
    return " ".join(str(part) for part in target)


from .coverage_guided import CoverageChooser  # noqa: E402 - re-exported; it needs the names above
