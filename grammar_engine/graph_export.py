"""Export the derivation graph: GraphML and DOT for tools, PNG for people.

The PNG shows the condensed view an author wants: which user-written rules reach which tools
and arguments (expansion nodes and Lark's helper rules are folded away).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx

from .derivation import graph_for_export
from .errors import InvalidArgument

if TYPE_CHECKING:
    from .grammar import Grammar

__all__ = ["condensed_graph", "export_graph", "to_dot"]

_COLORS = {"call": "#e4572e", "arg": "#17bebb", "const": "#17bebb", "each": "#17bebb", "ref": "#17bebb",
           "val": "#76b041", "group": "#ffc914", "reversed": "#ffc914", "": "#cccccc",
           "tool": "#2e282a", "argument": "#6c757d"}


def condensed_graph(grammar: Grammar) -> nx.DiGraph:
    """Rules -> rules they use (through any expansion and helper rule), plus tool/argument edges."""
    graph = grammar.graph
    out = nx.DiGraph()
    user = [n for n, d in graph.nodes(data=True) if d["kind"] == "nonterminal" and d.get("user")]
    for node in user:
        out.add_node(node, typed=graph.nodes[node].get("typed", ""))
    for node in user:
        stack, seen = [node], {node}
        while stack:  # walk through expansions and helper rules to the next user rule
            current = stack.pop()
            for nxt in graph.successors(current):
                kind = graph.nodes[nxt]["kind"]
                if nxt in seen:
                    continue
                seen.add(nxt)
                if kind == "nonterminal" and graph.nodes[nxt].get("user"):
                    out.add_edge(node, nxt)
                elif kind in ("expansion", "nonterminal"):
                    stack.append(nxt)
                elif kind in ("tool", "argument"):
                    out.add_node(nxt, typed=kind)
                    out.add_edge(node, nxt)
    return out


def to_dot(graph: nx.DiGraph) -> str:
    """A DOT rendering (no pydot or graphviz needed to write it)."""

    def quote(value: object) -> str:
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["digraph derivation {", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
    for node, data in graph.nodes(data=True):
        label = data.get("label") or node
        color = _COLORS.get(data.get("typed", data.get("kind", "")), "#cccccc")
        lines.append(f"  {quote(node)} [label={quote(label)}, style=filled, fillcolor={quote(color)}];")
    for a, b, data in graph.edges(data=True):
        lines.append(f"  {quote(a)} -> {quote(b)} [label={quote(data.get('kind', ''))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def export_graph(grammar: Grammar, output: str | Path, fmt: str = "graphml") -> Path:
    """Write the derivation graph as ``graphml`` or ``dot`` (full graph) or ``png`` (condensed).

    Raises
    ------
    InvalidArgument
        For an unknown format, or ``png`` without matplotlib.
    """
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "graphml":
        nx.write_graphml(graph_for_export(grammar.graph), path)
    elif fmt == "dot":
        path.write_text(to_dot(graph_for_export(grammar.graph)), encoding="utf-8")
    elif fmt == "png":
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise InvalidArgument("--format png needs matplotlib",
                                  hint="pip install 'grammar-engine[plot]'") from None
        view = condensed_graph(grammar)
        size = max(8.0, min(40.0, len(view) ** 0.5 * 2.2))
        fig, ax = plt.subplots(figsize=(size, size * 0.75))
        # columns: distance from start (rules), then argument nodes and tools at the right
        distance = nx.single_source_shortest_path_length(view, "start") if "start" in view else {}
        last = max(distance.values(), default=0) + 1
        for node in view:
            typed = view.nodes[node].get("typed", "")
            layer = last + 1 if typed == "tool" else last if typed == "argument" else distance.get(node, last - 1)
            view.nodes[node]["layer"] = layer
        pos = nx.multipartite_layout(view, subset_key="layer", align="vertical")
        colors = [_COLORS.get(view.nodes[n].get("typed", ""), "#cccccc") for n in view]
        nx.draw_networkx(view, pos, ax=ax, node_color=colors, node_size=260, font_size=7,
                         arrowsize=8, width=0.6, edge_color="#999999")
        ax.set_title(f"{grammar.domain}: rules -> tools (red: call, teal: argument slots, green: values)")
        ax.axis("off")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    else:
        raise InvalidArgument(f"unknown graph format {fmt!r}", hint="use graphml, dot or png")
    return path
