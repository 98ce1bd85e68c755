"""grammar_engine.strategies: instructions() and calls() under hypothesis."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.database import InMemoryExampleDatabase

import grammar_engine
from grammar_engine import strategies
from grammar_engine.errors import InvalidArgument
from grammar_engine.sampling import Sample
from grammar_engine.strategies import InstructionSample, calls, instructions
from helpers_hypothesis import assert_all_examples, find_any, minimal

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "grammars" / "example"
SINGLECELL = ROOT / "grammars" / "singlecell"

# Tools of the example domain whose phrases the grammar reads back unambiguously. ``plot`` is
# left out: its NAME list swallows a following step ("plot leiden, normalize"), which
# tests/test_soundness.py reports.
SOUND_TOOLS = ["normalize", "log1p", "pca", "cluster", "molecular_weight", "logp"]


@pytest.fixture(scope="module")
def grammar():
    return grammar_engine.load(EXAMPLE)


def test_exports():
    assert set(strategies.__all__) == {"DEFAULT_EXTRA_DEPTH", "InstructionSample", "calls", "instructions"}
    for name in strategies.__all__:
        assert hasattr(strategies, name)


# -- argument validation ---------------------------------------------------------------------------

BAD_INSTRUCTIONS = [
    ({"tools": ["pcaa"]}, "did you mean 'pca'"),
    ({"tools": [1]}, "tool names"),
    ({"tools": []}, "at least one tool"),
    ({"tools": 5}, "iterable of tool names"),
    ({"max_depth": 0}, "max_depth"),
    ({"max_depth": "3"}, "max_depth"),
    ({"max_depth": True}, "max_depth"),
    ({"max_chars": 0}, "max_chars"),
    ({"values": {"NAMEE": st.just("x")}}, "did you mean 'NAME'"),
    ({"values": {"NAME": "cst3"}}, r"st\.just"),
    ({"values": ["NAME"]}, "mapping"),
    ({"values": {3: st.just("x")}}, "keys must be str"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_INSTRUCTIONS)
def test_instructions_rejects_bad_arguments_at_once(grammar, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        instructions(grammar, **kwargs)


GOOD_INSTRUCTIONS = [
    {},
    {"tools": ["pca"]},
    {"tools": "pca"},
    {"max_depth": 1},
    {"max_depth": 30},
    {"values": {"NAME": st.just("cst3")}},
    {"values": {"plot.color": st.sampled_from(["cst3", "nkg7"])}},
    {"preconditions": False, "valid": False},
    {"verify": True, "tools": SOUND_TOOLS},
]


@pytest.mark.parametrize("kwargs", GOOD_INSTRUCTIONS)
def test_instructions_accepts_good_arguments(grammar, kwargs):
    sample = find_any(instructions(grammar, **kwargs), max_examples=50)
    assert isinstance(sample, InstructionSample) and isinstance(sample, Sample)
    assert sample.calls


def test_grammar_argument(grammar):
    with pytest.raises(InvalidArgument, match="Grammar"):
        instructions(42)  # type: ignore[arg-type]
    assert find_any(instructions(str(EXAMPLE))).calls


BAD_CALLS = [
    ({"tools": ["nosuch"]}, "tools names"),
    ({"min_size": 3, "max_size": 1}, "max_size"),
    ({"min_size": -1}, "min_size"),
    ({"values": {"plot.colour": st.just(["x"])}}, "did you mean 'plot.color'"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_CALLS)
def test_calls_rejects_bad_arguments_at_once(grammar, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        calls(grammar, **kwargs)


def test_calls_rejects_bad_source():
    with pytest.raises(InvalidArgument, match="ToolRegistry"):
        calls(3.5)  # type: ignore[arg-type]


# -- what instructions() draws ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_samples_parse_back_to_their_calls(grammar, data):
    sample = data.draw(instructions(grammar, tools=SOUND_TOOLS))
    assert grammar.parse(sample.instruction).calls == sample.calls
    assert sample.tools == tuple(c["name"] for c in sample.calls)
    assert sample.tree.data == "start"
    assert grammar_engine.normalize_instruction(sample.instruction) == sample.instruction


def test_samples_fit_schemas_and_preconditions(grammar):
    assert_all_examples(
        instructions(grammar),
        lambda s: not any(grammar.tools.validate_call(c) for c in s.calls)
        and not grammar.tools.sequence_problems(s.calls),
        max_examples=60,
    )


def test_tools_restricts_the_calls(grammar):
    assert_all_examples(instructions(grammar, tools=["pca", "log1p"]),
                        lambda s: set(s.tools) <= {"pca", "log1p"}, max_examples=40)


def test_values_override_the_terminal_text(grammar):
    strategy = instructions(grammar, tools=["plot"], values={"plot.color": st.just("cst3")})
    assert_all_examples(strategy, lambda s: all(v == "cst3" for c in s.calls for v in c["arguments"]["color"]),
                        max_examples=30)


def test_values_that_do_not_lex_are_filtered(grammar):
    # "Not A Name!" never lexes as NAME, so no sample can use it
    strategy = instructions(grammar, values={"NAME": st.sampled_from(["cst3", "Not A Name!"])})
    assert_all_examples(strategy, lambda s: "Not A Name" not in s.instruction, max_examples=30)


@pytest.mark.parametrize("tool", ["normalize", "log1p", "pca", "cluster", "plot", "molecular_weight", "logp"])
def test_every_tool_is_reachable(grammar, tool):
    find_any(instructions(grammar), lambda s: tool in s.tools)


def test_max_depth_bounds_the_derivation(grammar):
    # at the start symbol's minimum height only single-step instructions fit
    from grammar_engine.generation import gen_tables

    least = gen_tables(grammar).sym_depth["start"]
    assert_all_examples(instructions(grammar, max_depth=least), lambda s: len(s.calls) == 1, max_examples=40)
    find_any(instructions(grammar, max_depth=least + 6), lambda s: len(s.calls) >= 3)


def test_repr_is_short(grammar):
    sample = find_any(instructions(grammar))
    assert repr(sample).startswith("InstructionSample(instruction=")
    assert "Tree(" not in repr(sample)
    assert len(repr(instructions(grammar))) < 300
    assert len(repr(calls(grammar))) < 100


# -- shrinking ---------------------------------------------------------------------------------------


def test_shrinks_to_the_shortest_instruction(grammar):
    assert minimal(instructions(grammar)).instruction == "normalize"


@pytest.mark.parametrize(("tool", "expected"), [
    ("logp", "logp of aspirin"),
    ("pca", "pca"),
    ("cluster", "cluster"),
])
def test_shrinks_to_the_simplest_phrase_of_a_tool(grammar, tool, expected):
    assert minimal(instructions(grammar), lambda s: tool in s.tools).instruction == expected


def test_shrinks_away_leading_steps(grammar):
    # the steps are a hypothesis list, so any step can be deleted, the first one too
    found = minimal(instructions(grammar), lambda s: len(s.calls) >= 2 and "pca" in s.tools)
    assert len(found.calls) == 2
    assert len(found.instruction) <= len("normalize, pca") + len("before ")


def test_shrinks_through_a_reordering(grammar):
    # "before X, Y" drops to "Y" when the property only needs Y (unit chains share span labels)
    found = minimal(instructions(grammar), lambda s: "log1p" in s.tools and "before" in s.instruction)
    assert found.instruction.startswith("before")
    assert len(found.calls) == 2


def test_numbers_shrink_toward_the_minimum(grammar):
    found = minimal(instructions(grammar, tools=["pca"]), lambda s: "n_comps" in s.calls[0]["arguments"])
    assert found.calls[0]["arguments"]["n_comps"] == 2  # the schema's minimum


# -- hypothesis integration ------------------------------------------------------------------------------


def test_replays_the_same_examples_with_the_same_seed(grammar):
    def run() -> list[str]:
        seen: list[str] = []

        @seed(1234)
        @settings(max_examples=25, database=None, deadline=None, derandomize=False)
        @given(instructions(grammar))
        def collect(sample):
            seen.append(sample.instruction)

        collect()
        return seen

    assert run() == run()


def test_failing_example_is_saved_and_replayed_from_the_database(grammar):
    db = InMemoryExampleDatabase()
    calls_seen: list[str] = []

    @settings(database=db, max_examples=200, deadline=None, phases=[Phase.reuse, Phase.generate, Phase.shrink])
    @given(instructions(grammar))
    def no_cluster(sample):
        calls_seen.append(sample.instruction)
        assert "cluster" not in sample.tools

    with pytest.raises(AssertionError):
        no_cluster()
    assert any(db.data.values())
    calls_seen.clear()
    with pytest.raises(AssertionError):
        no_cluster()
    assert calls_seen[0] == "cluster"  # the saved, shrunk example runs first


def test_passes_health_checks_with_default_settings(grammar):
    @settings(max_examples=30, deadline=None, database=None)
    @given(instructions(grammar))
    def anything(sample):
        pass

    anything()  # raises FailedHealthCheck if generation filtered too much or drew too much


def test_no_private_randomness(grammar, monkeypatch):
    # every choice goes through hypothesis: forbid module-level random while drawing
    import random

    def forbidden(*args, **kwargs):
        raise AssertionError("module-level random used")

    for name in ("random", "choice", "randint", "uniform", "shuffle", "sample"):
        monkeypatch.setattr(random, name, forbidden)
    find_any(instructions(grammar), lambda s: len(s.calls) >= 2)


# -- calls() -----------------------------------------------------------------------------------------


def test_calls_are_valid(grammar):
    assert_all_examples(
        calls(grammar),
        lambda cs: 1 <= len(cs) <= 4 and not any(grammar.tools.validate_call(c) for c in cs)
        and cs == grammar.tools.normalize_calls(cs),
        max_examples=80,
    )


def test_calls_meet_preconditions_from_schemas_alone():
    # the singlecell schemas have preconditions (umap needs neighbors, rank_genes_groups needs
    # groups:{groupby}); only tools.json is read, the grammar is never loaded
    strategy = calls(SINGLECELL, max_size=5)
    from grammar_engine.tools import ToolRegistry

    registry = ToolRegistry.from_file(SINGLECELL / "tools.json")
    assert_all_examples(strategy, lambda cs: not registry.sequence_problems(cs)
                        and not any(registry.validate_call(c) for c in cs), max_examples=80)
    found = find_any(strategy, lambda cs: any(c["name"] == "umap" for c in cs))
    assert any(c["name"] == "neighbors" for c in found)


def test_calls_shrink_to_one_call(grammar):
    found = minimal(calls(grammar))
    assert len(found) == 1 and found[0]["arguments"] == {}


def test_calls_values_override(grammar):
    strategy = calls(grammar, tools=["pca"], values={"pca.n_comps": st.just(7)})
    found = find_any(strategy, lambda cs: any("n_comps" in c["arguments"] for c in cs))
    assert all(c["arguments"].get("n_comps", 7) == 7 for c in found)


# -- optional dependency ---------------------------------------------------------------------------


def test_missing_hypothesis_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    monkeypatch.delitem(sys.modules, "grammar_engine.strategies")
    with pytest.raises(ImportError, match=r"pip install 'grammar-engine\[dev\]'"):
        importlib.import_module("grammar_engine.strategies")


def test_health_check_suppression_not_needed_for_chooser_draws(grammar):
    # a deep budget with many choices stays within hypothesis's limits (no data_too_large)
    @settings(max_examples=20, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(instructions(grammar, max_depth=40))
    def deep(sample):
        assert len(sample.instruction) <= 2000

    deep()
