"""Sampled call lists run on the real libraries: the grammar, the schemas and the preconditions
agree with RDKit and scanpy (issue: two real domains).

Every sampled list must run. What makes that hold is data in ``tools.json``: the reactant domains
of ``run_reaction`` (conditional value domains, checked by the sampler) and the facts of the
singlecell tools (QC columns, genes and group labels that exist at each step).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import grammar_engine
from grammar_engine.executors import ExecutionError, run_calls

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.chem
def test_one_thousand_sampled_chem_call_lists_run(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    grammar = grammar_engine.load(ROOT / "grammars" / "chem")
    ran = 0
    reactions = 0
    for i, sample in enumerate(grammar.sample(1000, strategy="weighted", seed=7)):
        assert grammar.tools.sequence_problems(sample.calls) == []
        assert [p for c in sample.calls for p in grammar.tools.validate_call(c, domains=True)] == []
        try:
            run_calls("chem", sample.calls, tmp_path / f"w{i % 10}")
        except ExecutionError as exc:
            raise AssertionError(f"{sample.instruction!r} -> {sample.calls}: {exc}") from exc
        ran += 1
        reactions += sum(call["name"] == "run_reaction" for call in sample.calls)
    assert ran == 1000
    assert reactions >= 50  # reaction requests (about a tenth of the samples) are drawn and run too


@pytest.mark.singlecell
def test_one_hundred_sampled_singlecell_pipelines_run(tmp_path: Path) -> None:
    pytest.importorskip("scanpy")
    grammar = grammar_engine.load(ROOT / "grammars" / "singlecell")
    ran = 0
    for i, sample in enumerate(grammar.sample(100, strategy="weighted", seed=11)):
        assert grammar.tools.sequence_problems(sample.calls) == []
        try:
            run_calls("singlecell", sample.calls, tmp_path / f"w{i}")
        except ExecutionError as exc:
            raise AssertionError(f"{sample.instruction!r} -> {sample.calls}: {exc}") from exc
        ran += 1
    assert ran == 100
