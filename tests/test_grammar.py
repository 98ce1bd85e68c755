"""Decomposition of instructions on the example domain: every slot kind, errors, determinism."""

from __future__ import annotations

import pytest

import grammar_engine
from grammar_engine import InstructionParseError

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CAFFEINE = "Cn1c(=O)c2c(ncn2C)n(C)c1=O"


@pytest.mark.parametrize(
    "text, calls",
    [
        ("log1p", [{"name": "log1p", "arguments": {}}]),
        ("  LOG   transform the data. ", [{"name": "log1p", "arguments": {}}]),
        ("normalize to 10k then log1p", [{"name": "normalize", "arguments": {"target_sum": 10000}},
                                         {"name": "log1p", "arguments": {}}]),
        ("normalize per cell to ten thousand", [{"name": "normalize", "arguments": {"target_sum": 10000}}]),
        ("cpm normalize", [{"name": "normalize", "arguments": {"target_sum": 1000000}}]),
        ("run pca with fifty components", [{"name": "pca", "arguments": {"n_comps": 50}}]),
        ("compute 30 principal components", [{"name": "pca", "arguments": {"n_comps": 30}}]),
        # default values are dropped: leiden and resolution 1.0 are the defaults of cluster
        ("leiden clustering at resolution 1.0", [{"name": "cluster", "arguments": {}}]),
        ("louvain clustering at resolution 0.5",
         [{"name": "cluster", "arguments": {"method": "louvain", "resolution": 0.5}}]),
        ("plot CST3, NKG7 and leiden", [{"name": "plot", "arguments": {"color": ["CST3", "NKG7", "leiden"]}}]),
        # group + each: one phrase, four calls, tool-major order
        ("molecular weight and logp of aspirin and caffeine", [
            {"name": "molecular_weight", "arguments": {"molecule": ASPIRIN}},
            {"name": "molecular_weight", "arguments": {"molecule": CAFFEINE}},
            {"name": "logp", "arguments": {"molecule": ASPIRIN}},
            {"name": "logp", "arguments": {"molecule": CAFFEINE}}]),
        # ref: "it" is the previous call's molecule
        ("mw of aspirin then logp of it", [{"name": "molecular_weight", "arguments": {"molecule": ASPIRIN}},
                                           {"name": "logp", "arguments": {"molecule": ASPIRIN}}]),
        # reversed: "before X, Y" runs Y first
        ("before pca, log transform the data", [{"name": "log1p", "arguments": {}},
                                                {"name": "pca", "arguments": {}}]),
    ],
)
def test_parse_to_calls(example_grammar, text: str, calls: list) -> None:
    assert example_grammar.parse(text).calls == calls


def test_values_keep_their_case_while_literals_ignore_it(example_grammar) -> None:
    assert example_grammar.parse("PLOT Cst3").calls == [{"name": "plot", "arguments": {"color": ["Cst3"]}}]


def test_decomposition_records_the_expansions_used(example_grammar) -> None:
    decomposition = example_grammar.parse("pca 50 comps")
    labels = [example_grammar.expansion(i).label for i in decomposition.expansions]
    assert "call_pca: PCA arg_n_comps" in labels
    assert any(label.startswith("arg_n_comps: val_int") for label in labels)
    assert decomposition.tree.data == "start"


def test_unparseable_text_says_where_and_what_was_expected(example_grammar) -> None:
    with pytest.raises(InstructionParseError) as info:
        example_grammar.parse("normalize to banana")
    error = info.value
    assert (error.line, error.column) == (1, 14)
    assert '"cpm"' in error.expected and "DIGITS" in error.expected
    assert "^" in error.context
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("text, message", [("", "empty"), ("   ", "empty"), ("x" * 5000, "limit")])
def test_degenerate_input_is_rejected(example_grammar, text: str, message: str) -> None:
    with pytest.raises(InstructionParseError, match=message):
        example_grammar.parse(text)


def test_out_of_range_value_is_a_parse_error_not_a_wrong_call(example_grammar) -> None:
    with pytest.raises(InstructionParseError, match="must be <= 100"):
        example_grammar.parse("pca 500 comps")


def test_parse_rejects_non_strings(example_grammar) -> None:
    with pytest.raises(grammar_engine.InvalidArgument):
        example_grammar.parse(None)  # type: ignore[arg-type]


def test_ambiguity_is_found_and_the_choice_is_deterministic(tmp_path) -> None:
    (tmp_path / "grammar.lark").write_text(
        'start: call_pca | call_pca_twice\n'
        'call_pca: "pca" arg_n_comps?\n'
        'call_pca_twice: "pca" const_n_comps__20\n'
        'const_n_comps__20: "20"?\n'
        'arg_n_comps: INT\n%import common.INT\n%import common.WS\n%ignore WS\n'.replace("call_pca_twice", "call_pca__twice")
    )
    (tmp_path / "tools.json").write_text(
        '{"tools": [{"name": "pca", "parameters": {"type": "object", "properties": {"n_comps": {"type": "integer"}}}}]}'
    )
    grammar = grammar_engine.load(tmp_path)
    parses = {repr(d.calls) for d in grammar.parse_all("pca")}
    assert len(parses) == 2  # {} and {"n_comps": 20}
    first = grammar.parse("pca").calls
    assert all(grammar_engine.load(tmp_path).parse("pca").calls == first for _ in range(3))
    assert grammar.check().ambiguous == [] and grammar.check([{"instruction": "pca"}]).ambiguous == ["pca"]


def test_lalr_and_earley_agree_where_lalr_is_claimed(tmp_path) -> None:
    (tmp_path / "grammar.lark").write_text(
        '//! parser: lalr\nstart: step ("then" step)*\n?step: call_pca | call_log1p\n'
        'call_pca: "pca" arg_n_comps?\ncall_log1p: "log1p"\narg_n_comps: INT "comps"?\n'
        '%import common.INT\n%import common.WS\n%ignore WS\n'
    )
    (tmp_path / "tools.json").write_text(
        '{"tools": [{"name": "pca", "parameters": {"type": "object", "properties": {"n_comps": {"type": "integer"}}}},'
        ' {"name": "log1p"}]}'
    )
    lalr = grammar_engine.load(tmp_path)
    earley = grammar_engine.load(tmp_path, parser="earley")
    assert lalr.parser_kind == "lalr" and earley.parser_kind == "earley"
    for text in ["pca 50 comps then log1p", "log1p then pca", "PCA 3"]:
        assert lalr.parse(text).calls == earley.parse(text).calls
        assert lalr.parse(text).expansions  # LALR parses record their expansions too


def test_load_errors_name_the_path(tmp_path) -> None:
    with pytest.raises(grammar_engine.GrammarLoadError, match="no such grammar"):
        grammar_engine.load(tmp_path / "missing")
    with pytest.raises(grammar_engine.GrammarLoadError, match="expected one grammar file"):
        grammar_engine.load(tmp_path)
    (tmp_path / "grammar.lark").write_bytes(b"start: \"\xff\"\n")
    with pytest.raises(grammar_engine.GrammarLoadError, match="not UTF-8"):
        grammar_engine.load(tmp_path)
