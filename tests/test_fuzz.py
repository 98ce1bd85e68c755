"""The engine under fuzz: grammar files, tool schemas, instructions and corpora that are broken on purpose.

Every failure must be one of the project's own errors (``GrammarEngineError``) with a location, or a
reported rejection naming the line; never another exception, never a hang.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import grammar_engine
from grammar_engine import Grammar, GrammarEngineError, GrammarLoadError, InstructionParseError, ToolRegistry
from grammar_engine.decompose import decompose_file
from grammar_engine.errors import InvalidArgument
from grammar_engine.grammar import MAX_INSTRUCTION_CHARS
from grammar_engine.recordings import MAX_LINE_BYTES, Record, Rejected, read_instructions
from strategies import (
    EXAMPLE_DIR,
    big_line,
    example_text,
    example_tools,
    grammar_texts,
    instruction_inputs,
    jsonl_files,
    lark_grammars,
    mutated_grammars,
    mutated_tools,
)

#: Each example is bounded; a hang shows up as a DeadlineExceeded, not as a stuck run.
FUZZ = settings(max_examples=100, deadline=timedelta(seconds=5), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return ToolRegistry.from_dict(example_tools())


@pytest.fixture(scope="module")
def grammar():
    return grammar_engine.load(EXAMPLE_DIR)


def _assert_located(error: GrammarEngineError, file: str) -> None:
    location = getattr(error, "location", None)
    assert location is not None, f"{type(error).__name__} without a location: {error}"
    assert location.file, error
    assert str(error).strip(), "an empty message"


# -- grammar files ------------------------------------------------------------------------------------


def _load_or_report(text: str, tools: ToolRegistry) -> Grammar | None:
    try:
        grammar = Grammar.from_text(text, tools, source="fuzzed.lark")
    except GrammarEngineError as error:
        _assert_located(error, "fuzzed.lark")
        if error.location is not None and error.location.line:
            assert error.location.line <= text.count("\n") + 2
        return None
    report = grammar.check()  # checks of a grammar that loads never raise: they report
    for diagnostic in report.diagnostics:
        assert diagnostic.location.file
    return grammar


@FUZZ
@given(mutated_grammars())
def test_mutated_grammar_loads_or_reports_a_located_error(registry, text):
    _load_or_report(text, registry)


@settings(FUZZ, max_examples=60)
@given(lark_grammars())
def test_random_lark_grammar_loads_or_reports_a_located_error(registry, text):
    _load_or_report(text, registry)


@settings(FUZZ, max_examples=40)
@given(st.text(max_size=120))
def test_arbitrary_text_as_grammar(registry, text):
    _load_or_report(text, registry)


def test_declare_of_a_rule_is_a_load_error(registry):
    # Lark raises AttributeError on '%declare lowercase' (regression: found by the fuzz test above)
    with pytest.raises(GrammarLoadError, match="'%declare' names a rule") as info:
        Grammar.from_text('start: "a"\n%declare a\n', registry, source="declare.lark")
    assert (info.value.location.file, info.value.location.line) == ("declare.lark", 2)


@settings(FUZZ, max_examples=30)
@given(mutated_grammars(), st.sampled_from([b"", b"\xff\xfe\x00", "é".encode("latin-1")]))
def test_domain_folder_with_broken_files_reports_a_located_error(tmp_path_factory, text, junk):
    folder = tmp_path_factory.mktemp("domain")
    (folder / "grammar.lark").write_bytes(text.encode("utf-8", "surrogatepass") + junk)
    (folder / "tools.json").write_text(json.dumps(example_tools()), encoding="utf-8")
    try:
        grammar_engine.load(folder)
    except GrammarEngineError as error:
        _assert_located(error, str(folder))


# -- tool schemas --------------------------------------------------------------------------------------


@FUZZ
@given(mutated_tools())
def test_malformed_tools_json_is_a_located_tool_binding_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("tools")
    (folder / "grammar.lark").write_text(example_text(), encoding="utf-8")
    (folder / "tools.json").write_text(json.dumps(data), encoding="utf-8")
    try:
        grammar = grammar_engine.load(folder)
    except GrammarEngineError as error:
        _assert_located(error, "tools.json")
        return
    grammar.check()


@FUZZ
@given(mutated_tools())
def test_malformed_tool_dict_is_a_tool_binding_error(data):
    try:
        Grammar.from_text(example_text(), data, source="g.lark")
    except GrammarEngineError as error:
        _assert_located(error, "<tools>")


@settings(FUZZ, max_examples=60, phases=[Phase.generate])
@given(mutated_tools())
def test_loaded_tool_schemas_are_usable(data):
    try:
        registry = Grammar.from_text(example_text(), data, source="g.lark").tools
    except GrammarEngineError:
        return
    call = {"name": "pca", "arguments": {"n_comps": 5}}
    registry.validate_call(call)
    registry.normalize_call(call)
    registry.sequence_problems([call, call])


# -- instructions ----------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=150)
@given(instruction_inputs())
def test_parse_gives_calls_or_a_reported_rejection(grammar, text):
    started = time.perf_counter()
    try:
        decomposition = grammar.parse(text)
    except InstructionParseError as error:
        assert error.line >= 1 and error.column >= 1
        assert str(error)
    except InvalidArgument:
        assert not isinstance(text, str)
    else:
        assert isinstance(decomposition.calls, list)
        assert all(not grammar.tools.validate_call(c) for c in decomposition.calls)
    assert time.perf_counter() - started < 5


@settings(FUZZ, max_examples=100)
@given(instruction_inputs())
def test_parse_all_gives_readings_or_nothing(grammar, text):
    try:
        readings = grammar.parse_all(text, limit=4)
    except InvalidArgument:
        assert not isinstance(text, str)
        return
    assert isinstance(readings, list) and len(readings) <= 4


@pytest.mark.parametrize("size", [MAX_INSTRUCTION_CHARS + 1, 10_000_000])
def test_enormous_instruction_is_rejected_quickly_in_bounded_memory(grammar, size):
    text = "pca " * (size // 4 + 1)
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(InstructionParseError, match="limit"):
        grammar.parse(text)
    assert grammar.parse_all(text) == []
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 2
    assert peak < 6 * len(text) + (1 << 20)  # a few copies of the text at most


@pytest.mark.parametrize("text", ["", "   ", "\x00", "\ufeff", "...", "\u2028\u2029"])
def test_empty_like_instruction_is_a_rejection(grammar, text):
    with pytest.raises(InstructionParseError):
        grammar.parse(text)


@pytest.mark.parametrize("value", [b"pca", None, 5, ["pca"]])
def test_non_text_instruction_is_an_invalid_argument(grammar, value):
    with pytest.raises(InvalidArgument, match="str"):
        grammar.parse(value)
    with pytest.raises(InvalidArgument, match="str"):
        grammar.parse_all(value)


# -- corpora and recordings ------------------------------------------------------------------------------


def _lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


@settings(FUZZ, max_examples=80)
@given(jsonl_files())
def test_corrupt_jsonl_every_line_used_or_reported(tmp_path_factory, grammar, data):
    path = tmp_path_factory.mktemp("jsonl") / "recorded.jsonl"
    path.write_bytes(data)
    items = list(read_instructions(path))
    assert [item.line for item in items] == list(range(1, _lines(data) + 1))
    for item in items:
        if isinstance(item, Rejected):
            assert item.reason and str(item).startswith(f"line {item.line}")
        else:
            assert isinstance(item, Record) and isinstance(item.instruction, str)
            assert item.calls is None or all(isinstance(c, dict) and isinstance(c.get("arguments") or {}, dict)
                                             for c in item.calls)
    report = decompose_file(grammar, path)
    assert report.lines == len(items)
    assert all(r.line >= 1 for r in report.rejected)
    grammar.check([item.raw for item in items if isinstance(item, Record)])


def test_wrong_types_are_reported_with_their_line(tmp_path, grammar):
    path = tmp_path / "recorded.jsonl"
    lines = [
        b'{"id": 1, "instruction": "pca 50"}',
        b'{"id": 2, "instruction": 42}',
        b'[1, 2]',
        b'{"id": 4, "instruction": "pca", "calls": [{"name": "pca", "arguments": [1, 2]}]}',
        b'{"id": 5, "instruction": "pca", "calls": "pca"}',
        b'\xff\xfe',
        b'{"id": 7, "instruction": "pca 5',  # truncated
    ]
    path.write_bytes(b"\n".join(lines))
    items = list(read_instructions(path, require_calls=True))
    reasons = {item.line: item.reason for item in items if isinstance(item, Rejected)}
    assert set(reasons) == {2, 3, 4, 5, 6, 7}
    assert "instruction" in reasons[2] and "object" in reasons[3] and "calls" in reasons[4]
    assert "UTF-8" in reasons[6] and "JSON" in reasons[7]
    report = decompose_file(grammar, path)  # lenient: bad gold calls are ignored, not fatal
    assert report.parsed >= 1


def test_oversized_line_is_reported_not_held(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"instruction": "pca"}\n' + big_line(MAX_LINE_BYTES * 3) + b'\n{"instruction": "log1p"}\n')
    items = list(read_instructions(path))
    assert [type(i).__name__ for i in items] == ["Record", "Rejected", "Record"]
    assert "longer than" in items[1].reason and items[1].line == 2


def test_check_ignores_malformed_gold_calls(grammar):
    records = [{"instruction": "pca", "calls": [1]}, {"instruction": "pca", "calls": [{"name": "pca", "arguments": [1]}]},
               "pca", None, {"instruction": "pca 50", "calls": [{"name": "pca", "arguments": {"n_comps": 50}}]}]
    report = grammar.check(records)
    assert report.recorded_total == 3 and report.recorded_with_gold == 1 and report.recorded_correct == 1


def test_grammar_texts_strategy_draws_all_kinds():
    # the shared strategy mixes mutated files, random Lark files and arbitrary text
    from helpers_hypothesis import find_any

    find_any(grammar_texts(), lambda t: "call_" in t)
    find_any(grammar_texts(), lambda t: ":" in t and "call_" not in t)
