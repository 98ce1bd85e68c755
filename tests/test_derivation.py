"""The derivation graph and its queries: depths, counting, reachability, no recursion."""

from __future__ import annotations

import itertools

import pytest

import grammar_engine
from grammar_engine.derivation import count_derivations, min_depths, productive_symbols

TOOLS = {"tools": [{"name": "a"}, {"name": "b", "parameters": {"type": "object", "properties": {
    "n": {"type": "integer"}}}}]}


def _grammar(text: str) -> grammar_engine.Grammar:
    return grammar_engine.Grammar.from_text(text + "\n%import common.WS\n%ignore WS\n", TOOLS)


def test_exact_count_matches_enumeration_for_a_finite_grammar() -> None:
    grammar = _grammar(
        'start: call_a | call_b | call_a "then" call_b\n'
        'call_a: ("run" | "do") "a" ("now" | "please")?\n'
        'call_b: "b" arg_n?\n'
        'arg_n: "one" | "two" | "three"\n'
    )
    counts, infinite = count_derivations(grammar.table, ["start", "call_a", "call_b"])
    assert not infinite
    # enumerate the language by brute force and compare
    a_forms = [f"{v} a{s}" for v, s in itertools.product(["run", "do"], ["", " now", " please"])]
    b_forms = ["b", "b one", "b two", "b three"]
    language = set(a_forms) | set(b_forms) | {f"{a} then {b}" for a in a_forms for b in b_forms}
    assert counts == {"call_a": 6, "call_b": 4, "start": len(language)}
    for text in language:
        grammar.parse(text)


def test_infinite_language_is_counted_up_to_the_depth_bound() -> None:
    grammar = _grammar('start: call_a ("and" call_a)*\ncall_a: "a"\n')
    shallow, infinite = count_derivations(grammar.table, ["start"], depth_bound=4)
    deeper, _ = count_derivations(grammar.table, ["start"], depth_bound=8)
    assert infinite and 0 < shallow["start"] < deeper["start"]
    report = grammar.check()
    assert report.language_infinite and "infinite" in report.summary()


def test_min_depths_and_productivity() -> None:
    grammar = _grammar('start: call_a | wrap\nwrap: "(" wrap ")" | call_a\ncall_a: "a"\n')
    depth, _ = min_depths(grammar.table)
    assert depth["call_a"] == 1 and depth["wrap"] == 2 and depth["start"] == 2
    assert {"start", "wrap", "call_a"} <= productive_symbols(grammar.table)


def test_a_deeply_nested_rule_table_never_raises_recursion_error() -> None:
    # a chain of 5,000 rules (deeper than Python's recursion limit): every query iterates
    from grammar_engine.derivation import Expansion, RuleTable, reachable_symbols

    expansions = [Expansion(0, "start", ("r0",), None, 0, False)]
    for i in range(5000):
        expansions.append(Expansion(len(expansions), f"r{i}", (f"r{i + 1}", "X"), None, 0, False))
        expansions.append(Expansion(len(expansions), f"r{i}", ("Y",), None, 1, False))
    expansions.append(Expansion(len(expansions), "r5000", ("Y",), None, 0, False))
    table = RuleTable(expansions, {"X": "x", "Y": "y"}, {"X": "x", "Y": "y"})
    depth, _ = min_depths(table)
    assert depth["r0"] == 1 and depth["start"] == 2
    counts, infinite = count_derivations(table, ["r4990", "start"])
    assert counts["r4990"] == 11 and counts["start"] == 5001 and not infinite
    assert "r5000" in reachable_symbols(table) and "r5000" in productive_symbols(table)


def test_graph_nodes_and_edges(example_grammar) -> None:
    graph = example_grammar.graph
    assert graph.nodes["call_pca"]["typed"] == "call"
    assert graph.nodes["tool:pca"]["kind"] == "tool"
    alternatives = [n for n in graph.successors("call_pca") if graph.nodes[n]["kind"] == "expansion"]
    assert len(alternatives) == len(example_grammar.table.by_origin["call_pca"])
    assert graph.has_edge("each_molecule", "argument:logp.molecule")
    assert graph.has_edge("each_molecule", "argument:molecular_weight.molecule")
    assert all(graph.nodes[n]["min_depth"] > 0 for n in alternatives)


@pytest.mark.parametrize("name", ["call_pca", "arg_n_comps"])
def test_graph_is_built_once(example_grammar, name: str) -> None:
    assert example_grammar.graph is example_grammar.graph
    assert name in example_grammar.graph
