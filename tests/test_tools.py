from __future__ import annotations

import pytest

from grammar_engine import ToolBindingError, ToolRegistry

SCHEMA = {
    "domain": "t",
    "tools": [
        {"name": "leiden", "description": "cluster", "provides": ["obs:leiden"], "requires": ["neighbors"],
         "parameters": {"type": "object", "properties": {
             "resolution": {"type": "number", "default": 1.0, "minimum": 0.1, "maximum": 3}}}},
        {"name": "neighbors", "provides": ["neighbors"],
         "parameters": {"type": "object", "properties": {"n_neighbors": {"type": "integer", "default": 15}}}},
        {"name": "rank", "requires": ["obs:{groupby}"],
         "parameters": {"type": "object", "properties": {
             "groupby": {"type": "string"},
             "method": {"type": "string", "enum": ["t-test", "wilcoxon"], "default": "t-test"}},
             "required": ["groupby"]}},
        {"name": "ring_count", "parameters": {"type": "object", "properties": {
            "molecule": {"type": "string", "format": "smiles"},
            "aromatic_only": {"type": "boolean", "default": False}}, "required": ["molecule"]}},
    ],
}


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry.from_dict(SCHEMA)


def test_function_definitions_are_chat_template_ready(registry: ToolRegistry) -> None:
    defs = registry.function_definitions()
    assert [d["function"]["name"] for d in defs] == ["leiden", "neighbors", "rank", "ring_count"]
    assert all(d["type"] == "function" and d["function"]["parameters"]["type"] == "object" for d in defs)


def test_validation_names_the_problem(registry: ToolRegistry) -> None:
    assert registry.validate_call({"name": "leiden", "arguments": {"resolution": 0.5}}) == []
    assert registry.validate_call({"name": "leiden", "arguments": {"resolution": 9}}) == [
        "leiden: resolution must be <= 3, got 9"]
    assert registry.validate_call({"name": "rank", "arguments": {}}) == ["rank is missing required argument 'groupby'"]
    assert registry.validate_call({"name": "rank", "arguments": {"groupby": "x", "method": "anova"}})[0].startswith(
        "rank: method must be one of")
    assert registry.validate_call({"name": "nope"}) == ["unknown tool 'nope'"]
    assert registry.validate_call({"name": "neighbors", "arguments": {"n_neighbors": "15"}})


def test_normalization_drops_defaults_and_nulls(registry: ToolRegistry) -> None:
    call = {"name": "leiden", "arguments": {"resolution": 1}}
    assert registry.normalize_call(call) == {"name": "leiden", "arguments": {}}
    call = {"name": "ring_count", "arguments": {"molecule": "CCO", "aromatic_only": False}}
    assert registry.normalize_call(call) == {"name": "ring_count", "arguments": {"molecule": "CCO"}}
    call = {"name": "neighbors", "arguments": {"n_neighbors": 30.0, "n_pcs": None}}
    assert registry.normalize_call(call) == {"name": "neighbors", "arguments": {"n_neighbors": 30}}
    # a boolean never equals a numeric default
    assert registry.normalize_call({"name": "neighbors", "arguments": {"n_neighbors": True}})["arguments"]


def test_preconditions_are_facts(registry: ToolRegistry) -> None:
    ok = [{"name": "neighbors", "arguments": {}}, {"name": "leiden", "arguments": {}},
          {"name": "rank", "arguments": {"groupby": "leiden"}}]
    assert registry.sequence_problems(ok) == []
    bad = [{"name": "leiden", "arguments": {}}, {"name": "rank", "arguments": {"groupby": "louvain"}}]
    assert registry.sequence_problems(bad) == [
        "call 1 (leiden) needs 'neighbors' first", "call 2 (rank) needs 'obs:louvain' first"]
    assert registry.sequence_problems(bad[1:], state=["obs:louvain"]) == []


def test_needed_before_lists_the_facts_no_earlier_call_provides(registry: ToolRegistry) -> None:
    leiden, neighbors = {"name": "leiden", "arguments": {}}, {"name": "neighbors", "arguments": {}}
    rank = {"name": "rank", "arguments": {"groupby": "louvain"}}
    assert registry.needed_before([leiden, rank]) == {"neighbors", "obs:louvain"}
    assert registry.needed_before([leiden, rank], state=["neighbors"]) == {"obs:louvain"}
    assert registry.needed_before([neighbors, leiden, {"name": "rank", "arguments": {"groupby": "leiden"}}]) == set()
    assert registry.sequence_problems([leiden, rank], state=registry.needed_before([leiden, rank])) == []


def test_needed_before_takes_the_first_alternative_and_every_list_item() -> None:
    registry = ToolRegistry.from_dict({"domain": "d", "tools": [
        {"name": "plot", "requires": ["embedding", "obs:{color} | var:{color}"], "parameters": {
            "type": "object", "properties": {"color": {"type": "array", "items": {"type": "string"}}}}},
    ]})
    plot = {"name": "plot", "arguments": {"color": ["leiden", "CST3", "sample"]}}
    needed = registry.needed_before([plot], state=["var:CST3"])
    assert needed == {"embedding", "obs:leiden", "obs:sample"}
    assert registry.sequence_problems([plot], state=needed | {"var:CST3"}) == []
    assert registry.needed_before([{"name": "plot", "arguments": {}}]) == {"embedding"}


def test_removed_facts_must_be_provided_again() -> None:
    registry = ToolRegistry.from_dict({"domain": "d", "tools": [
        {"name": "pca", "parameters": {"type": "object", "properties": {}}, "provides": ["pca"],
         "removes": ["neighbors", "umap"]},
        {"name": "neighbors", "parameters": {"type": "object", "properties": {}}, "requires": ["pca"],
         "provides": ["neighbors"]},
        {"name": "umap", "parameters": {"type": "object", "properties": {}}, "requires": ["neighbors"]},
    ]})
    pca, neighbors, umap = ({"name": n, "arguments": {}} for n in ("pca", "neighbors", "umap"))
    assert registry.sequence_problems([pca, neighbors, umap, pca, neighbors, umap]) == []
    assert registry.sequence_problems([pca, neighbors, pca, umap]) == ["call 4 (umap) needs 'neighbors' first"]
    assert registry.state_after([pca, neighbors, pca]) == {"pca"}
    assert registry.state_after([pca], state=["neighbors", "other"]) == {"pca", "other"}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"tools": {}}, "must be an object with a 'tools' list"),
        ({"tools": [{"name": "Bad Name"}]}, "no valid name"),
        ({"tools": [{"name": "a"}, {"name": "a"}]}, "defined twice"),
        ({"tools": [{"name": "a", "parameters": {"type": "array"}}]}, "JSON Schema object"),
        ({"tools": [{"name": "a", "parameters": {"type": "object", "properties": {}, "required": ["x"]}}]},
         "requires 'x'"),
        ({"tools": [], "values": {"GENE": "CST3"}}, "'values' must map"),
    ],
)
def test_malformed_schemas(data: dict, message: str) -> None:
    with pytest.raises(ToolBindingError, match=message):
        ToolRegistry.from_dict(data)
