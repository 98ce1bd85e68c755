"""Conditional value domains and value-dependent preconditions.

- ``"domains"`` in ``tools.json``: which values an argument takes given the other arguments of the
  same call (reactants that carry the groups a reaction needs). ``validate_call(domains=True)``
  rejects a call outside them, the value sources draw inside them, and the sampler never yields a
  sample that breaks one (it counts the rejection).
- Requirements with alternatives (``"numeric:{keys} | var:{keys}"``) and with several
  placeholders (``"label:{key}:{values}"``): ``sequence_problems`` flags a violin of a QC column not
  computed yet or a subset value its key does not have, and the precondition source draws only
  values that exist at that point.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

import grammar_engine
from grammar_engine import ToolBindingError, ToolRegistry
from grammar_engine.tools import ValueDomain
from grammar_engine.value_sources import ValueContext, ValueSources
from grammar_engine.values import convert

ROOT = Path(__file__).resolve().parent.parent
GRAMMARS = ROOT / "grammars"

ACIDS = ["CC(=O)O", "OC(=O)c1ccccc1", "NCC(=O)O"]
AMINES = ["CCN", "C1CCNCC1", "NCC(=O)O"]
ALCOHOLS = ["CCO", "OCCO"]

SCHEMA: dict[str, Any] = {
    "domain": "t",
    "tools": [
        {
            "name": "couple",
            "parameters": {"type": "object", "properties": {
                "reaction": {"type": "string", "enum": ["amide", "ester", "other"]},
                "reactants": {"type": "array", "items": {"type": "string", "format": "smiles"},
                              "minItems": 2, "maxItems": 2}},
                "required": ["reaction", "reactants"]},
            "domains": [
                {"when": {"reaction": "amide"}, "argument": "reactants", "one_of_each": [ACIDS, AMINES],
                 "description": "an acid and an amine"},
                {"when": {"reaction": ["ester"]}, "argument": "reactants", "one_of_each": [ACIDS, ALCOHOLS]},
            ],
        },
        {
            "name": "pick",
            "parameters": {"type": "object", "properties": {
                "key": {"type": "string", "enum": ["color", "size"], "default": "color"},
                "value": {"type": "string"}}, "required": ["value"]},
            "domains": [{"when": {"key": "color"}, "argument": "value", "values": ["red", "blue"]}],
        },
        {
            "name": "qc", "provides": ["numeric:pct_{sets}", "obs:pct_{sets}"],
            "parameters": {"type": "object", "properties": {
                "sets": {"type": "array", "items": {"type": "string", "enum": ["mt", "ribo"]}}},
                "required": ["sets"]},
        },
        {
            "name": "violin", "requires": ["numeric:{keys} | var:{keys}"],
            "parameters": {"type": "object", "properties": {
                "keys": {"type": "array", "items": {"type": "string"}}}, "required": ["keys"]},
        },
        {
            "name": "subset", "requires": ["groups:{key}", "label:{key}:{values}"],
            "parameters": {"type": "object", "properties": {
                "key": {"type": "string"}, "values": {"type": "array", "items": {"type": "string"}}},
                "required": ["key", "values"]},
        },
    ],
    "state": ["var:CST3", "numeric:S_score", "groups:sample", "groups:phase",
              "label:sample:s1", "label:sample:s2", "label:phase:G1", "label:phase:S"],
}


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry.from_dict(SCHEMA, source="t/tools.json")


def couple(reaction: str, *reactants: str) -> dict[str, Any]:
    return {"name": "couple", "arguments": {"reaction": reaction, "reactants": list(reactants)}}


# -- the schema data ------------------------------------------------------------------------------


def test_validation_rejects_a_call_outside_its_domain_only_when_asked(registry: ToolRegistry) -> None:
    good, swapped = couple("amide", "CC(=O)O", "CCN"), couple("amide", "CCN", "CC(=O)O")
    assert registry.validate_call(good, domains=True) == registry.validate_call(swapped, domains=True) == []
    bad = couple("amide", "CC(=O)O", "CCO")
    assert registry.validate_call(bad) == []  # parsing never checks domains: any molecule may be written
    (problem,) = registry.validate_call(bad, domains=True)
    assert problem.startswith("couple: reactants ['CC(=O)O', 'CCO'] is not one value from each of 2 lists")
    assert "when reaction is 'amide'" in problem and "(an acid and an amine)" in problem
    assert registry.domain_problems(bad) == [problem]
    # two acids are not an acid and an amine, even though the first list has two of them
    assert registry.domain_problems(couple("amide", "CC(=O)O", "OC(=O)c1ccccc1"))
    # glycine is both: it can pair with itself or with either partner
    assert registry.domain_problems(couple("amide", "NCC(=O)O", "NCC(=O)O")) == []
    # a condition given as a list; a value no domain speaks of is free
    assert registry.domain_problems(couple("ester", "OCCO", "CC(=O)O")) == []
    assert registry.domain_problems(couple("other", "C", "N")) == []


def test_conditions_count_defaults(registry: ToolRegistry) -> None:
    assert registry.domain_problems({"name": "pick", "arguments": {"value": "red"}}) == []
    (problem,) = registry.domain_problems({"name": "pick", "arguments": {"value": "big"}})
    assert problem == "pick: value 'big' is not one of the 2 values allowed when key is 'color'"
    assert registry.domain_problems({"name": "pick", "arguments": {"key": "size", "value": "big"}}) == []


def test_value_domain_candidates_follow_the_items_chosen() -> None:
    domain = ValueDomain("reactants", (("reaction", ("amide",)),), one_of_each=(tuple(ACIDS), tuple(AMINES)))
    assert domain.applies({"reaction": "amide"}) is True
    assert domain.applies({"reaction": "ester"}) is False
    assert domain.applies({}) is None  # not decided yet
    assert set(domain.candidates([])) == set(ACIDS) | set(AMINES)
    assert set(domain.candidates(["CC(=O)O"])) == set(AMINES)
    assert set(domain.candidates(["CCN"])) == set(ACIDS)
    assert set(domain.candidates(["NCC(=O)O"])) == set(ACIDS) | set(AMINES)
    assert domain.candidates(["CC(=O)O", "CCN"]) == []


@pytest.mark.parametrize(
    "domain, message",
    [
        ({"argument": "nope", "values": ["x"]}, r"domains\[0\] of 'couple' names argument 'nope'"),
        ({"argument": "reactants", "when": {"color": "x"}, "one_of_each": [["C"], ["N"]]},
         r"couple\.reactants: 'when' names 'color'"),
        ({"argument": "reactants", "when": {"reaction": "suzuki"}, "one_of_each": [["C"], ["N"]]},
         r"couple\.reactants: 'when' value 'suzuki' does not fit couple\.reaction"),
        ({"argument": "reactants", "values": ["C"], "one_of_each": [["C"], ["N"]]},
         r"couple\.reactants needs exactly one of 'values' and 'one_of_each'"),
        ({"argument": "reaction", "one_of_each": [["amide"]]}, r"couple\.reaction: 'one_of_each' needs a list"),
        ({"argument": "reactants", "one_of_each": [["C"], ["N"], ["O"]]}, r"has 3 lists, but couple\.reactants takes 2"),
        ({"argument": "reaction", "values": ["amide", "suzuki"]}, r"couple\.reaction: 'values' holds 'suzuki'"),
        ({"argument": "reactants", "one_of_each": [[], ["N"]]}, r"couple\.reactants: 'one_of_each' must be a non-empty"),
        ({"argument": "reactants", "value": ["C"]}, r"domains\[0\] of 'couple' has unknown keys \['value'\]"),
    ],
)
def test_a_bad_domain_names_the_file_and_the_argument(domain: dict[str, Any], message: str) -> None:
    data = json.loads(json.dumps(SCHEMA))
    data["tools"][0]["domains"] = [domain]
    with pytest.raises(ToolBindingError, match=message) as info:
        ToolRegistry.from_dict(data, source="t/tools.json")
    assert str(info.value).startswith("t/tools.json")


@pytest.mark.parametrize(
    "key, facts, message",
    [
        ("requires", ["label:{colour}"], r"requires fact 'label:\{colour\}' of 'subset' names \{colour\}"),
        ("provides", ["a | b"], r"provides fact 'a \| b' of 'subset' has alternatives"),
        ("requires", ["a | "], r"has an empty alternative"),
        ("forbids", "started", r"'forbids' of 'subset' must be a list"),
    ],
)
def test_a_bad_fact_template_names_the_file_and_the_tool(key: str, facts: Any, message: str) -> None:
    data = json.loads(json.dumps(SCHEMA))
    data["tools"][4][key] = facts
    with pytest.raises(ToolBindingError, match=message) as info:
        ToolRegistry.from_dict(data, source="t/tools.json")
    assert str(info.value).startswith("t/tools.json")


# -- preconditions that depend on values ------------------------------------------------------------


def test_requirement_alternatives_and_several_placeholders(registry: ToolRegistry) -> None:
    violin = {"name": "violin", "arguments": {"keys": ["CST3", "S_score", "pct_mt"]}}
    assert registry.sequence_problems([violin]) == [
        "call 1 (violin) needs 'numeric:pct_mt' or 'var:pct_mt' first"]
    qc = {"name": "qc", "arguments": {"sets": ["mt"]}}
    assert registry.sequence_problems([qc, violin]) == []
    subset = {"name": "subset", "arguments": {"key": "sample", "values": ["s1", "G1"]}}
    assert registry.sequence_problems([subset]) == ["call 1 (subset) needs 'label:sample:G1' first"]
    assert registry.sequence_problems([{"name": "subset", "arguments": {"key": "phase", "values": ["S"]}}]) == []


def test_a_presence_placeholder_applies_a_fact_only_when_its_argument_is_given() -> None:
    data = json.loads(json.dumps(SCHEMA))
    data["tools"].append({
        "name": "filt", "forbids": ["log1p{min_counts?}"], "parameters": {"type": "object", "properties": {
            "min_genes": {"type": "integer"}, "min_counts": {"type": "integer"}}}})
    registry = ToolRegistry.from_dict(data)
    counts = {"name": "filt", "arguments": {"min_counts": 500}}
    genes = {"name": "filt", "arguments": {"min_genes": 100}}
    assert registry.sequence_problems([counts], state=["log1p"]) == ["call 1 (filt) cannot follow 'log1p'"]
    assert registry.sequence_problems([genes], state=["log1p"]) == []
    assert registry.sequence_problems([counts]) == []


def test_requirement_values_read_the_other_arguments(registry: ToolRegistry) -> None:
    state = registry.initial_state
    assert registry.requirement_values("subset", "values", {"key": "sample"}, state) == ["s1", "s2"]
    assert registry.requirement_values("subset", "values", {}, state) == ["G1", "S", "s1", "s2"]
    assert registry.requirement_values("subset", "key", {"values": ["S"]}, state) == ["phase"]
    assert registry.requirement_values("subset", "key", {"values": ["S", "s1"]}, state) == []
    assert registry.requirement_values("violin", "keys", {}, state) == ["CST3", "S_score"]
    after_qc = registry.state_after([{"name": "qc", "arguments": {"sets": ["mt"]}}])
    assert registry.requirement_values("violin", "keys", {}, after_qc) == ["CST3", "S_score", "pct_mt"]
    assert registry.requirement_values("qc", "sets", {}, state) is None  # nothing required of it


# -- the value sources ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chem() -> grammar_engine.Grammar:
    return grammar_engine.load(GRAMMARS / "chem")


@pytest.fixture(scope="module")
def singlecell() -> grammar_engine.Grammar:
    return grammar_engine.load(GRAMMARS / "singlecell")


def test_the_domain_source_draws_reactants_that_fit_the_reaction(chem: grammar_engine.Grammar) -> None:
    sources = ValueSources(chem)
    spec = chem.tools["run_reaction"].arguments["reactants"]
    reactions = chem.tools["run_reaction"].arguments["reaction"].enum
    rng = random.Random(0)
    for _ in range(200):
        reaction = rng.choice(reactions)
        chosen: list[str] = []
        for _ in range(2):
            terminal = rng.choice(["MOLECULE_NAME", "SMILES"])
            ctx = ValueContext(terminal, "run_reaction", spec, spec.kind,
                               call={"reaction": reaction, "reactants": list(chosen)})
            text = sources.render(ctx, rng)
            assert text is not None and sources.matches(terminal, text)
            chosen.append(convert("molecule", text, lexicon=chem.lexicon))
        call = {"name": "run_reaction", "arguments": {"reaction": reaction, "reactants": chosen}}
        assert chem.tools.domain_problems(call) == [], call


def test_the_precondition_source_draws_what_exists_now(singlecell: grammar_engine.Grammar) -> None:
    sources = ValueSources(singlecell)
    tools = singlecell.tools
    state = frozenset(tools.initial_state)
    rng = random.Random(1)
    values = tools["subset_cells"].arguments["values"]
    for key, labels in (("sample", {"sample1", "sample2", "sample3", "sample4"}), ("phase", {"G1", "S", "G2M"})):
        drawn = {sources.render(ValueContext("OBS_VALUE", "subset_cells", values, values.kind, state,
                                             call={"key": key}), rng) for _ in range(50)}
        assert drawn == labels
    keys = tools["plot_violin"].arguments["keys"]
    obs = {sources.render(ValueContext("OBS_KEY", "plot_violin", keys, keys.kind, state), rng) for _ in range(50)}
    assert obs == {"S_score", "G2M_score"}  # QC columns are not computed yet; cell_type is not numeric
    after_qc = frozenset(tools.state_after([{"name": "calculate_qc_metrics", "arguments": {"qc_vars": ["mt"]}}]))
    obs = {sources.render(ValueContext("OBS_KEY", "plot_violin", keys, keys.kind, after_qc), rng) for _ in range(200)}
    assert {"pct_counts_mt", "total_counts", "n_genes_by_counts"} <= obs and "pct_counts_ribo" not in obs
    genes = {sources.render(ValueContext("GENE", "plot_violin", keys, keys.kind, state), rng) for _ in range(100)}
    assert genes <= set(tools.value_sources["GENE"])  # a GENE slot still draws genes


# -- samples ----------------------------------------------------------------------------------------


def test_sampled_reactions_fit_their_domains_in_either_word_order(chem: grammar_engine.Grammar) -> None:
    stream = chem.sample(600, strategy="weighted", seed=3, verify="off")
    orders = set()
    reactions = 0
    for sample in stream:
        for call in sample.calls:
            assert chem.tools.validate_call(call, domains=True) == [], (sample.instruction, call)
            if call["name"] == "run_reaction":
                reactions += 1
        for node in sample.tree.iter_subtrees():
            if str(node.data).startswith("call_run_reaction"):
                spans = sorted((sub.meta.start_pos, str(sub.data).split("_")[0]) for sub in node.iter_subtrees()
                               if str(sub.data).startswith(("const_reaction", "arg_reactants")))
                orders.add(spans[0][1])
        # the tree's tokens still sit where the text has them (values redrawn in place)
        for node in sample.tree.iter_subtrees():
            for child in node.children:
                if hasattr(child, "start_pos") and hasattr(child, "type"):
                    assert sample.instruction[child.start_pos:child.end_pos] == str(child)
    assert reactions >= 30
    assert orders == {"const", "arg"}  # "amide coupling of X and Y" and "couple X and Y (amide coupling)"


def test_the_sampler_rejects_and_counts_a_sample_outside_a_domain(chem: grammar_engine.Grammar) -> None:
    # sources that ignore the domains, and no steering: domain violations reach the final check
    blind = ValueSources(chem, order=("molecule", "listed", "regex"))
    stream = chem.sample(300, strategy="weighted", seed=5, verify="off", sources=blind, preconditions=False)
    samples = list(stream)
    assert len(samples) == 300
    assert stream.report.rejected["domain"] > 0
    assert all(not chem.tools.domain_problems(c) for s in samples for c in s.calls)


def test_sampled_pipelines_use_only_columns_and_labels_that_exist(singlecell: grammar_engine.Grammar) -> None:
    """Sessions from the domain's initial state (the recorded start is the union of the states the
    recordings were said in: a QC column there need not come with the rest of the QC metrics)."""
    tools = singlecell.tools
    qc_columns = re.compile(r"^(pct_counts_|total_counts|n_genes_by_counts|log1p_)")
    violins = subsets = 0
    for sample in singlecell.sample(300, strategy="weighted", seed=4, verify="off", session_start="initial",
                                    session_length=4):
        assert tools.sequence_problems(sample.calls, state=sample.state) == []
        for i, call in enumerate(sample.calls):
            facts = tools.state_after(sample.calls[:i], state=sample.state)
            if call["name"] == "plot_violin":
                violins += 1
                for key in call["arguments"]["keys"]:
                    assert f"var:{key}" in facts or f"numeric:{key}" in facts
                    if qc_columns.match(key):
                        assert "qc_metrics" in facts, sample.instruction
            if call["name"] == "subset_cells":
                subsets += 1
                key = call["arguments"]["key"]
                assert all(f"label:{key}:{v}" in facts for v in call["arguments"]["values"]), sample.instruction
    assert violins >= 5 and subsets >= 5


@pytest.mark.chem
def test_reactant_domains_are_what_rdkit_finds_in_the_lexicon(chem: grammar_engine.Grammar) -> None:
    """The reactant lists of run_reaction are data written once from RDKit; they must stay true:
    every lexicon molecule (or listed SMILES) that matches a reactant template of the executor's
    reaction is listed for it, and every pair of a domain reacts."""
    pytest.importorskip("rdkit")
    from rdkit import Chem

    from grammar_engine.executors import chem as executor

    lexicon = chem.lexicon
    pool = list(dict.fromkeys([s for n in lexicon.names if (s := lexicon.smiles(n))]
                              + chem.tools.value_sources.get("SMILES", [])))
    session = executor.Session(Path("."))
    domains = {d.when[0][1][0]: d for d in chem.tools.domains_of("run_reaction", "reactants")}
    assert sorted(domains) == sorted(executor.REACTIONS)
    for name, domain in domains.items():
        reaction = executor._reaction(name)
        expected = []
        for i in range(reaction.GetNumReactantTemplates()):
            template = reaction.GetReactantTemplate(i)
            expected.append([s for s in pool if Chem.MolFromSmiles(s).HasSubstructMatch(template)])
        assert [list(group) for group in domain.one_of_each or ()] == expected, name
        first, second = domain.one_of_each or ((), ())
        for a in first:
            for b in second:
                executor.run_reaction(session, reaction=name, reactants=[a, b])
