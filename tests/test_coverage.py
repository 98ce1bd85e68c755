"""Coverage targets, the lower bound, measuring, and the coverage-guided strategy."""

from __future__ import annotations

import pytest

from grammar_engine.coverage import TargetKind, coverage_targets, lower_bound, measure, sample_targets
from grammar_engine.errors import InvalidArgument
from grammar_engine.grammar import Grammar
from grammar_engine.sampling import sample

_TOOLS = {"domain": "toy", "tools": [
    {"name": "a", "parameters": {"type": "object", "properties": {
        "mode": {"type": "string", "enum": ["one", "two", "three"]}}}},
    {"name": "b", "parameters": {"type": "object", "properties": {
        "k": {"type": "integer", "minimum": 1, "maximum": 9}}}},
]}

_EXCLUSIVE = """
start: call_a | call_b
call_a: "a" arg_mode
arg_mode: "one" | "two" | "three"
call_b: "b" arg_k?
arg_k: val_int
val_int: DIGIT
DIGIT: /[0-9]/
%import common.WS
%ignore WS
"""


@pytest.fixture(scope="module")
def toy():
    return Grammar.from_text(_EXCLUSIVE, _TOOLS)


def test_targets_of_a_small_grammar(toy):
    targets = coverage_targets(toy)
    by_id = {toy.table.expansions[e].node_id for e in targets.by_kind[TargetKind.EXPANSION]}
    assert by_id == {"start#0", "start#1", "call_a#0", "arg_mode#0", "arg_mode#1", "arg_mode#2",
                     "call_b#0", "call_b#1", "arg_k#0", "val_int#0"}
    assert targets.by_kind[TargetKind.TOOL_PHRASING] == {("a", "call_a#0"), ("b", "call_b#0"), ("b", "call_b#1")}
    assert targets.by_kind[TargetKind.ENUM_VALUE] == {("a", "mode", v) for v in ("one", "two", "three")}
    assert targets.by_kind[TargetKind.RANGE_EDGE] == {("b", "k", "min"), ("b", "k", "max")}
    assert ("a", "b") in targets.by_kind[TargetKind.TOOL_PAIR]


def test_lower_bound_adds_exclusive_alternatives(toy):
    # start picks call_a (3 exclusive modes) or call_b (2 exclusive forms): 3 + 2 derivations at least
    assert lower_bound(toy) == 5


def test_lower_bound_of_the_example(example_grammar):
    # everything repeats under "step, then step"; only _steps' two alternatives exclude each other
    assert lower_bound(example_grammar) == 2


