"""The exact verifier's pruned Earley parser: the per-position lookahead keeps every derivation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lark import Lark

import grammar_engine
from grammar_engine.recordings import Record, read_instructions
from grammar_engine.verification import AMBIGUOUS, NO_PARSE, PrunedEarley, _pattern_first_chars, _PositionPredictions

ROOT = Path(__file__).resolve().parent.parent


def _outcome(result: object) -> object:
    if result is None or result is AMBIGUOUS:
        return result
    if isinstance(result, list):
        return sorted(str(tree) for tree in result)
    return str(result)


def _both(parser: PrunedEarley, text: str) -> tuple[object, object]:
    parser.lookahead = False
    plain = _outcome(parser.parse(text))
    parser.lookahead = True
    return plain, _outcome(parser.parse(text))


@pytest.mark.parametrize(("pattern", "starts", "not_starts"), [
    ("abc", "aA", "bc"),
    ("(?:then|next)", "tTnN", "eh"),
    ("[0-9]+x", "09", "x"),
    (r"(?<![\w-])(?!foo)[A-Za-z]\w*", "aZ", "1_-"),
    (r"\d*\.\d+", "0.", "a"),
])
def test_first_characters_of_a_pattern(pattern: str, starts: str, not_starts: str) -> None:
    chars = _pattern_first_chars(pattern, 0)
    assert chars is not None
    assert set(starts) <= chars
    assert not set(not_starts) & chars
    # a pattern that can match the empty string, or begin with anything, has no first-character set
    assert _pattern_first_chars("a*", 0) is None
    assert _pattern_first_chars(".x", 0) is None
    assert _pattern_first_chars("[^a]", 0) is None


def test_lookahead_agrees_with_the_plain_parse_on_a_grammar_with_empty_rules_and_ignores() -> None:
    grammar = (ROOT / "tests" / "grammars" / "earley" / "empty_rules_and_ignores.lark").read_text()
    lark = Lark(grammar, parser="earley", lexer="dynamic", ambiguity="resolve", g_regex_flags=re.IGNORECASE)
    parser = PrunedEarley(lark)
    texts = ["sort it", "sorted  #note\n  42 now", "so about 7 please then sort", "SORT it, so", "sort 12 please about",
             "x y z", "then", "sort it now then", "  sort", "sortie then sorted it"]
    for text in texts:
        plain, ahead = _both(parser, text)
        assert plain == ahead, text
    assert any(_both(parser, t)[1] is not None for t in texts)  # some parse, so the check has teeth


@pytest.mark.parametrize("domain", ["example", "chem", "singlecell"])
def test_lookahead_agrees_with_the_plain_parse_on_shipped_domains(domain: str) -> None:
    grammar = grammar_engine.load(ROOT / "grammars" / domain)
    parser = PrunedEarley(grammar._lark)
    texts = [item.instruction for item in read_instructions(grammar.recorded_path) if isinstance(item, Record)][:25]
    texts += [s.instruction for s in grammar.sample(15, strategy="uniform", seed=5, verify="off")]
    texts += ["Ångström-scale request: naïve text with ſ and ﬁ ligatures", "ŞİNGLE ıs not ASCII"]
    parsed = 0
    for text in texts:
        # the live-rule set from the per-position masks equals the one from whole-text searches
        positions = _PositionPredictions(parser, text)
        assert parser.live_rules(text) == parser.live_rules(text, positions.anywhere()), text
        plain, ahead = _both(parser, text)
        assert plain == ahead, text
        parsed += plain is not None
    assert parsed >= 15


@pytest.mark.parametrize("domain", ["chem", "singlecell"])
def test_accepting_the_generated_derivation_decides_as_building_the_tree_does(domain: str) -> None:
    """When the forest's one derivation is the generated one, the sample is accepted without a tree;
    every decision must be the one that building the tree and reading its calls gives."""
    from grammar_engine.sampling import sample
    from grammar_engine.verification import build_verifier

    grammar = grammar_engine.load(ROOT / "grammars" / domain)
    quick, full, lark_forest = build_verifier(grammar), build_verifier(grammar), build_verifier(grammar)
    full.trust_derivations = False
    lark_forest.use_chart = False  # Lark's own forest instead of the chart parser's
    stream = sample(grammar, None, strategy="weighted", seed=11, verify="off")
    decisions = []
    for _ in range(150):
        _, built = stream._build(None)
        if built is not None:
            derivation, calls = built
            decisions.append((quick.check(derivation, calls), full.check(derivation, calls),
                              lark_forest.check(derivation, calls)))
    assert len(decisions) > 100
    assert all(a == b == c for a, b, c in decisions), [d for d in decisions if len(set(d)) > 1]
    accepted = sum(a == "" for a, _, _ in decisions)
    assert quick.counts.get("pruned_generated", 0) >= accepted // 2 > 0  # the shortcut is taken
    assert "pruned_generated" not in full.counts
    assert lark_forest.counts.get("pruned_generated", 0) == quick.counts["pruned_generated"]
    assert any(a == "ambiguous" for a, _, _ in decisions) or quick.counts.get("pruned_ambiguous", 0) > 0
    # the derivation read off the forest is the parser's: its expansions are those the tree callbacks record
    text = "normalize to 10k then log1p" if domain == "singlecell" else "logp of aspirin"
    root = quick.pruned.forest(text)
    expansions, _types, starts = quick.pruned.derivation(root)
    tree, used = quick.pruned.expansions(text)
    assert expansions == used and starts[0] == 0


@pytest.mark.parametrize("domain", ["example", "chem", "singlecell"])
def test_parse_answers_with_the_pruned_parser_exactly_as_the_full_parser(domain: str) -> None:
    """``Grammar.parse`` takes the pruned parser's tree (its one derivation, or the one Lark's
    resolution picks when nothing ties): tree, expansions and calls must be the full parser's, and
    texts it cannot settle (no parse, a tie) still get the full parser's answer or error."""
    from grammar_engine.errors import InstructionParseError
    from grammar_engine.grammar import normalize_instruction

    grammar = grammar_engine.load(ROOT / "grammars" / domain)
    texts = [item.instruction for item in read_instructions(grammar.recorded_path) if isinstance(item, Record)][:30]
    if grammar.unseen_path:
        texts += [item.instruction for item in read_instructions(grammar.unseen_path) if isinstance(item, Record)][:15]
    texts += [s.instruction for s in grammar.sample(10, strategy="uniform", seed=3)]
    pruned = parsed = resolved_ambiguous = 0
    for text in texts:
        norm = normalize_instruction(text)
        try:
            full = grammar._parse_full(norm)
        except InstructionParseError as error:
            with pytest.raises(InstructionParseError) as caught:
                grammar.parse(text)
            assert str(caught.value) == str(error)
            assert grammar.try_parse(text) is None
            continue
        fast = grammar.parse(text)
        assert str(fast.tree) == str(full.tree), text
        assert fast.expansions == full.expansions and fast.calls == full.calls, text
        quiet = grammar.try_parse(text)
        assert quiet is not None and quiet.expansions == full.expansions and quiet.calls == full.calls
        parsed += 1
        fast_path = grammar._pruned_parser.resolved_expansions(norm) is not None
        pruned += fast_path
        resolved_ambiguous += fast_path and grammar._pruned_parser.parse(norm, limit=0) is AMBIGUOUS
    assert parsed >= 20 and pruned >= parsed // 2  # most parses take the fast path, and they agree
    if domain == "singlecell":  # its uniform samples read several ways: resolution was exercised
        assert resolved_ambiguous > 0


