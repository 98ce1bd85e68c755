"""Scoring: exact match, call-level P/R/F1 per tool, and the contract's value comparisons."""

from __future__ import annotations

import json

import pytest

from grammar_engine.errors import InstructionParseError
from training.evaluation import (
    FAILURE_KINDS,
    classify_failure,
    comparable_calls,
    compare_systems,
    evaluate_predictions,
    format_failures,
    format_table,
    parser_predictions,
    read_gold,
    read_predictions,
)
from training_fixtures import toy_registry, write_toy_domain

pytestmark = pytest.mark.train

REG = toy_registry()


def same(a, b):
    return comparable_calls(a, REG) == comparable_calls(b, REG)


def call(name, **arguments):
    return {"name": name, "arguments": arguments}


@pytest.mark.parametrize(("gold", "predicted"), [
    ([call("neighbors")], [call("neighbors", n_neighbors=15)]),  # default spelled out
    ([call("neighbors", n_neighbors=15.0)], [call("neighbors")]),
    ([call("normalize_total", target_sum=10000)], [call("normalize_total", target_sum=10000.0)]),
    ([call("pca")], [call("pca", n_comps=None)]),  # null dropped
    ([call("plot_umap", color=["CST3", "NKG7"])], [call("plot_umap", color=["NKG7", "CST3"])]),  # multiset
    ([call("tanimoto_similarity", molecule_a="CCO", molecule_b="c1ccccc1")],
     [call("tanimoto_similarity", molecule_a="c1ccccc1", molecule_b="CCO", fingerprint="morgan")]),
    ([call("tanimoto_similarity", molecule_a="CCO", molecule_b="CCN", fingerprint="maccs")],
     [call("tanimoto_similarity", molecule_a="CCO", molecule_b="CCN", fingerprint="maccs", radius=3)]),
    ([call("ring_count", molecule="CCO")], [call("ring_count", molecule="CCO", aromatic_only=False)]),
])
def test_equal_under_the_contract(gold, predicted):
    assert same(gold, predicted)


@pytest.mark.parametrize(("gold", "predicted"), [
    ([call("normalize_total", target_sum=10000)], [call("normalize_total", target_sum="10000")]),  # wrong type
    ([call("ring_count", molecule="CCO", aromatic_only=True)], [call("ring_count", molecule="CCO", aromatic_only=1)]),
    ([call("plot_umap", color=["CST3", "CST3"])], [call("plot_umap", color=["CST3"])]),  # multiset, not set
    ([call("tanimoto_similarity", molecule_a="CCO", molecule_b="CCN", radius=3)],
     [call("tanimoto_similarity", molecule_a="CCO", molecule_b="CCN")]),  # radius counts for morgan
    ([call("highly_variable_genes", flavor="seurat_v3")], [call("highly_variable_genes", flavor="Seurat_v3")]),
    ([call("pca"), call("log1p")], [call("log1p"), call("pca")]),  # order matters for exact match
])
def test_different_under_the_contract(gold, predicted):
    assert not same(gold, predicted)


def test_smiles_variants_compare_canonically_when_rdkit_is_installed():
    pytest.importorskip("rdkit")
    assert same([call("molecular_weight", molecule="OCC")], [call("molecular_weight", molecule="CCO")])
    assert same([call("run_reaction", reaction="esterification", reactants=["OCC", "CC(=O)O"])],
                [call("run_reaction", reaction="esterification", reactants=["CC(O)=O", "CCO"])])


def test_malformed_predictions_never_crash_the_scorer():
    keys = comparable_calls([call("run_reaction", reaction="esterification", reactants=5), "junk",
                             {"name": "pca", "arguments": "nope"}, call("no_such_tool", x=1)], REG)
    assert len(keys) == 4