def test_lower_bound_under_a_size_limit(example_grammar):
    from grammar_engine.gen_tables import gen_tables

    total = len(coverage_targets(example_grammar).by_kind[TargetKind.EXPANSION])
    assert lower_bound(example_grammar, max_size=1) == total  # one target per derivation
    assert lower_bound(example_grammar, max_size=4) == max(2, -(-total // 4))
    assert lower_bound(example_grammar, max_size=10**6) == lower_bound(example_grammar)
    with pytest.raises(InvalidArgument):
        lower_bound(example_grammar, max_size=0)
    samples = list(sample(example_grammar, 30, strategy="coverage", seed=1))
    report = measure(example_grammar, samples)
    t = gen_tables(example_grammar)
    assert report.largest == max(sum(1 for e in s.expansions if t.exps[e].user) for s in samples)
    assert report.size_lower_bound == lower_bound(example_grammar, max_size=report.largest)
    # it is a bound: no run of samples that large reaches full coverage sooner
    assert report.full_expansion_at is not None and report.full_expansion_at >= report.size_lower_bound
    assert report.size_lower_bound >= report.lower_bound


def test_coverage_strategy_reaches_full_expansion_coverage(example_grammar):
    samples = list(sample(example_grammar, 30, strategy="coverage", seed=1))
    report = measure(example_grammar, samples)
    assert report.ratio(TargetKind.EXPANSION) == 1.0
    assert report.full_expansion_at is not None and report.full_expansion_at <= 12
    assert report.lower_bound == 2
    assert report.covered["tool_phrasing"] == report.total["tool_phrasing"]
    baseline = measure(example_grammar, sample(example_grammar, 30, strategy="uniform", seed=1))
    assert baseline.covered["expansion"] < report.covered["expansion"]


def test_coverage_strategy_covers_enum_values_and_range_edges(toy):
    report = measure(toy, sample(toy, 12, strategy="coverage", seed=3))
    assert report.full_expansion_at is not None
    assert report.full_expansion_at <= 2 * lower_bound(toy)
    assert report.ratio(TargetKind.ENUM_VALUE) == 1.0
    assert report.ratio(TargetKind.RANGE_EDGE) == 1.0


def test_measure_takes_strings_and_counts_invalid_ones(example_grammar):
    report = measure(example_grammar, ["pca", "log1p then pca 20", "this is not an instruction"],
                     checkpoints=(1, 2))
    assert report.samples == 3
    assert report.invalid == 1
    assert [point["samples"] for point in report.curve] == [1, 2, 3]
    assert report.covered["tool_pair"] == 1  # log1p -> pca
    with pytest.raises(InvalidArgument):
        measure(example_grammar, [3.14])


def test_sample_and_parse_cover_the_same_targets(example_grammar):
    for s in sample(example_grammar, 20, strategy="uniform", seed=6):
        parsed = example_grammar.parse(s.instruction)
        if parsed.tree == s.tree:
            assert sample_targets(example_grammar, s) == sample_targets(example_grammar, parsed)


def test_two_paths_look_through_helper_rules(example_grammar):
    parsed = example_grammar.parse("pca then log1p then pca 5")
    paths = sample_targets(example_grammar, parsed)[TargetKind.PATH2]
    ids = {(example_grammar.table.expansions[p].node_id, example_grammar.table.expansions[c].node_id) for p, c in paths}
    assert ("start#0", "_steps#0") in ids
    assert any(p == "_steps#0" and c.startswith("step#") for p, c in ids)  # through ___steps_star_1
    assert not any(p.startswith("__") or c.startswith("__") for p, c in ids)


_UNVERIFIABLE = """
start: call_a | call_b
call_a: "go" arg_mode
arg_mode: "one" | "two" | "three"
call_b: "go" "one" | "b" arg_k?
arg_k: val_int
val_int: DIGIT
DIGIT: /[0-9]/
%import common.WS
%ignore WS
"""


def test_coverage_strategy_gives_up_what_cannot_be_verified_and_stops():
    # "go one" reads as a(mode=one) and as b(): no sample through call_b#0, or through a's "one",
    # survives verification
    grammar = Grammar.from_text(_UNVERIFIABLE, _TOOLS)
    stream = sample(grammar, 500, strategy="coverage", seed=2, until_covered=True, focus_tries=3)
    samples = list(stream)
    assert len(samples) < 500  # it stopped before the budget, every target covered or given up
    progress = stream.report.to_dict()["coverage"]
    assert progress["exhausted"] and progress["phase"] == "rest"
    assert progress["given_up_expansions"] == 2
    report = measure(grammar, samples)
    assert report.covered["expansion"] == report.total["expansion"] - 2
    assert sorted(line.split()[0] for line in report.uncovered["expansion"]) == ["arg_mode#0", "call_b#0"]
    assert stream.report.rejected["ambiguous"] >= 3  # each focused try was rejected
    again = [s.instruction for s in sample(grammar, 500, strategy="coverage", seed=2, until_covered=True,
                                           focus_tries=3)]
    assert again == [s.instruction for s in samples]


def test_focus_routes_come_one_step_closer_to_their_target(example_grammar):
    from grammar_engine.coverage_guided import _routes_to

    stream = sample(example_grammar, None, strategy="coverage", seed=0, focus_below=float("inf"))
    for _ in range(25):  # past the warm-up, the first accepted sample starts the focus phase
        next(stream)
    chooser = stream.chooser
    assert chooser.phase in ("focus", "rest")
    t = chooser.t
    target = max(chooser.targets.user)
    routes = _routes_to(t, chooser.parents_of, target)
    assert routes[target] == 0
    start_exp = t.alts[t.start][0]
    assert start_exp in routes
    for e, steps in routes.items():
        if steps:
            below = [routes[c] for sym in t.exps[e].children if sym in t.alts for c in t.alts[sym] if c in routes]
            assert min(below) == steps - 1


def test_focus_takes_the_two_paths_left_one_at_a_time(example_grammar):
    from grammar_engine.coverage import TargetKind, sample_targets

    stream = sample(example_grammar, 3000, strategy="coverage", seed=0, focus_below=float("inf"), until_covered=True,
                    targets=["path2"], max_size=4)  # small steered derivations leave 2-paths for the focus
    chooser = stream.chooser
    focused, covered_in_focus = set(), set()
    samples = []
    for _ in range(3000):
        target = chooser._path_target if chooser.focus_path else None
        s = next(stream, None)
        if s is None:
            break
        samples.append(s)
        if target is not None:
            focused.add(target)
            if target in sample_targets(example_grammar, s)[TargetKind.PATH2]:
                covered_in_focus.add(target)
    given_up = chooser.given_up_paths()
    assert len(focused) >= 5 and chooser.exhausted
    assert covered_in_focus == focused - given_up  # each 2-path in focus was covered while in focus, or given up
    report = measure(example_grammar, samples)
    assert report.total["path2"] - report.covered["path2"] <= len(given_up)
    assert stream.report.to_dict()["coverage"]["given_up_paths"] == len(given_up)


@pytest.mark.parametrize("option", [{"focus_tries": 0}, {"focus_below": -1}, {"until_covered": "yes"}])
def test_coverage_options_are_checked(example_grammar, option):
    with pytest.raises(InvalidArgument):
        next(iter(sample(example_grammar, 1, strategy="coverage", **option)))


_SETUP = """
start: call_prepare | call_other | call_use
call_prepare: "prepare"
call_other: "other"
call_use: "use" ("it" | "that" | "this")
%import common.WS
%ignore WS
"""


def test_a_focus_route_blocked_by_preconditions_first_draws_what_they_require():
    tools = {"domain": "setup", "tools": [
        {"name": "prepare", "parameters": {"type": "object", "properties": {}}, "provides": ["ready"]},
        {"name": "other", "parameters": {"type": "object", "properties": {}}, "provides": ["done"]},
        {"name": "use", "parameters": {"type": "object", "properties": {}}, "requires": ["ready"]},
    ]}
    grammar = Grammar.from_text(_SETUP, tools)
    stream = sample(grammar, 60, strategy="coverage", seed=5, focus_below=float("inf"), session_length=4)
    chooser = stream.chooser
    t = chooser.t
    by_id = {t.exps[e].node_id: e for e in range(len(t.exps))}
    from grammar_engine.coverage_guided import _routes_to

    route = _routes_to(t, chooser.parents_of, by_id["call_use#0"])
    prepare, other = by_id["start#0"], by_id["start#1"]
    # from the initial state "use" cannot run, so start offers only prepare and other
    assert chooser._providers("start", [prepare, other], route) == [prepare]
    assert chooser._providers("start", [other], route) == []
    # and the focus phase covers every phrasing of "use", giving up none
    samples = list(stream)
    report = measure(grammar, samples)
    assert report.ratio(TargetKind.EXPANSION) == 1.0
    assert chooser.given_up_expansions() == frozenset()
