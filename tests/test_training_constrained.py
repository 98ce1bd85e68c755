"""Constrained decoding: the automaton's language, its exact closing distance, and outputs of an untrained model."""

from __future__ import annotations

import json
import random
from collections import deque
from pathlib import Path

import pytest

from grammar_engine.tools import ToolRegistry
from training.constrained import CallListAutomaton
from training.data import calls_to_json, record_calls
from training_fixtures import toy_records, toy_registry

pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parents[1]
REG = toy_registry()


@pytest.fixture(scope="module")
def automaton():
    return CallListAutomaton(REG)


@pytest.mark.parametrize("text", [
    '[{"name":"log1p","arguments":{}}]',
    '[{"name":"pca","arguments":{"n_comps":50}},{"name":"leiden","arguments":{"resolution":0.5}}]',
    '[{"name":"neighbors","arguments":{"n_pcs":30,"n_neighbors":10}}]',  # any argument order
    '[{"name":"normalize_total","arguments":{"target_sum":1e4}}]',
    '[{"name":"normalize_total","arguments":{"target_sum":-0.25E-3}}]',
    '[{"name":"ring_count","arguments":{"molecule":"C/C=C\\\\C","aromatic_only":true}}]',
    '[{"name":"plot_umap","arguments":{"color":["CST3","NKG7","CST3"]}}]',
    '[{"name":"highly_variable_genes","arguments":{"flavor":"seurat_v3"}}]',
    '[{"name":"run_reaction","arguments":{"reaction":"esterification","reactants":["CCO","CC(=O)O"]}}]',
    '[{"name":"read_h5ad","arguments":{"path":"dir/ü \\"quoted\\".h5ad"}}]',
])
def test_accepts_valid_call_lists(automaton, text):
    assert automaton.accepts(text), text
    calls = json.loads(text)
    assert all(not REG.validate_call(c) for c in calls)


@pytest.mark.parametrize("text", [
    "[]",  # empty list not allowed by default
    '[{"name":"pcaa","arguments":{}}]',  # unknown tool
    '[{"name":"pca","arguments":{"n_comp":5}}]',  # unknown argument
    '[{"name":"pca","arguments":{"n_comps":5.5}}]',  # integer
    '[{"name":"pca","arguments":{"n_comps":"5"}}]',  # type
    '[{"name":"pca","arguments":{"n_comps":05}}]',  # JSON has no leading zeros
    '[{"name":"pca","arguments":{"n_comps":5,"n_comps":6}}]',  # duplicate argument
    '[{"name":"read_h5ad","arguments":{}}]',  # required argument missing
    '[{"name":"read_h5ad","arguments":{"path":""}}]',  # empty string
    '[{"name":"plot_umap","arguments":{"color":[]}}]',  # empty list
    '[{"name":"highly_variable_genes","arguments":{"flavor":"seurat_v4"}}]',  # enum
    '[{"name":"ring_count","arguments":{"molecule":"CCO","aromatic_only":True}}]',
    '[{"name":"log1p","arguments":{}}] ',  # nothing after the list
    '[ {"name":"log1p","arguments":{}}]',  # compact form only
    '[{"arguments":{},"name":"log1p"}]',  # name first
    '[{"name":"read_h5ad","arguments":{"path":"a\\qb"}}]',  # bad escape
])
def test_rejects_invalid_call_lists(automaton, text):
    assert not automaton.accepts(text)


def test_empty_list_when_allowed():
    assert CallListAutomaton(REG, allow_empty=True).accepts("[]")


def test_prefixes_of_valid_lists_are_accepted(automaton):
    for record in toy_records(60, 10)["train"]:
        text = calls_to_json(record["calls"], REG)
        assert all(automaton.accepts_prefix(text[:i]) for i in range(len(text) + 1))
        assert automaton.accepts(text)


def _alphabet(automaton):
    chars = set('[]{}":,-.eE+0123456789x\\/tnr')
    for name, tool in automaton.tools.items():
        chars.update(name)
        for arg, slot in tool.slots.items():
            chars.update(arg)
            for option in slot.options + (slot.item.options if slot.item else ()):
                chars.update(option)
    chars.update("truefalse")
    return sorted(chars)


