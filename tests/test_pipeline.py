"""The main job end to end on the example domain, with a tiny budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.train
torch = pytest.importorskip("torch")

from grammar_engine.cli import main  # noqa: E402

EXAMPLE = str(Path(__file__).resolve().parent.parent / "grammars" / "example")


def test_pipeline_writes_a_report_with_tables_and_plots(tmp_path: Path, capsys) -> None:
    domain = tmp_path / "example"
    shutil.copytree(EXAMPLE, domain)
    unseen = [{"id": "u1", "instruction": "log1p, then pca with 20 comps",
               "calls": [{"name": "log1p", "arguments": {}}, {"name": "pca", "arguments": {"n_comps": 20}}]},
              {"id": "u2", "instruction": "cluster the cells, please, with leiden",
               "calls": [{"name": "cluster", "arguments": {}}]}]
    (domain / "unseen.jsonl").write_text("".join(json.dumps(u) + "\n" for u in unseen) + "not json\n")
    (domain / "training.json").write_text('{"lr": 0.002, "num_threads": 1, "model": {"split_spaces": true, '
                                          '"value_symbols": true}}')
    out = tmp_path / "run"
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    try:
        code = main(["pipeline", str(domain), "--output", str(out), "--samples", "300", "--max-minutes", "0.05",
                     "--heldout-limit", "40", "--threads", "2", "--no-progress"])
    finally:
        torch.set_num_threads(threads)  # the trainer sets it for the process
    assert code == 0
    # the domain's training.json sets what the command line leaves alone
    trained = json.loads((out / "model" / "training_config.json").read_text())
    assert (trained["num_threads"], trained["lr"], trained["model"]["split_spaces"]) == (2, 0.002, True)
    # the words the corpus wrote outside values travel with the model, so it masks symbols as trained
    masks = json.loads((out / "model" / "model_info.json").read_text())["value_placeholders"]
    assert {"pca", "log1p", "leiden"} <= set(masks["keywords"])
    report = (out / "report.md").read_text()
    assert f"Settings of the domain: `{domain / 'training.json'}`" in report
    assert "## Evaluation on the recorded set" in report and "| parser+model |" in report
    assert "![coverage against samples](coverage.png)" in report
    figures = json.loads((out / "report.json").read_text())
    recorded = figures["evaluation"]["recorded"]
    # the parser answers every recorded instruction it parses correctly; parser+model is never worse
    # 14 recorded lines have gold calls; the parser gets exactly the 12 that it parses
    assert recorded["parser"]["n"] == 14
    assert recorded["parser"]["exact_match"] == pytest.approx(12 / 14, abs=1e-3)
    assert recorded["parser+model"]["exact_match"] >= recorded["parser"]["exact_match"]
    assert figures["decomposition"]["parsed"] == 12
    # the unseen set: both usable lines are evaluated (the bad line is not), for every system
    assert "## Evaluation on the unseen set" in report
    assert {s: r["n"] for s, r in figures["evaluation"]["unseen"].items()} == {
        "model": 2, "parser": 2, "parser+recovery": 2, "parser+model": 2}
    for name in ("check.json", "decomposition.md", "corpus/manifest.json", "model/config.json",
                 "predictions/recorded.model.jsonl", "predictions/heldout.parser.jsonl"):
        assert (out / name).is_file(), name
    pytest.importorskip("matplotlib")
    assert (out / "coverage.png").stat().st_size > 1000
    assert (out / "accuracy_per_tool_recorded.png").is_file()
    # every miss of the model is given a kind, in the report and in its figures
    misses = recorded["model"]["n"] - round(recorded["model"]["exact_match"] * recorded["model"]["n"])
    assert sum(recorded["model"]["failures"].values()) == misses
    if misses:
        assert "Misses by kind:" in report and (out / "failures.png").stat().st_size > 1000
        assert "![the model's misses by kind](failures.png)" in report


def test_sample_command_is_deterministic(tmp_path: Path, capsys) -> None:
    for run in ("a", "b"):
        assert main(["sample", EXAMPLE, "-n", "60", "--seed", "3", "--output", str(tmp_path / run), "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert printed["counts"]["written"] == 60
    shards = sorted(p.name for p in (tmp_path / "a").glob("*.jsonl"))
    assert shards
    for name in shards:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