def test_metrics_on_hand_made_predictions():
    gold = [
        {"id": "a", "instruction": "i", "calls": [call("pca", n_comps=50), call("leiden", resolution=0.5)]},
        {"id": "b", "instruction": "i", "calls": [call("log1p")]},
        {"id": "c", "instruction": "i", "calls": [call("normalize_total", target_sum=10000), call("log1p")]},
        {"id": "d", "instruction": "i", "calls": [call("read_h5ad", path="x.h5ad")]},
    ]
    predictions = [
        {"id": "a", "calls": [call("pca", n_comps=50.0), call("leiden", resolution=0.5)]},  # exact
        {"id": "b", "calls": [], "error": "invalid output: not JSON"},  # error
        {"id": "c", "calls": [call("normalize_total", target_sum=1000), call("log1p"), call("pca")]},  # 1 of 3 right
        {"id": "zzz", "calls": [call("log1p")]},  # not in gold: ignored; "d" is missing
    ]
    report = evaluate_predictions(predictions, gold, REG)
    assert (report.n, report.exact, report.errors, report.missing) == (4, 1, 1, 1)
    assert report.exact_match == 0.25
    assert (report.calls.matched, report.calls.predicted, report.calls.gold) == (3, 5, 6)
    assert report.calls.precision == pytest.approx(0.6) and report.calls.recall == pytest.approx(0.5)
    assert report.calls.f1 == pytest.approx(2 * 0.6 * 0.5 / 1.1)
    tools = report.per_tool
    assert (tools["log1p"].matched, tools["log1p"].predicted, tools["log1p"].gold) == (1, 1, 2)
    assert (tools["pca"].matched, tools["pca"].predicted, tools["pca"].gold) == (1, 2, 1)
    assert tools["normalize_total"].f1 == 0.0 and tools["read_h5ad"].recall == 0.0
    data = report.to_dict()
    assert data["schema_valid_rate"] == 0.5 and data["well_formed_rate"] == 0.5
    assert {m["id"] for m in data["mismatches"]} == {"b", "c", "d"}
    json.dumps(data)


@pytest.mark.parametrize(("gold", "predicted", "kind", "slots"), [
    ([call("pca"), call("log1p")], [call("log1p"), call("pca")], "wrong order", []),
    ([call("pca", n_comps=50)], [call("pca", n_comps=30)], "wrong arguments", ["pca.n_comps"]),
    ([call("leiden", resolution=0.5)], [call("leiden", resolution=0.5, key_added="x")], "wrong arguments",
     ["leiden.key_added"]),
    ([call("pca"), call("log1p")], [call("pca")], "call missing", []),
    ([call("pca")], [], "call missing", []),
    ([call("pca", n_comps=5)], [call("pca", n_comps=6), call("log1p")], "call extra", ["pca.n_comps"]),
    ([call("pca"), call("log1p")], [call("pca"), call("leiden")], "wrong tool", []),
    ([call("pca"), call("pca", n_comps=5)], [call("pca", n_comps=5), call("pca", n_comps=7)], "wrong arguments",
     ["pca.n_comps"]),
    ([call("log1p")], ["junk"], "wrong tool", []),
])
def test_each_miss_gets_one_kind_and_the_arguments_at_fault(gold, predicted, kind, slots):
    assert kind in FAILURE_KINDS
    assert classify_failure(comparable_calls(gold, REG), comparable_calls(predicted, REG)) == (kind, slots)
    assert classify_failure(comparable_calls(gold, REG), [], well_formed=False) == ("not a call list", [])


