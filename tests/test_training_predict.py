"""predict: one output line per input line, errors instead of crashes, parser first, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from grammar_engine.errors import InstructionParseError  # noqa: E402
from training.config import DecodeConfig  # noqa: E402
from training.predict import Predictor, predict_file, read_instructions  # noqa: E402
from training_fixtures import toy_records, toy_registry, trained_toy_model, write_toy_domain  # noqa: E402

pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return trained_toy_model(tmp_path_factory)


@pytest.fixture()
def input_file(tmp_path):
    lines = [json.dumps({"id": r["id"], "instruction": r["instruction"]}) for r in toy_records(10, 0, seed=9)["train"]]
    lines[3:3] = ["this is not json", json.dumps({"id": "no-text"}), json.dumps(["a", "list"]), "",
                  json.dumps({"id": "empty", "instruction": "  "})]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


BAD_IDS = ["line-4", "no-text", "line-6", "line-7", "empty"]


def test_read_instructions_reports_bad_lines(input_file):
    rows = read_instructions(input_file)
    assert len(rows) == 15
    bad = [(i, e) for i, _, e in rows if e]
    assert [i for i, _ in bad] == BAD_IDS
    assert "not JSON" in bad[0][1] and "no 'instruction'" in bad[1][1] and "empty line" in bad[3][1]


def test_predict_file_writes_one_record_per_line_and_never_crashes(model_dir, input_file, tmp_path):
    predictor = Predictor.from_pretrained(model_dir, decode=DecodeConfig(batch_size=4))
    summary = predict_file(predictor, input_file, tmp_path / "out.jsonl")
    records = _read(tmp_path / "out.jsonl")
    assert [r["id"] for r in records] == [i for i, _, _ in read_instructions(input_file)]
    assert summary.n == 15 and summary.bad_input == 5
    for record in records:
        assert isinstance(record["calls"], list)
        if record.get("error"):
            assert record["calls"] == []
    assert sum(1 for r in records if not r.get("error")) >= 1  # a briefly trained model gets some right
    bad = {r["id"]: r for r in records}["line-4"]
    assert bad["calls"] == [] and bad["error"].startswith("bad input line 4")


def test_batched_left_padded_generation_matches_one_by_one(model_dir):
    texts = [r["instruction"] for r in toy_records(6, 0, seed=4)["train"]]
    batched = Predictor.from_pretrained(model_dir, decode=DecodeConfig(batch_size=6)).predict(texts)
    single = Predictor.from_pretrained(model_dir, decode=DecodeConfig(batch_size=1)).predict(texts)
    assert batched == single


def test_a_failing_batch_degrades_to_per_item_errors(model_dir):
    predictor = Predictor.from_pretrained(model_dir, decode=DecodeConfig(batch_size=4))
    texts = ["log1p the data", "word " * 600, "compute a pca"]  # the middle one exceeds the positions
    results = predictor.predict(texts)
    assert len(results) == 3
    assert results[1]["calls"] == [] and "generation failed" in results[1]["error"]
    assert "generation failed" not in results[0].get("error", "") + results[2].get("error", "")


def test_the_model_is_asked_in_the_corpus_form_of_an_instruction(model_dir):
    """Corpus instructions are normalized (single spaces, no closing punctuation): so are prompts."""
    predictor = Predictor.from_pretrained(model_dir, decode=DecodeConfig(batch_size=2))
    text = toy_records(1, 0, seed=5)["train"][0]["instruction"]
    assert predictor._prompt("  " + text.replace(" ", " \n ") + " .") == predictor._prompt(text)
    assert predictor.predict([text + "?!", text]) == predictor.predict([text, text])


class StubParser:
    def parse(self, text):
        if not text.startswith("log"):
            raise InstructionParseError("no rule matches", text=text)
        return type("Parsed", (), {"calls": [{"name": "log1p", "arguments": {}}]})()


def test_with_parser_asks_the_parser_first(model_dir):
    predictor = Predictor.from_pretrained(model_dir)
    predictor.parser = StubParser()
    results = predictor.predict(["log transform please", "run pca with 12 components"])
    assert results[0] == {"calls": [{"name": "log1p", "arguments": {}}], "source": "parser"}
    assert results[1]["source"] == "model"


def test_with_the_real_grammar_parser(model_dir):
    import grammar_engine

    if getattr(grammar_engine, "load", None) is None or not (ROOT / "grammars" / "example").is_dir():
        pytest.skip("grammar_engine.load or grammars/example not available yet")
    grammar = grammar_engine.load(ROOT / "grammars" / "example")
    text = "normalize to 10k then log1p"
    expected = grammar.parse(text).calls
    predictor = Predictor.from_pretrained(model_dir, parser_domain=ROOT / "grammars" / "example")
    results = predictor.predict([text, "zzz qqq unparseable", text + " thanks"])
    assert results[0] == {"calls": expected, "source": "parser"}
    assert results[1]["source"] == "model"
    # a text that parses once a word is skipped gets the grammar's reading, with that word named
    assert results[2] == {"calls": expected, "source": "parser-recovered",
                          "skipped": [{"word": "thanks", "column": len(text) + 2}]}
    predictor.recover = False
    assert predictor.predict([text + " thanks"])[0]["source"] == "model"


def test_cli_predict_constrained(model_dir, input_file, tmp_path, capsys):
    from training.cli import main

    domain = write_toy_domain(tmp_path / "toy")
    out = tmp_path / "out.jsonl"
    code = main(["predict", "--model", str(model_dir), "--input", str(input_file), "--output", str(out),
                 "--constrained", str(domain), "--batch-size", "8"])
    assert code == 0
    printed = capsys.readouterr()
    assert "constrained decoding" in printed.out and "bad input line 4" in printed.err
    registry = toy_registry()
    records = _read(out)
    assert len(records) == 15
    for record in records:
        if record["id"] in BAD_IDS:
            assert record["calls"] == [] and record["error"]
        else:
            assert "error" not in record and record["calls"]
            assert all(not registry.validate_call(c) for c in record["calls"])
    assert main(["predict", "--model", str(model_dir), "--input", str(tmp_path / "missing.jsonl"),
                 "--output", str(out)]) == 1