def test_a_tie_between_derivations_is_left_to_the_full_parser() -> None:
    """Readings of different alternatives resolve by rule order, as Lark resolves them; two readings
    of one rule that differ only in how they split the text tie on Lark's sort key, and the pruned
    parser must not guess between them."""
    ordered = Lark(r"""
        start: a
        a: "x" "x" | b
        b: "x" "x"
        %ignore " "
    """, parser="earley", lexer="dynamic", ambiguity="resolve")
    parser = PrunedEarley(ordered)
    assert parser.parse("x x", limit=0) is AMBIGUOUS
    tree, used = parser.resolved_expansions("x x")
    assert str(tree) == str(ordered.parse("x x")) and len(used) == 2  # a's first alternative, then start
    assert parser.resolved_expansions("x x x") is NO_PARSE
    tied = Lark(r"""
        start: a b
        a: "x" | "x" "x"
        b: "x" | "x" "x"
        %ignore " "
    """, parser="earley", lexer="dynamic", ambiguity="resolve")
    assert PrunedEarley(tied).parse("x x x", limit=0) is AMBIGUOUS
    assert PrunedEarley(tied).resolved_expansions("x x x") is None  # (x)(x x) and (x x)(x): one rule, a tie


def test_try_parse_answers_a_text_without_a_reading_without_the_full_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """``try_parse`` is ``parse`` without the error: where the pruned parser proves there is no
    reading, the full parser (run by ``parse`` only to locate its error) is not asked."""
    from grammar_engine.errors import InstructionParseError

    grammar = grammar_engine.load(ROOT / "grammars" / "singlecell")
    broken = "normalize to 10k then then log1p please umap zebra"
    with pytest.raises(InstructionParseError):
        grammar.parse(broken)
    good = grammar.parse("normalize to 10k then log1p")

    def no_full_parse(norm: str) -> None:
        raise AssertionError(f"full parser asked for {norm!r}")

    monkeypatch.setattr(grammar, "_parse_full", no_full_parse)
    assert grammar.try_parse(broken) is None
    assert grammar.try_parse("") is None and grammar.try_parse("x" * 5000) is None
    found = grammar.try_parse("normalize to 10k then log1p")
    assert found is not None and found.calls == good.calls and found.expansions == good.expansions
