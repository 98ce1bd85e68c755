"""Samplers: samples parse back to their own calls, weights, temperature, near(), deep grammars."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest

import grammar_engine
from grammar_engine.errors import GrammarLoadError, InvalidArgument, SamplingError
from grammar_engine.generation import Chooser, Derivation, Generator
from grammar_engine.grammar import Grammar, normalize_instruction
from grammar_engine.sampling import Sample, expansion_weights, near, sample, weight_overrides
from grammar_engine.value_sources import (
    RegexGenerator,
    ValueSourceKind,
    ValueSources,
    number_forms,
    register_value_source,
)
from grammar_engine.values import parse_number
from grammar_engine.verification import calls_key
from grammar_engine.weights import WORD_RE, recorded_instructions, recorded_use

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def _check(grammar: Grammar, s: Sample, *, reference: bool = True) -> None:
    assert normalize_instruction(s.instruction) == s.instruction
    assert grammar.decompose_tree(s.tree, s.instruction).calls == s.calls
    for call in s.calls:
        assert grammar.tools.validate_call(call) == []
    assert grammar.tools.sequence_problems(s.calls, state=s.state) == []
    assert s.tools == tuple(c["name"] for c in s.calls)
    if reference:
        assert calls_key(grammar.parse(s.instruction).calls) == calls_key(s.calls), s.instruction


@pytest.mark.parametrize("strategy", ["uniform", "weighted", "coverage"])
def test_example_samples_parse_back_to_their_calls(example_grammar, strategy):
    samples = list(sample(example_grammar, 150, strategy=strategy, seed=11))
    assert len(samples) == 150
    for s in samples:
        _check(example_grammar, s)


def test_generated_tree_is_the_parse_tree(example_grammar):
    same = 0
    samples = list(sample(example_grammar, 100, strategy="uniform", seed=3))
    for s in samples:
        parsed = example_grammar.parse(s.instruction)
        same += parsed.tree == s.tree
    # the example grammar is ambiguous (lists can swallow a following step); the calls always agree
    assert same >= 90


def _domain(name: str) -> Grammar:
    try:
        return grammar_engine.load(GRAMMARS / name)
    except (GrammarLoadError, OSError) as exc:  # the domain grammar is being written
        pytest.skip(f"{name} grammar does not load: {exc}")


@pytest.mark.parametrize(("domain", "strategy"), [("chem", "weighted"), ("singlecell", "weighted")])
def test_domain_samples_parse_back_to_their_calls(domain, strategy):
    grammar = _domain(domain)
    stream = sample(grammar, 40, strategy=strategy, seed=5)
    samples = list(stream)
    assert len(samples) == 40
    for k, s in enumerate(samples):
        # every sample was verified by the exact (pruned-Earley) path; re-check some with Grammar.parse
        _check(grammar, s, reference=k < 6)
    report = stream.report.to_dict()
    assert report["verifier"]["exact"] is True


def test_same_seed_same_samples_other_seed_other_samples(example_grammar):
    a = [s.instruction for s in sample(example_grammar, 40, seed=1)]
    b = [s.instruction for s in sample(example_grammar, 40, seed=1)]
    c = [s.instruction for s in sample(example_grammar, 40, seed=2)]
    assert a == b
    assert a != c


def test_stream_is_lazy_and_endless(example_grammar):
    stream = sample(example_grammar, None, seed=0)
    assert len(list(itertools.islice(stream, 5))) == 5
    assert stream.report.samples == 5


def test_smoothing_gives_unused_expansions_probability(example_grammar):
    learned = expansion_weights(example_grammar, recordings=["pca"], alpha=1.0)
    assert learned.parsed == 1
    assert all(p > 0 for p in learned.probabilities.values())
    used = set(example_grammar.parse("pca").expansions)
    pca = example_grammar.table.by_origin["call_pca"]
    top = max(pca, key=lambda e: learned.probabilities[e.index])
    assert top.index in used
    unsmoothed = expansion_weights(example_grammar, recordings=["pca"], alpha=0.0)
    assert any(unsmoothed.probabilities[e.index] == 0 for e in pca)


def test_temperature_one_learned_zero_greedy_infinite_uniform(example_grammar):
    records = ["pca", "pca", "run pca", "log1p"]
    learned = expansion_weights(example_grammar, recordings=records)
    pca = [e.index for e in example_grammar.table.by_origin["call_pca"]]
    counts = [learned.counts.get(i, 0) + 1.0 for i in pca]
    for i, c in zip(pca, counts):
        assert learned.probabilities[i] == pytest.approx(c / sum(counts))
    greedy = expansion_weights(example_grammar, recordings=records, temperature=0)
    assert sorted(greedy.probabilities[i] for i in pca) == [0.0] * (len(pca) - 1) + [1.0]
    flat = expansion_weights(example_grammar, recordings=records, temperature=math.inf)
    assert {round(flat.probabilities[i], 9) for i in pca} == {round(1 / len(pca), 9)}
    warm = expansion_weights(example_grammar, recordings=records, temperature=4)
    assert max(warm.probabilities[i] for i in pca) < max(learned.probabilities[i] for i in pca)
    # greedy sampling is deterministic whatever the seed (sentence case would be a random choice)
    a = [s.instruction for s in sample(example_grammar, 5, seed=1, temperature=0, recordings=records, sentence_case=0)]
    b = [s.instruction for s in sample(example_grammar, 5, seed=9, temperature=0, recordings=records, sentence_case=0)]
    assert set(a) == set(b) == {a[0]}


def test_weights_written_in_the_grammar_override_learned_ones(example_grammar):
    text = example_grammar.text + "\n//! weight call_pca#1 = 1000\n"
    grammar = Grammar.from_text(text, example_grammar.tools, source=example_grammar.source,
                                domain_dir=example_grammar.domain_dir)
    index = next(e.index for e in grammar.table.by_origin["call_pca"] if e.order == 1)
    assert weight_overrides(grammar) == {index: 1000.0}
    assert expansion_weights(grammar).probabilities[index] > 0.9
    bad = Grammar.from_text(example_grammar.text + "\n//! weight call_pcaa#1 = 2\n", example_grammar.tools)
    with pytest.raises(SamplingError, match="did you mean 'call_pca#1'"):
        weight_overrides(bad)


_DEEP = """
start: call_wrap
call_wrap: "wrap" nest
nest: "(" nest ")" | "x"
%import common.WS
%ignore WS
"""


def test_deeply_recursive_grammar_derives_without_recursion_error():
    tools = {"domain": "deep", "tools": [{"name": "wrap", "parameters": {"type": "object", "properties": {}}}]}
    grammar = Grammar.from_text(_DEEP, tools)

    class Deep(Chooser):
        def choose(self, symbol, candidates, full, parent, rng):
            return max(candidates, key=lambda e: len(grammar.table.expansions[e].children))

    gen = Generator(grammar, max_depth=6000)
    d = gen.derive(random.Random(0), Deep())
    assert isinstance(d, Derivation)
    assert d.text.count("(") >= 5000
    stream = sample(grammar, 1, seed=0, max_depth=6000, max_chars=100_000,
                    weights={grammar.table.by_origin["nest"][0].index: 1e9, grammar.table.by_origin["nest"][1].index: 1e-9})
    outcome = stream.attempt()  # checking calls on a 5,000-deep tree may hit recursion: counted, not raised
    assert isinstance(outcome, (Sample, str))
    assert stream.report.attempts == 1


_STEPS = """
start: step (_THEN step)*
step: call_prepare | call_use
call_prepare: "prepare"
call_use: "use"
_THEN: "then"
%import common.WS
%ignore WS
"""


def test_sequences_respect_preconditions():
    tools = {"domain": "steps", "tools": [
        {"name": "prepare", "parameters": {"type": "object", "properties": {}}, "provides": ["ready"]},
        {"name": "use", "parameters": {"type": "object", "properties": {}}, "requires": ["ready"]},
    ]}
    grammar = Grammar.from_text(_STEPS, tools)
    samples = list(sample(grammar, 200, strategy="uniform", seed=4, session_length=1))
    assert all(grammar.tools.sequence_problems(s.calls) == [] for s in samples)
    assert any("use" in s.tools for s in samples)
    assert all(s.tools[0] == "prepare" for s in samples)


def test_sessions_carry_facts_from_one_instruction_to_the_next():
    """In a session, 'use' alone is valid once an earlier instruction prepared; a new session
    starts from the initial state again, and every session runs as a whole from there."""
    tools = {"domain": "steps", "tools": [
        {"name": "prepare", "parameters": {"type": "object", "properties": {}}, "provides": ["ready"]},
        {"name": "use", "parameters": {"type": "object", "properties": {}}, "requires": ["ready"]},
    ]}
    grammar = Grammar.from_text(_STEPS, tools)
    samples = list(sample(grammar, 300, strategy="uniform", seed=4, session_length=4))
    assert all(grammar.tools.sequence_problems(s.calls, state=s.state) == [] for s in samples)
    lone_use = [s for s in samples if s.tools[0] == "use"]
    assert lone_use and all("ready" in s.state for s in lone_use)
    sessions: list[list[dict]] = []
    for s in samples:
        if s.state == frozenset():
            sessions.append([])
        sessions[-1].extend(s.calls)
    assert 300 / 6 < len(sessions) < 300 / 2  # mean length 4
    assert all(grammar.tools.sequence_problems(calls) == [] for calls in sessions)
    again = [s.instruction for s in sample(grammar, 300, strategy="uniform", seed=4, session_length=4)]
    assert again == [s.instruction for s in samples]


def test_sessions_start_from_what_the_recordings_need():
    """A recording says 'use' alone: under the default ``session_start="recorded"`` sessions start
    with 'ready' true, so 'use' alone is drawn from the first instruction on; from the initial
    state it never is, and the uniform baseline starts there unless told."""
    tools = {"domain": "steps", "tools": [
        {"name": "prepare", "parameters": {"type": "object", "properties": {}}, "provides": ["ready"]},
        {"name": "use", "parameters": {"type": "object", "properties": {}}, "requires": ["ready"]},
    ]}
    grammar = Grammar.from_text(_STEPS, tools)
    recordings = ["use", "prepare then use"]
    stream = sample(grammar, 200, strategy="weighted", seed=2, recordings=recordings, session_length=1)
    assert stream.start_state == frozenset({"ready"})
    samples = list(stream)
    assert all(s.state == frozenset({"ready"}) for s in samples)
    assert sum(s.tools[0] == "use" for s in samples) > 50
    assert all(grammar.tools.sequence_problems(s.calls, state=s.state) == [] for s in samples)
    for strategy, options in (("weighted", {"session_start": "initial"}), ("uniform", {})):
        fresh = list(sample(grammar, 200, strategy=strategy, seed=2, recordings=recordings, session_length=1, **options))
        assert all(s.state == frozenset() and s.tools[0] == "prepare" for s in fresh)
    # what the recordings need follows the recordings given
    assert sample(grammar, 1, recordings=["prepare then use"]).start_state == frozenset()
    with pytest.raises(InvalidArgument, match="session_start"):
        sample(grammar, 1, session_start="warm")


def test_every_singlecell_recording_holds_from_the_recorded_start():
    grammar = grammar_engine.load(Path(__file__).resolve().parent.parent / "grammars" / "singlecell")
    start = sample(grammar, 1).start_state
    assert frozenset(grammar.tools.initial_state) < start
    parsed = [d for d in map(grammar.try_parse, recorded_instructions(grammar, None)) if d is not None]
    assert len(parsed) > 100
    blocked = [d.text for d in parsed if grammar.tools.sequence_problems(d.calls, state=grammar.tools.initial_state)]
    assert len(blocked) > 20  # recordings said late in an analysis: what the start adds is needed
    assert [d.text for d in parsed if grammar.tools.sequence_problems(d.calls, state=start)] == []


def test_near_a_step_said_late_in_an_analysis_keeps_its_tool():
    """``plot umap colored by leiden`` needs an embedding and clusters: from the recorded start its
    variants can keep the plot; from the initial state every variant must leave it."""
    grammar = grammar_engine.load(Path(__file__).resolve().parent.parent / "grammars" / "singlecell")
    instruction = "plot umap colored by leiden and CST3"
    variants = near(grammar, instruction, 4, seed=0)
    assert len(variants) == 4 and sum("plot_umap" in v.tools for v in variants) >= 2
    assert all("plot_umap" not in v.tools for v in near(grammar, instruction, 4, seed=0, session_start="initial"))


_CASED = """
start: step (_THEN step)*
step: call_prepare | call_use
call_prepare: "prepare the pca"
call_use: "use" "it"?
_THEN: "then"
%import common.WS
%ignore WS
"""


def test_literal_words_are_written_as_the_recordings_write_them():
    """The recordings write ``PCA`` twice and ``pca`` once: with the grammar's own form counted
    once more, half of the samples say ``PCA``. A capital that only starts a sentence (``Use then
    ...``) teaches nothing."""
    tools = {"domain": "steps", "tools": [
        {"name": "prepare", "parameters": {"type": "object", "properties": {}}},
        {"name": "use", "parameters": {"type": "object", "properties": {}}}]}
    grammar = Grammar.from_text(_CASED, tools)
    recordings = ["prepare the PCA", "Use then prepare the PCA", "prepare the pca then use IT", "use it"]
    assert recorded_use(grammar, recordings).forms == {"it": {"IT": 1, "it": 1}, "pca": {"PCA": 2, "pca": 1}}
    # words are read whole, never out of an identifier or a path
    assert WORD_RE.findall("S_score of data/PBMC.h5ad, t-SNE and kNN. Done") == ["of", "t-SNE", "and", "kNN", "Done"]
    samples = list(sample(grammar, 400, seed=1, recordings=recordings, sentence_case=0))
    said = [s.instruction for s in samples if "prepare" in s.tools]
    share = sum("PCA" in text for text in said) / len(said)
    assert 0.35 < share < 0.65
    assert all("pca" in text.lower() and "Prepare" not in text for text in said)
    assert all(grammar.parse(s.instruction).calls == s.calls for s in samples[:50])
    plain = list(sample(grammar, 400, seed=1, recordings=recordings, sentence_case=0, casing="grammar"))
    assert all(s.instruction == s.instruction.lower() for s in plain)
    assert all(s.instruction == s.instruction.lower()
               for s in sample(grammar, 100, strategy="uniform", seed=1, recordings=recordings, sentence_case=0))
    with pytest.raises(InvalidArgument, match="casing"):
        sample(grammar, 1, casing="upper")


@pytest.mark.parametrize("bad", [0, 0.5, True, "4", float("inf")])
def test_session_length_must_be_a_number_of_at_least_one(bad):
    grammar = Grammar.from_text(_STEPS, {"domain": "steps", "tools": [
        {"name": "prepare", "parameters": {"type": "object", "properties": {}}},
        {"name": "use", "parameters": {"type": "object", "properties": {}}}]})
    with pytest.raises(InvalidArgument, match="session_length"):
        sample(grammar, 1, session_length=bad)


def test_near_keeps_the_tree_but_one_subtree(example_grammar):
    original = "normalize to 10k then run pca with 50 comps"
    variants = near(example_grammar, original, 6, seed=2)
    assert len(variants) == 6
    assert len({v.instruction for v in variants}) == 6
    base = example_grammar.parse(original)
    for v in variants:
        assert v.instruction != original
        _check(example_grammar, v)
        # one contiguous span changed: what precedes and follows it is the original's
        prefix = len(_common_prefix(original, v.instruction))
        suffix = len(_common_prefix(original[::-1], v.instruction[::-1]))
        assert prefix + suffix > 0
        assert len(set(v.expansions) ^ set(base.expansions)) < len(base.expansions)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def test_bad_arguments_are_reported(example_grammar):
    with pytest.raises(InvalidArgument, match="unknown strategy"):
        sample(example_grammar, 1, strategy="nope")
    with pytest.raises(InvalidArgument, match="valid options"):
        sample(example_grammar, 1, tempreature=2)
    with pytest.raises(InvalidArgument, match="n must be"):
        sample(example_grammar, -1)
    with pytest.raises(InvalidArgument, match="verify must be"):
        sample(example_grammar, 1, verify="sometimes")


def test_number_forms_read_back():
    for value in (2, 50, 100, 1000, 2500, 10000, 1_000_000, 0.5, 2.75):
        forms = number_forms(value)
        assert forms
        assert all(parse_number(f) == value for f in forms)
    assert {"10k", "10,000", "1e4", "ten thousand"} <= set(number_forms(10000))


def test_regex_generator_and_value_source_registry(example_grammar):
    assert RegexGenerator(r"(?:and\ then|then|,)").finite() == [",", "and then", "then"]
    assert RegexGenerator(r"[a-z][a-z0-9]*").finite() is None
    rng = random.Random(0)
    gen = RegexGenerator(r"[a-z][a-z0-9_.-]*")
    import re

    assert all(re.fullmatch(r"[a-z][a-z0-9_.-]*", gen.draw(rng)) for _ in range(50))
    with pytest.raises(InvalidArgument, match="already registered"):
        register_value_source(ValueSourceKind.REGEX, lambda sources: lambda ctx, rng: None)
    sources = ValueSources(example_grammar)
    stream = sample(example_grammar, 100, seed=8, sources=sources)
    list(stream)
    assert sources.failures == 0  # every rendered token matched its terminal


def test_sentence_case_capitalizes_first_letters_without_changing_calls():
    grammar = grammar_engine.load(GRAMMARS / "example")
    plain = list(sample(grammar, 200, seed=3, sentence_case=0, casing="grammar"))
    assert not any(s.instruction[:1].isupper() for s in plain)
    cased = list(sample(grammar, 200, seed=3, sentence_case=1, casing="grammar"))
    upper = [s for s in cased if s.instruction[:1].isupper()]
    assert len(upper) > 100
    for s in upper:
        _check(grammar, s)
        kept = [v for v in s.tree.scan_values(lambda v: getattr(v, "start_pos", None) == 0)]
        assert all(v == s.instruction[:len(v)] for v in kept)  # a first token the tree keeps says so too
    half = list(sample(grammar, 400, seed=3, casing="grammar"))  # default: about half
    share = sum(s.instruction[:1].isupper() for s in half) / len(half)
    assert 0.25 < share < 0.6
    with pytest.raises(InvalidArgument, match="sentence_case"):
        sample(grammar, 1, sentence_case=1.5)


def test_samples_do_not_depend_on_what_else_the_process_allocates() -> None:
    """The generator's bookkeeping must not key on object ids that a freed object can hand on:
    the caller allocating between samples must not change a single instruction. (Keyed on bare
    ids, the retry counts of redraw points leaked from dead frames into new ones, and this
    stream changed within 1,200 samples.)"""
    grammar = grammar_engine.load(GRAMMARS / "singlecell")

    def stream(disturb: bool) -> list[str]:
        kept: list[list[object]] = []
        out = []
        for i, s in enumerate(sample(grammar, 1200, strategy="uniform", seed=1, verify="off")):
            out.append(s.instruction)
            if disturb:
                kept.append([object() for _ in range(i % 7)])
        return out

    assert stream(False) == stream(True)


def test_a_registered_strategy_declares_its_own_options(example_grammar):
    from grammar_engine.sampling import UniformChooser, register_strategy, strategy_options

    seen: list[dict] = []

    def factory(grammar, *, spread=3, **common):
        seen.append({"spread": spread, "temperature": common["temperature"]})
        return UniformChooser()

    register_strategy("uniform-with-spread", factory, options={"spread": 3})
    assert strategy_options("uniform-with-spread") == {"spread": 3}
    assert len(list(sample(example_grammar, 2, strategy="uniform-with-spread", spread=5, seed=1))) == 2
    list(sample(example_grammar, 1, strategy="uniform-with-spread", seed=1))
    assert seen == [{"spread": 5, "temperature": 1.0}, {"spread": 3, "temperature": 1.0}]
    with pytest.raises(InvalidArgument, match="valid options"):  # another strategy's option is unknown here
        sample(example_grammar, 1, strategy="uniform", spread=5)
    with pytest.raises(InvalidArgument, match="already registered"):
        register_strategy("uniform-with-spread", factory)
    with pytest.raises(InvalidArgument, match="every strategy already has"):
        register_strategy("uniform-again", factory, options={"temperature": 2.0})
    assert strategy_options("coverage")["until_covered"] is False
