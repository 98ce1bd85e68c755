"""The derivation graph of a grammar, and the queries the checks, counts and samplers need.

The graph is a :class:`networkx.DiGraph` built once per grammar from Lark's compiled BNF.

Nodes (attribute ``kind``):

- ``"nonterminal"``: a rule name. Attributes ``typed`` (the slot kind: call, arg, ... or ""),
  ``target`` (tool, argument or value kind), ``user`` (False for helper rules Lark generates,
  whose names start with ``__``), ``min_depth``.
- ``"terminal"``: a terminal name. ``literal`` is its text for string terminals, else "";
  ``pattern`` its regular expression.
- ``"expansion"``: one compiled alternative, id ``"<origin>#<k>"``. ``origin``, ``index`` (into
  :attr:`RuleTable.expansions`), ``label`` (readable ``origin: a b c``), ``alias``.
- ``"tool"``: ``"tool:<name>"``; ``"argument"``: ``"argument:<tool>.<arg>"``.

Edges (attribute ``kind``): nonterminal -> expansion ``"alternative"``; expansion -> symbol
``"child"`` (``positions``: where in the expansion); call nonterminal -> tool ``"expresses"``;
tool -> argument ``"has_argument"``; slot nonterminal -> argument ``"fills"``.

Every algorithm here iterates to a fixed point or walks with an explicit stack: a deeply
recursive grammar never raises RecursionError.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import networkx as nx

from .slots import SlotKind, TypedName, parse_typed_name

__all__ = [
    "Expansion",
    "RuleTable",
    "count_derivations",
    "derivation_graph",
    "min_depths",
    "productive_symbols",
    "reachable_symbols",
]


@dataclass(frozen=True)
class Expansion:
    """One compiled alternative: ``origin -> children`` (terminals are upper case)."""

    index: int
    origin: str
    children: tuple[str, ...]
    alias: str | None
    order: int
    inline_single: bool  # the rule was written ``?origin``

    @property
    def node_id(self) -> str:
        return f"{self.origin}#{self.order}"

    @property
    def label(self) -> str:
        body = " ".join(self.children) or "<empty>"
        return f"{self.origin}: {body}" + (f" -> {self.alias}" if self.alias else "")


def is_terminal(symbol: str) -> bool:
    """Lark's convention: terminal names are upper case."""
    return symbol.lstrip("_").isupper() or symbol.lstrip("_")[:1].isupper()


@dataclass
class RuleTable:
    """The compiled grammar as plain tables: expansions by origin, terminals, typing."""

    expansions: list[Expansion]
    terminals: dict[str, str | None]  # name -> literal text (None for a regular expression)
    patterns: dict[str, str]  # name -> regular expression source
    start: str = "start"
    by_origin: dict[str, list[Expansion]] = field(default_factory=dict)
    typed: dict[str, TypedName] = field(default_factory=dict)

    def __post_init__(self) -> None:
        by_origin: dict[str, list[Expansion]] = defaultdict(list)
        for exp in self.expansions:
            by_origin[exp.origin].append(exp)
        self.by_origin = dict(by_origin)
        for name in list(self.by_origin) + [e.alias for e in self.expansions if e.alias]:
            typed = parse_typed_name(name)
            if typed is not None:
                self.typed[name] = typed

    @property
    def nonterminals(self) -> list[str]:
        return list(self.by_origin)

    def node_name(self, exp: Expansion) -> str:
        """The name the parse tree gives a node built by ``exp`` (its alias wins)."""
        return exp.alias or exp.origin

    def typed_of(self, exp: Expansion) -> TypedName | None:
        """The typing of the tree node ``exp`` builds."""
        return self.typed.get(self.node_name(exp))


def productive_symbols(table: RuleTable) -> set[str]:
    """Nonterminals with at least one finite derivation (plus every terminal)."""
    productive: set[str] = set(table.terminals)
    changed = True
    while changed:
        changed = False
        for exp in table.expansions:
            if exp.origin not in productive and all(c in productive for c in exp.children):
                productive.add(exp.origin)
                changed = True
    return productive


