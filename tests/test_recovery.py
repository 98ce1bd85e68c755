"""Error recovery: an instruction that does not parse is read with the fewest words skipped, and says which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import grammar_engine
from grammar_engine import InstructionParseError, parse_with_recovery
from grammar_engine.cli import main
from grammar_engine.recovery import keeps_meaning

EXAMPLE = Path(__file__).resolve().parent.parent / "grammars" / "example"
TWO_CALLS = [{"name": "normalize", "arguments": {"target_sum": 10000}}, {"name": "log1p", "arguments": {}}]


@pytest.fixture(scope="module")
def grammar():
    return grammar_engine.load(EXAMPLE)


def test_a_text_that_parses_is_read_strictly(grammar):
    recovered = parse_with_recovery(grammar, "normalize to 10k then log1p")
    assert recovered.calls == TWO_CALLS and recovered.skipped == () and recovered.parses == 1


@pytest.mark.parametrize(("text", "skipped"), [
    ("normalize to 10k then log1p thanks", [("thanks", 29)]),  # the stop is the word itself
    ("normalize to 10k my friend then log1p", [("my", 18), ("friend", 21)]),  # two words in a row
])
def test_the_words_in_the_way_are_skipped_and_named(grammar, text, skipped):
    with pytest.raises(InstructionParseError):
        grammar.parse(text)
    recovered = parse_with_recovery(grammar, text)
    assert recovered.calls == TWO_CALLS
    assert [(w.word, w.column) for w in recovered.skipped] == skipped
    for word in recovered.skipped:  # columns point at the word in the normalized text
        assert text[word.column - 1:].startswith(word.word)


@pytest.mark.parametrize(("text", "word"), [
    ("normalize to 10k 20k then log1p", "20k"),  # a second number: which one was meant?
    ("normalize to 10k then not log1p", "not"),  # a negation turns the request around
    ("normalize to 10k, without log1p", "without"),
    ("normalize to 10k then MT_genes log1p", "MT_genes"),  # an identifier the user gave
    ("normalize to 10k then log1p for CD3E", "for CD3E"),
])
def test_words_that_carry_meaning_are_never_skipped(grammar, text, word):
    # without the word the text reads as TWO_CALLS, so a recovery that skipped it would answer
    assert grammar.parse(text.replace(f" {word}", "")).calls == TWO_CALLS
    with pytest.raises(InstructionParseError):
        parse_with_recovery(grammar, text)
    assert parse_with_recovery(grammar, text, skip_meaningful=True).calls == TWO_CALLS  # what it would answer


@pytest.mark.parametrize(("word", "literals", "capitals", "kept"), [
    ("1,", frozenset(), True, True), ("(3)", frozenset(), True, True), ("data/x.h5ad", frozenset(), True, True),
    ("pct_counts_mt", frozenset(), True, True), ("PPBP", frozenset(), True, True),
    ("PPBP", frozenset(), False, False),  # a text in capitals: capitals say nothing
    ("CD3E", frozenset(), False, True),  # a digit still does
    ("QC:", frozenset({"qc"}), True, False), ("LOG1P", frozenset({"log1p"}), True, False),  # the grammar's words
    ("Nothing", frozenset(), True, True), ("don\u2019t", frozenset(), True, True),
    ("Please", frozenset(), True, False), ("(Tanimoto)", frozenset(), True, False), ("thanks!", frozenset(), True, False),
])
def test_keeps_meaning(word, literals, capitals, kept):
    assert keeps_meaning(word, literals, capitals=capitals) is kept


def test_literal_and_shouted_words_may_still_be_skipped(grammar):
    recovered = parse_with_recovery(grammar, "normalize to 10k LOG1P then log1p")  # a word of the grammar
    assert recovered.calls == TWO_CALLS and [w.word for w in recovered.skipped] == ["LOG1P"]
    recovered = parse_with_recovery(grammar, "NORMALIZE TO 10K THEN LOG1P THANKS")
    assert recovered.calls == TWO_CALLS and [w.word for w in recovered.skipped] == ["THANKS"]
    with pytest.raises(InstructionParseError):  # the same word among lower-case ones may be a gene
        parse_with_recovery(grammar, "normalize to 10k then log1p THANKS")


def test_no_reading_within_the_limits_raises_the_strict_error(grammar):
    with pytest.raises(InstructionParseError) as strict:
        grammar.parse("normalize to 10k my friend then log1p")
    with pytest.raises(InstructionParseError) as info:
        parse_with_recovery(grammar, "normalize to 10k my friend then log1p", max_skips=1)
    assert (info.value.line, info.value.column) == (strict.value.line, strict.value.column)
    with pytest.raises(InstructionParseError):
        parse_with_recovery(grammar, "zzz qqq")  # skipping a third of two words is no word at all
    with pytest.raises(InstructionParseError):
        parse_with_recovery(grammar, "normalize to 10k then log1p thanks", max_parses=1)


def test_parse_command_reports_skipped_words_and_strict_turns_it_off(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "instruction": "normalize to 10k then log1p thanks"}) + "\n")
    assert main(["parse", str(EXAMPLE), "--input", str(source), "--output", str(tmp_path / "out.jsonl")]) == 0
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row == {"id": "a", "calls": TWO_CALLS, "skipped": [{"word": "thanks", "column": 29}]}
    assert "1 parsed with words skipped" in capsys.readouterr().err
    assert main(["parse", str(EXAMPLE), "--strict", "--input", str(source), "--output", str(tmp_path / "s.jsonl")]) == 0
    strict = json.loads((tmp_path / "s.jsonl").read_text())
    assert strict["calls"] == [] and "thanks" in strict["error"]
