"""Every static check has a broken-grammar fixture in tests/grammars/bad/ whose first lines say
what must be reported: ``// expect: SEVERITY CODE [FILE:]LINE:COLUMN MESSAGE-REGEX``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import grammar_engine
from grammar_engine import GrammarEngineError, GrammarLoadError

BAD = Path(__file__).parent / "grammars" / "bad"
CASES = sorted(BAD.glob("*.lark"))
EXPECT_RE = re.compile(r"// expect: (error|warning) ([\w-]+) (?:([\w.]+):)?(\d+):(\d+) (.+)")


def _expectation(path: Path) -> re.Match[str]:
    match = EXPECT_RE.search(path.read_text())
    assert match, f"{path.name} has no '// expect:' line"
    return match


def test_the_catalogue_covers_every_check() -> None:
    codes = {_expectation(p)[2] for p in CASES}
    assert codes >= {
        "load", "unknown-tool", "unknown-argument", "required-unfilled", "bad-value", "non-productive",
        "unreachable", "inlined-typed-rule", "unknown-value-kind", "slot-outside-call", "unreached-tool",
    }


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_grammar_is_reported_with_its_location(path: Path) -> None:
    severity, code, file, line, column, pattern = _expectation(path).groups()
    expected_file = file or path.name
    if code == "load":
        with pytest.raises(GrammarLoadError) as info:
            grammar_engine.load(path)
        error = info.value
        assert error.location is not None
        assert Path(error.location.file).name == expected_file
        assert (error.location.line, error.location.column) == (int(line), int(column))
        assert re.search(pattern, str(error), re.S), str(error)
        assert "hint:" in str(error) or code == "load"
        return
    report = grammar_engine.load(path).check()
    found = [d for d in report.diagnostics if d.code == code and d.severity == severity
             and re.search(pattern, f"{d.message}\n{d.hint}", re.S)]
    assert found, f"no {code} reported; got {[str(d) for d in report.diagnostics]}"
    diagnostic = found[0]
    assert Path(diagnostic.location.file).name == expected_file
    assert (diagnostic.location.line, diagnostic.location.column) == (int(line), int(column))
    assert diagnostic.hint
    assert report.ok is (severity == "warning")


def test_the_example_domain_is_clean(example_grammar) -> None:
    report = example_grammar.check()
    assert report.errors == []
    assert report.warnings == []
    assert set(report.per_tool) == {t.name for t in example_grammar.tools}


def test_tools_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "grammar.lark").write_text('start: call_log1p\ncall_log1p: "log1p"\n')
    (tmp_path / "tools.json").write_text('{"tools": [\n  {"name": "log1p",}\n]}\n')
    with pytest.raises(GrammarEngineError) as info:
        grammar_engine.load(tmp_path)
    assert info.value.location.line == 2
    assert "tools.json" in str(info.value) and "hint:" in str(info.value)


def test_schema_problems_are_tool_binding_errors(tmp_path: Path) -> None:
    (tmp_path / "grammar.lark").write_text('start: call_log1p\ncall_log1p: "log1p"\n')
    (tmp_path / "tools.json").write_text(
        '{"tools": [{"name": "log1p", "parameters": {"type": "object", "properties": {"x": {}}}}]}'
    )
    with pytest.raises(grammar_engine.ToolBindingError, match=r"log1p\.x needs a 'type'"):
        grammar_engine.load(tmp_path)


def test_required_argument_filled_by_the_group_is_accepted(example_grammar) -> None:
    # call_molecular_weight alone never names a molecule; every group_properties does
    report = example_grammar.check()
    assert not [d for d in report.errors if d.code == "required-unfilled"]


def test_loading_never_executes_code_from_the_grammar(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    (tmp_path / "grammar.lark").write_text(
        f'// {payload}\nstart: call_log1p\ncall_log1p: "log1p" | "{payload}"\n%import common.WS\n%ignore WS\n'
    )
    (tmp_path / "tools.json").write_text('{"tools": [{"name": "log1p"}]}')
    grammar = grammar_engine.load(tmp_path)
    grammar.check()
    assert grammar.parse("log1p").calls == [{"name": "log1p", "arguments": {}}]
    assert not marker.exists()