def test_a_report_counts_its_misses_by_kind_and_argument():
    gold = [{"id": str(i), "instruction": "i", "calls": calls} for i, calls in enumerate([
        [call("pca", n_comps=50)], [call("pca", n_comps=50)], [call("log1p")], [call("log1p"), call("pca")],
        [call("log1p")], [call("pca")]])]
    predictions = [{"id": "0", "calls": [call("pca", n_comps=20)]},  # wrong argument
                   {"id": "1", "calls": [call("pca", n_comps=10)]},  # the same slot again
                   {"id": "2", "calls": [], "error": "not JSON"},  # not a call list; "5" has no prediction
                   {"id": "3", "calls": [call("log1p")]},  # a call missing
                   {"id": "4", "calls": [call("log1p")]}]  # exact
    report = evaluate_predictions(predictions, gold, REG)
    assert report.failures == {"wrong arguments": 2, "not a call list": 2, "call missing": 1}
    assert sum(report.failures.values()) == report.n - report.exact
    assert report.wrong_arguments == {"pca.n_comps": 2}
    data = report.to_dict()
    assert list(data["failures"]) == ["not a call list", "call missing", "wrong arguments"]  # FAILURE_KINDS order
    assert {m["id"]: m["kind"] for m in data["mismatches"]}["3"] == "call missing"
    assert next(m for m in data["mismatches"] if m["id"] == "0")["arguments"] == ["pca.n_comps"]
    table = format_failures({"model": report, "parser": evaluate_predictions(predictions[:1], gold[:1], REG)})
    rows = {line[:16].strip(): line.split()[-2:] for line in table.splitlines()[1:len(FAILURE_KINDS) + 1]}
    assert rows["wrong arguments"] == ["2", "1"] and rows["not a call list"] == ["2", "0"]
    assert "model, wrong arguments: pca.n_comps 2" in table


def test_parser_model_comparison_and_table():
    class StubParser:
        def parse(self, text):
            if "log" not in text:
                raise InstructionParseError("no rule matches", text=text)
            return type("Parsed", (), {"calls": [call("log1p")]})()

    gold = [{"id": "1", "instruction": "log it", "calls": [call("log1p")]},
            {"id": "2", "instruction": "pca please", "calls": [call("pca")]}]
    parser = parser_predictions(StubParser(), gold)
    assert parser[1]["calls"] == [] and parser[1]["error"].startswith("parser: ")
    model = [{"id": "1", "calls": [call("pca")]}, {"id": "2", "calls": [call("pca")]}]
    both = [{"id": "1", "calls": [call("log1p")], "source": "parser"},
            {"id": "2", "calls": [call("pca")], "source": "model"}]
    reports = compare_systems({"parser": parser, "model": model, "parser+model": both}, gold, REG)
    assert [r.exact_match for r in reports.values()] == [0.5, 0.5, 1.0]
    assert reports["parser+model"].sources == {"parser": 1, "model": 1}
    table = format_table(reports)
    assert table.splitlines()[0].split()[:3] == ["system", "n", "exact"] and "parser+model" in table


def test_cli_evaluate_reads_gold_and_writes_report(tmp_path, capsys):
    from training.cli import main

    domain = write_toy_domain(tmp_path / "toy")
    gold = tmp_path / "recorded.jsonl"
    gold.write_text("\n".join(json.dumps(r) for r in [
        {"id": "r1", "instruction": "log", "calls": [call("log1p")]},
        {"id": "r2", "instruction": "unlabelled instruction"},
        {"id": "r3", "instruction": "pca", "calls": [call("pca", n_comps=10)]},
    ]) + "\n")
    predictions = tmp_path / "model.jsonl"
    predictions.write_text(json.dumps({"id": "r1", "calls": [call("log1p")]}) + "\nnot json\n")
    assert len(read_gold(gold)) == 2
    assert read_predictions(predictions)[1]["error"].startswith("invalid JSON")
    code = main(["evaluate", "--predictions", str(predictions), "--predictions", f"again={predictions}",
                 "--gold", str(gold), "--domain", str(domain), "--output", str(tmp_path / "report.json")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "again" in printed
    # r3 has no prediction: a miss of kind "not a call list", once for each of the two systems
    assert "misses by kind" in printed and any(line.split() == ["not", "a", "call", "list", "1", "1"]
                                               for line in printed.splitlines())
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["systems"]["model"]["exact_match"] == 0.5 and report["systems"]["model"]["missing"] == 1
    assert main(["evaluate", "--gold", str(gold), "--domain", str(domain)]) == 2
