"""The chart parser holds exactly the derivations of Lark's Earley parser (dynamic lexer)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from lark import Lark, Token, Tree

import grammar_engine
from grammar_engine.chart_parser import AMBIGUOUS, UNKNOWN, ChartParser
from grammar_engine.recordings import Record, read_instructions
from grammar_engine.verification import AMBIGUOUS as LARK_AMBIGUOUS
from grammar_engine.verification import PrunedEarley

ROOT = Path(__file__).resolve().parent.parent

TOY = (ROOT / "tests" / "grammars" / "earley" / "empty_rules_and_ignores.lark").read_text()


def _canon(node: Any) -> Any:
    """A tree as nested tuples (Lark's ambiguity expansion gives tuples of children, a parse lists)."""
    if isinstance(node, Tree):
        return (str(node.data), tuple(_canon(c) for c in node.children))
    if isinstance(node, Token):
        return (node.type, str(node), node.start_pos, node.end_pos)
    return node


def _lark_answer(parser: PrunedEarley, text: str) -> Any:
    parser.lookahead = False  # Lark's own predictions, unfiltered
    result = parser.parse(text)
    if result is None or result is LARK_AMBIGUOUS:
        return result
    trees = result if isinstance(result, list) else [result]
    return sorted(repr(_canon(t)) for t in trees)


def _chart_answer(parser: PrunedEarley, chart: ChartParser, text: str) -> Any:
    found = chart.derivations(text)
    if found is None or found is UNKNOWN:
        return found
    if found is AMBIGUOUS:
        return LARK_AMBIGUOUS
    return sorted(repr(_canon(chart.tree(d, text, parser.plain_callbacks))) for d in found)


def test_same_derivations_as_lark_on_empty_rules_ignores_and_ambiguity() -> None:
    lark = Lark(TOY, parser="earley", lexer="dynamic", ambiguity="resolve", g_regex_flags=re.IGNORECASE)
    parser = PrunedEarley(lark)
    chart = ChartParser(parser)
    texts = ["sort it", "so about 7 please then sort", "SORT it, so", "sort 12 please about", "x y z", "then",
             "sort it now then", "sortie then sorted it", "sort it please about 3", "sort #note it",
             "  so 4 # trailing note", " sort it ,so   "]
    shapes = set()
    for text in texts:
        expected, got = _lark_answer(parser, text), _chart_answer(parser, chart, text)
        assert got == expected, text
        shapes.add("none" if got is None else len(got))
    assert {"none", 2} <= shapes and max(s for s in shapes if s != "none") >= 8  # no parse, and ambiguity


def test_a_unique_derivation_flattens_as_lark_records_it() -> None:
    lark = Lark(TOY, parser="earley", lexer="dynamic", ambiguity="resolve")
    parser = PrunedEarley(lark)
    chart = ChartParser(parser)
    assert parser.parse("foo 5", limit=0) is not LARK_AMBIGUOUS  # one reading: NAME, then a number
    tree, used = parser.expansions("foo 5")
    single = chart.derivations("foo 5")
    assert isinstance(single, list) and len(single) == 1
    rules, types, starts = chart.flatten(single[0])
    assert rules == used and types == ("NAME", "NUMBER") and starts == (0, 4)
    assert repr(_canon(chart.tree(single[0], "foo 5", parser.plain_callbacks))) == repr(_canon(tree))


def test_cycles_are_too_many_derivations_and_merged_items_are_left_to_lark() -> None:
    cyclic = PrunedEarley(Lark('start: a\na: b | "x"\nb: a\n', parser="earley", lexer="dynamic"))
    assert ChartParser(cyclic).derivations("x") is AMBIGUOUS
    assert cyclic.parse("x") is LARK_AMBIGUOUS
    # "a" then a space, or "a " as one token: Lark keeps one of two equal items waiting for "b"
    merged = PrunedEarley(Lark('start: x "b"\nx: "a" | "a "\n%ignore " "\n', parser="earley", lexer="dynamic"))
    chart = ChartParser(merged)
    assert chart.derivations("a b") is UNKNOWN
    assert chart.derivations("ab") not in (None, UNKNOWN)
    # it does not take texts of several lines (tokens carry line numbers)
    assert chart.derivations("a\nb") is UNKNOWN


@pytest.mark.parametrize("domain", ["example", "chem", "singlecell"])
def test_same_derivations_as_lark_on_shipped_domains(domain: str) -> None:
    grammar = grammar_engine.load(ROOT / "grammars" / domain)
    parser = PrunedEarley(grammar._lark)
    chart = ChartParser(parser)
    assert chart.supported
    texts = [item.instruction for item in read_instructions(grammar.recorded_path) if isinstance(item, Record)][:20]
    texts += [s.instruction for s in grammar.sample(20, strategy="uniform", seed=7, verify="off")]
    texts += [s.instruction for s in grammar.sample(20, strategy="weighted", seed=7, verify="off")]
    rng = random.Random(3)
    broken = []
    for text in texts[:20]:
        words = text.split()
        if len(words) > 2:
            del words[rng.randrange(len(words))]
            broken.append(" ".join(words))
    seen = {"none": 0, "one": 0, "several": 0}
    for text in texts + broken:
        norm = grammar_engine.grammar.normalize_instruction(text)
        expected, got = _lark_answer(parser, norm), _chart_answer(parser, chart, norm)
        assert got is not UNKNOWN, norm
        assert got == expected, norm
        seen["none" if got is None else "one" if got is not LARK_AMBIGUOUS and len(got) == 1 else "several"] += 1
    assert seen["one"] >= 15 and seen["none"] >= 1
    if domain != "example":
        assert seen["several"] >= 1  # ambiguous texts were compared too


@pytest.mark.parametrize("domain", ["chem", "singlecell"])
def test_parse_all_reads_the_same_calls_from_the_chart_as_from_lark(domain: str, monkeypatch: pytest.MonkeyPatch) -> None:
    grammar = grammar_engine.load(ROOT / "grammars" / domain)
    texts = [item.instruction for item in read_instructions(grammar.recorded_path) if isinstance(item, Record)][:25]
    texts += [s.instruction for s in grammar.sample(15, strategy="uniform", seed=9, verify="off")]
    texts += ["umap zebra then", "plot plot plot"]
    by_chart = [sorted(repr(d.calls) for d in grammar.parse_all(t, limit=8)) for t in texts]
    monkeypatch.setattr(grammar, "_chart_parses", lambda norm, limit: None)
    by_lark = [sorted(repr(d.calls) for d in grammar.parse_all(t, limit=8)) for t in texts]
    for text, a, b in zip(texts, by_chart, by_lark):
        assert a == b, text  # past the limit the chart leaves the text to Lark
    assert sum(len(a) > 1 for a in by_chart) >= 1 and sum(not a for a in by_chart) >= 1