def reachable_symbols(table: RuleTable, start: str | None = None) -> set[str]:
    """Symbols reachable from ``start`` (default: the table's start symbol)."""
    root = start or table.start
    seen = {root}
    stack = [root]
    while stack:
        symbol = stack.pop()
        for exp in table.by_origin.get(symbol, ()):
            for child in exp.children:
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
    return seen


def min_depths(table: RuleTable) -> tuple[dict[str, int], dict[int, int]]:
    """Minimum derivation height of every symbol and of every expansion.

    Terminals have height 0; an expansion is one more than its tallest child. Unproductive
    symbols are absent. Samplers use these heights to stop recursion within a budget.
    """
    depth: dict[str, int] = {t: 0 for t in table.terminals}
    exp_depth: dict[int, int] = {}
    changed = True
    while changed:
        changed = False
        for exp in table.expansions:
            if all(c in depth for c in exp.children):
                d = 1 + max((depth[c] for c in exp.children), default=0)
                if exp_depth.get(exp.index, 1 << 30) > d:
                    exp_depth[exp.index] = d
                if depth.get(exp.origin, 1 << 30) > d:
                    depth[exp.origin] = d
                    changed = True
    return depth, exp_depth


def _cyclic_symbols(table: RuleTable, symbols: set[str]) -> set[str]:
    graph = nx.DiGraph()
    for exp in table.expansions:
        if exp.origin in symbols:
            for child in exp.children:
                if child in symbols and child in table.by_origin:
                    graph.add_edge(exp.origin, child)
    cyclic: set[str] = set()
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1 or any(graph.has_edge(n, n) for n in component):
            cyclic |= component
    return cyclic


def count_derivations(
    table: RuleTable, symbols: Iterable[str] | None = None, *, depth_bound: int = 12
) -> tuple[dict[str, int], bool]:
    """Count the derivation trees of each symbol; regular-expression terminals count once.

    Returns ``(counts, infinite)``. When the reachable grammar is acyclic the counts are exact
    (every derivation is shorter than the number of nonterminals); otherwise they count the
    derivations of height at most ``depth_bound`` and ``infinite`` is True.
    """
    reachable = reachable_symbols(table)
    productive = productive_symbols(table)
    live = reachable & productive
    infinite = bool(_cyclic_symbols(table, live))

    def total(origin: str, counts: dict[str, int]) -> int:
        result = 0
        for exp in table.by_origin[origin]:
            product = 1
            for child in exp.children:
                product *= counts.get(child, 0)
                if not product:
                    break
            result += product
        return result

    current: dict[str, int] = {t: 1 for t in table.terminals}
    if not infinite:
        # one pass in dependency order gives the exact counts
        deps = nx.DiGraph()
        deps.add_nodes_from(table.by_origin)
        for exp in table.expansions:
            for child in exp.children:
                if child in table.by_origin and child != exp.origin:
                    deps.add_edge(exp.origin, child)
        try:
            order = list(reversed(list(nx.topological_sort(deps))))
        except nx.NetworkXUnfeasible:  # cycles among unreachable rules: count them as zero
            order = [n for n in reversed(list(nx.topological_sort(deps.subgraph(live)))) ]
        for origin in order:
            current[origin] = total(origin, current)
    else:
        for _ in range(depth_bound):
            nxt: dict[str, int] = {t: 1 for t in table.terminals}
            for origin in table.by_origin:
                nxt[origin] = total(origin, current)
            if nxt == current:
                break
            current = nxt
    wanted = list(symbols) if symbols is not None else list(table.by_origin)
    return {s: current.get(s, 0) for s in wanted}, infinite


def typed_descendants(table: RuleTable, origin: str, *, stop: set[SlotKind]) -> Iterator[tuple[str, TypedName]]:
    """Typed tree nodes that can appear below a node of ``origin``, not looking inside ``stop`` kinds.

    A node is reported by the name its tree node gets (an alias, else the rule name); each name
    is reported once.
    """
    seen_exps: set[int] = set()
    reported: set[str] = set()
    stack = [exp for exp in table.by_origin.get(origin, ())]
    while stack:
        exp = stack.pop()
        if exp.index in seen_exps:
            continue
        seen_exps.add(exp.index)
        for child in exp.children:
            for child_exp in table.by_origin.get(child, ()):
                name = table.node_name(child_exp)
                typed = table.typed.get(name)
                if typed is not None:
                    if name not in reported:
                        reported.add(name)
                        yield name, typed
                    if typed.kind in stop:
                        continue
                stack.append(child_exp)