def _shortest_close(automaton, state, alphabet, limit=200):
    seen = {state}
    queue = deque([(state, 0)])
    while queue:
        current, distance = queue.popleft()
        if automaton.is_complete(current):
            return distance
        if distance >= limit:
            continue
        for ch in alphabet:
            nxt = automaton.step(current, ch)
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, distance + 1))
    return None


def test_min_close_is_the_exact_shortest_completion():
    """Brute force over states: the budget check relies on min_close being exact (not a bound)."""
    keep = ("log1p", "read_h5ad", "neighbors", "highly_variable_genes", "plot_umap", "ring_count", "normalize_total")
    registry = ToolRegistry.from_dict({"tools": [{"name": t.name, "parameters": dict(t.parameters)}
                                                 for t in REG if t.name in keep]})
    automaton = CallListAutomaton(registry)
    alphabet = _alphabet(automaton)
    rng = random.Random(0)
    records = [r for r in toy_records(200, 0)["train"] if all(c["name"] in registry for c in r["calls"])]
    for record in rng.sample(records, 25):
        text = calls_to_json(record["calls"], registry)
        for cut in sorted(rng.sample(range(len(text)), min(8, len(text)))):
            state = automaton.feed(automaton.initial, text[:cut])
            assert automaton.min_close(state) == _shortest_close(automaton, state, alphabet), text[:cut]


@pytest.mark.parametrize("domain", ["chem", "singlecell", "example"])
def test_recorded_calls_of_real_domains_are_in_the_language(domain):
    folder = ROOT / "grammars" / domain
    if not (folder / "tools.json").is_file():
        pytest.skip(f"no {domain} tools.json yet")
    registry = ToolRegistry.from_file(folder / "tools.json")
    automaton = CallListAutomaton(registry)
    recorded = folder / "recorded.jsonl"
    lines = [json.loads(line) for line in recorded.read_text().splitlines() if line.strip()] \
        if recorded.is_file() else []
    checked = 0
    for record in lines:
        if record.get("calls") is None:
            continue
        calls = record_calls(record)
        if any(registry.validate_call(c) for c in calls):
            continue  # a recording that does not fit the schema is the grammar tests' business
        assert automaton.accepts(calls_to_json(calls, registry)), record["id"]
        checked += 1
    assert checked or not lines
    for tool in registry:  # every tool can be written with its required arguments at least
        assert automaton.accepts_prefix('[{"name":"' + tool.name + '","arguments":{')


# -- with a model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    torch.set_num_threads(1)
    from training.config import ModelConfig
    from training.data import build_examples
    from training.modeling import build_tiny_model
    from training.tokenizer import example_texts, train_tokenizer

    records = toy_records(200, 0)["train"]
    tokenizer = train_tokenizer(example_texts(build_examples(records, registry=REG)), vocab_size=600)
    model = build_tiny_model(tokenizer, ModelConfig(), tmp_path_factory.mktemp("untrained"), seed=1)
    return model.eval(), tokenizer


INSTRUCTIONS = [r["instruction"] for r in toy_records(16, 4, seed=5)["train"]] + ["", "héllo wörld ✓", "[{" * 40]


def _predictor(untrained, constrained, max_new_tokens=96):
    from training.config import DecodeConfig
    from training.predict import Predictor

    model, tokenizer = untrained
    info = {"prompt_format": "plain", "tools": REG.function_definitions()}
    return Predictor(model, tokenizer, info=info, registry=REG, constrained=constrained,
                     decode=DecodeConfig(max_new_tokens=max_new_tokens, batch_size=8))


def test_untrained_model_writes_only_valid_call_lists_when_constrained(untrained):
    predictor = _predictor(untrained, constrained=True)
    results = predictor.predict(INSTRUCTIONS)
    automaton = predictor.constrained.automaton
    assert len(results) == len(INSTRUCTIONS)
    for result in results:
        assert "error" not in result and "schema_errors" not in result, result
        assert result["calls"] and all(not REG.validate_call(c) for c in result["calls"])
        assert automaton.accepts(calls_to_json(result["calls"]))
    stats = predictor.constrained.stats
    per_token_ms = 1000 * stats["seconds"] / predictor.generated_tokens
    print(f"constrained overhead {per_token_ms:.3f} ms/token, {stats['states']} states")
    assert per_token_ms < 20


def test_a_tight_budget_still_closes_the_list(untrained):
    predictor = _predictor(untrained, constrained=True, max_new_tokens=40)
    for result in predictor.predict(INSTRUCTIONS[:6]):
        assert "error" not in result and result["calls"]


