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
        assert grammar.tools.sequence_problems(sample.calls, state=sample.state) == []
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
def test_one_hundred_sampled_singlecell_instructions_run_session_by_session(tmp_path: Path) -> None:
    """Instructions come in sessions (an instruction may rely on what an earlier one computed):
    sessions that start from the domain's initial state run, each session's calls in order, on a
    freshly loaded dataset."""
    pytest.importorskip("scanpy")
    grammar = grammar_engine.load(ROOT / "grammars" / "singlecell")
    initial = frozenset(grammar.tools.initial_state)
    sessions: list[list[tuple[str, list[dict]]]] = []
    for sample in grammar.sample(100, strategy="weighted", seed=11, session_start="initial", session_length=4):
        assert grammar.tools.sequence_problems(sample.calls, state=sample.state) == []
        if sample.state == initial or not sessions:
            sessions.append([])
        sessions[-1].append((sample.instruction, sample.calls))
    assert 10 < len(sessions) < 60
    assert any(len(session) >= 3 for session in sessions)
    for i, session in enumerate(sessions):
        calls = [call for _, steps in session for call in steps]
        try:
            run_calls("singlecell", calls, tmp_path / f"w{i}")
        except ExecutionError as exc:
            raise AssertionError(f"{[text for text, _ in session]!r} -> {calls}: {exc}") from exc