def derivation_graph(table: RuleTable, tools: Iterable[tuple[str, Iterable[str]]] = ()) -> nx.DiGraph:
    """Build the derivation graph (see the module docstring for nodes and edges).

    Parameters
    ----------
    table
        The compiled grammar.
    tools
        ``(tool, argument names)`` pairs from the schemas, so that tools and arguments become nodes.
    """
    depth, exp_depth = min_depths(table)
    graph = nx.DiGraph(start=table.start)
    for name, literal in table.terminals.items():
        graph.add_node(name, kind="terminal", literal=literal or "", pattern=table.patterns.get(name, ""))
    for origin in table.by_origin:
        typed = table.typed.get(origin)
        graph.add_node(
            origin, kind="nonterminal", typed=typed.kind.value if typed else "",
            target=typed.target if typed else "", user=not origin.startswith("__"),
            min_depth=depth.get(origin, -1),
        )
    for exp in table.expansions:
        graph.add_node(
            exp.node_id, kind="expansion", origin=exp.origin, index=exp.index, label=exp.label,
            alias=exp.alias or "", min_depth=exp_depth.get(exp.index, -1),
        )
        graph.add_edge(exp.origin, exp.node_id, kind="alternative")
        for position, child in enumerate(exp.children):
            if graph.has_edge(exp.node_id, child):
                graph.edges[exp.node_id, child]["positions"] += f",{position}"
            else:
                graph.add_edge(exp.node_id, child, kind="child", positions=str(position))
        if exp.alias and exp.alias in table.typed and exp.alias not in graph:
            typed = table.typed[exp.alias]
            graph.add_node(exp.alias, kind="nonterminal", typed=typed.kind.value, target=typed.target,
                           user=True, min_depth=exp_depth.get(exp.index, -1))
        if exp.alias and exp.alias in graph:
            graph.add_edge(exp.node_id, exp.alias, kind="builds")
    for tool, arguments in tools:
        graph.add_node(f"tool:{tool}", kind="tool", name=tool)
        for arg in arguments:
            graph.add_node(f"argument:{tool}.{arg}", kind="argument", tool=tool, name=arg)
            graph.add_edge(f"tool:{tool}", f"argument:{tool}.{arg}", kind="has_argument")
    for name, typed in table.typed.items():
        if typed.kind is SlotKind.CALL and f"tool:{typed.target}" in graph:
            graph.add_edge(name, f"tool:{typed.target}", kind="expresses")
    # slot -> argument of each tool whose call encloses it
    for name, typed in table.typed.items():
        if typed.kind is SlotKind.CALL:
            owners = [typed.target]
            below = list(typed_descendants(table, name, stop={SlotKind.CALL}))
        elif typed.kind is SlotKind.GROUP:
            below = list(typed_descendants(table, name, stop={SlotKind.CALL, SlotKind.GROUP}))
            owners = [t.target for _, t in below if t.kind is SlotKind.CALL]
        else:
            continue
        for slot, slot_typed in below:
            for tool in owners:
                node = f"argument:{tool}.{slot_typed.target}"
                if slot_typed.kind.fills_argument and node in graph:
                    graph.add_edge(slot, node, kind="fills")
    return graph


def graph_for_export(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy whose attributes are all strings, ints or booleans (GraphML and DOT accept it)."""
    def clean(data: dict) -> dict:
        out = {}
        for key, value in data.items():
            if isinstance(value, str):
                # XML forbids control characters: show them escaped, as in the grammar source
                out[key] = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
            elif isinstance(value, (int, bool)):
                out[key] = value
        return out

    out = nx.DiGraph()
    for node, data in graph.nodes(data=True):
        out.add_node(node, **clean(data))
    for a, b, data in graph.edges(data=True):
        out.add_edge(a, b, **clean(data))
    return out