def test_untrained_model_writes_garbage_unconstrained(untrained):
    results = _predictor(untrained, constrained=False).predict(INSTRUCTIONS)
    valid = [r for r in results if "error" not in r and "schema_errors" not in r]
    assert len(valid) < len(results) / 2
    assert all(r["calls"] == [] and r["error"].startswith("invalid output") for r in results if "error" in r)


def test_constrained_decoding_needs_the_plain_format(untrained):
    from training.predict import Predictor

    model, tokenizer = untrained
    with pytest.raises(ValueError, match="plain prompt format"):
        Predictor(model, tokenizer, info={"prompt_format": "chat"}, registry=REG, constrained=True)


def test_a_number_may_be_a_placeholder_of_the_row_that_fits_the_argument():
    with_masks = CallListAutomaton(REG, placeholders=True)

    def complete(numbers, text, automaton=with_masks):
        state = automaton.feed(automaton.initial_state(numbers), text)
        return state is not None and automaton.is_complete(state)

    n_comps = '[{"name":"pca","arguments":{"n_comps":<|v1|>}}]'
    assert complete((7, 9), n_comps)
    assert not complete((7,), n_comps)  # the row has one span: <|v0|> only
    assert not complete((), n_comps)
    assert not complete((7, None), n_comps)  # the second span is a path, not a number
    assert not complete((7, 0.5), n_comps)  # an integer argument takes no fraction
    assert complete((7, 0.5), '[{"name":"leiden","arguments":{"resolution":<|v1|>}}]')
    assert not complete((7, 9), n_comps, CallListAutomaton(REG))  # a model without placeholders
    # bounds: singlecell's filter_cells takes min_genes from 1 to 500
    singlecell = CallListAutomaton(ToolRegistry.from_file(ROOT / "grammars" / "singlecell" / "tools.json"),
                                   placeholders=True)
    min_genes = '[{"name":"filter_cells","arguments":{"min_genes":<|v0|>}}]'
    assert complete((200,), min_genes, singlecell) and not complete((1000,), min_genes, singlecell)
    # closing from inside a placeholder costs exactly its rest
    state = with_masks.feed(with_masks.initial_state((7, 9)), '[{"name":"pca","arguments":{"n_comps":<|v')
    assert with_masks.min_close(state) == len('0|>}}]')


def test_the_processor_allows_each_row_the_placeholders_of_its_own_instruction():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from training.constrained import ConstrainedDecoder
    from training.data import build_examples
    from training.tokenizer import example_texts, train_tokenizer
    from training.value_placeholders import ValuePlaceholders, placeholder_tokens

    records = toy_records(200, 0)["train"]
    examples = build_examples(records, registry=REG, placeholders=ValuePlaceholders.from_records(records, REG))
    tokenizer = train_tokenizer(example_texts(examples), vocab_size=600, extra_tokens=placeholder_tokens())
    ids = tokenizer.convert_tokens_to_ids(placeholder_tokens())
    decoder = ConstrainedDecoder(REG, tokenizer, placeholders=True)
    processor = decoder.logits_processor(64, [(5,), (5, 6, 7)])  # row 0 has one number, row 1 three
    prefix = tokenizer('[{"name":"pca","arguments":{"n_comps":', add_special_tokens=False)["input_ids"]
    prompt = torch.zeros((2, 5), dtype=torch.long)
    vocab = len(tokenizer)
    processor(prompt, torch.zeros((2, vocab)))  # the first call reads the prompt length
    generated = torch.cat([prompt, torch.tensor([prefix, prefix])], dim=1)
    allowed = processor(generated, torch.zeros((2, vocab))) > float("-inf")
    assert [bool(allowed[0, i]) for i in ids[:4]] == [True, False, False, False]
    assert [bool(allowed[1, i]) for i in ids[:4]] == [True, True, True, False]
    digit = tokenizer.convert_tokens_to_ids("7")
    assert allowed[0, digit] and allowed[1, digit]  # a number may still be written out
    # without placeholders in the model, none is allowed
    plain = ConstrainedDecoder(REG, tokenizer).logits_processor(64)
    plain(prompt, torch.zeros((2, vocab)))
    assert not (plain(generated, torch.zeros((2, vocab)))[:, ids] > float("-inf")).any()
