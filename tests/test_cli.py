"""The command line, driven through main(argv) as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from grammar_engine.cli import main

EXAMPLE = str(Path(__file__).resolve().parent.parent / "grammars" / "example")


def test_parse_contract_one_output_line_per_input_line(tmp_path: Path, capsys) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"id": "a", "instruction": "normalize to 10k then log1p"}\n'
        b'{"id": "b", "instruction": "make me a sandwich"}\n'
        b"garbage\n"
        b'{"id": 4, "instruction": "plot CST3 and NKG7"}\n'
    )
    out = tmp_path / "out.jsonl"
    assert main(["parse", EXAMPLE, "--input", str(source), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", None, 4]
    assert rows[0] == {"id": "a", "calls": [{"name": "normalize", "arguments": {"target_sum": 10000}},
                                             {"name": "log1p", "arguments": {}}]}
    assert rows[1]["calls"] == [] and "unexpected" in rows[1]["error"]
    assert rows[2]["calls"] == [] and rows[2]["error"].startswith("not JSON")
    assert rows[3]["calls"] == [{"name": "plot", "arguments": {"color": ["CST3", "NKG7"]}}]
    err = capsys.readouterr().err
    assert "4 lines: 2 parsed, 0 parsed with words skipped, 1 not in the grammar, 1 unreadable" in err
    assert "line 3" in err


def test_parse_one_text(capsys) -> None:
    assert main(["parse", EXAMPLE, "--text", "pca 20 comps"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "pca", "arguments": {"n_comps": 20}}]
    assert main(["parse", EXAMPLE, "--text", "pca pca"]) == 1


def test_check_prints_diagnostics_and_summary(capsys) -> None:
    assert main(["check", EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert "tools: 7" in out and "distinct instructions" in out and "0 errors" in out
    assert main(["check", EXAMPLE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_check_of_a_broken_grammar_fails_with_location(capsys) -> None:
    bad = Path(__file__).parent / "grammars" / "bad" / "unknown_tool.lark"
    assert main(["check", str(bad)]) == 1
    assert "unknown_tool.lark:4:1: error[unknown-tool]" in capsys.readouterr().out
    syntax = Path(__file__).parent / "grammars" / "bad" / "syntax_missing_colon.lark"
    assert main(["check", str(syntax)]) == 2
    assert "syntax_missing_colon.lark:4:10" in capsys.readouterr().err


def test_decompose_reports_everything(tmp_path: Path, capsys) -> None:
    recorded = tmp_path / "recorded.jsonl"
    recorded.write_text(
        '{"id": 1, "instruction": "log1p", "calls": [{"name": "log1p", "arguments": {}}]}\n'
        '{"id": 2, "instruction": "pca 30 comps", "calls": [{"name": "pca", "arguments": {"n_comps": 40}}]}\n'
        '{"id": 3, "instruction": "integrate with harmony"}\n'
        "{broken\n"
    )
    out_dir = tmp_path / "report"
    assert main(["decompose", EXAMPLE, "--input", str(recorded), "--output", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "4 lines, 3 instructions, 2 parsed (66.7%), 1/2 match their gold calls" in printed
    data = json.loads((out_dir / "decomposition.json").read_text())
    assert [r["line"] for r in data["rejected"]] == [3, 4]
    assert data["mismatched"][0]["line"] == 2
    assert data["usage"]["call_log1p: LOG1P"] == 1
    assert "## Expansion usage" in (out_dir / "decomposition.md").read_text()
    assert len((out_dir / "calls.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("fmt", ["graphml", "dot", "png"])
def test_graph_export(tmp_path: Path, fmt: str) -> None:
    if fmt == "png":
        pytest.importorskip("matplotlib")
    out = tmp_path / f"g.{fmt}"
    assert main(["graph", EXAMPLE, "--format", fmt, "--output", str(out)]) == 0
    assert out.stat().st_size > 1000
    if fmt == "graphml":
        graph = nx.read_graphml(out)
        assert graph.nodes["tool:pca"]["kind"] == "tool"
        assert graph.has_edge("call_pca", "tool:pca")
        assert graph.has_edge("arg_n_comps", "argument:pca.n_comps")


def test_missing_input_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code = main(["parse", EXAMPLE, "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")])
    assert code == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err


def test_sample_until_covered_stops_by_itself(tmp_path: Path, capsys) -> None:
    args = ["sample", EXAMPLE, "-n", "5000", "--strategy", "coverage", "--until-covered", "--quiet"]
    assert main([*args, "--output", str(tmp_path / "c")]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert printed["covering_head"]["exhausted"]
    assert 0 < printed["counts"]["written"] <= printed["covering_head"]["samples"] < 5000
    code = main(["sample", EXAMPLE, "-n", "10", "--until-covered", "--quiet", "--output", str(tmp_path / "w")])
    assert code == 2
    assert "needs the coverage strategy" in capsys.readouterr().err


def test_sample_takes_the_session_start_and_the_casing(tmp_path: Path, capsys) -> None:
    """The manifest says what each corpus was drawn with: the learned defaults of the weighted
    sampler, the uniform baseline's own, or what the command line asked for."""
    runs = {"weighted": [], "uniform": ["--strategy", "uniform"],
            "asked": ["--session-start", "initial", "--casing", "grammar"]}
    for name, extra in runs.items():
        assert main(["sample", EXAMPLE, "-n", "20", "--quiet", "--output", str(tmp_path / name), *extra]) == 0
    options = {name: json.loads((tmp_path / name / "manifest.json").read_text())["options"] for name in runs}
    assert (options["weighted"]["session_start"], options["weighted"]["casing"]) == ("recorded", "recorded")
    assert (options["uniform"]["session_start"], options["uniform"]["casing"]) == ("initial", "grammar")
    assert (options["asked"]["session_start"], options["asked"]["casing"]) == ("initial", "grammar")
    with pytest.raises(SystemExit):
        main(["sample", EXAMPLE, "-n", "2", "--output", str(tmp_path / "x"), "--casing", "upper"])
    assert "invalid choice" in capsys.readouterr().err
