"""Corpus -> examples -> token ids: plain and chat formats, loss masks, the digit-splitting tokenizer."""

from __future__ import annotations

import json

import pytest

from grammar_engine.errors import GrammarEngineError
from training.data import (
    CALLS_MARKER,
    END_MARKER,
    IGNORE_INDEX,
    USER_MARKER,
    build_examples,
    calls_to_json,
    encode_example,
    extract_calls,
    plain_example,
    read_corpus,
    read_manifest,
    record_calls,
    registry_from_definitions,
)
from training_fixtures import toy_records, toy_registry, write_toy_corpus

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def records():
    return toy_records(120, 10)["train"]


@pytest.fixture(scope="module")
def tokenizer(records):
    pytest.importorskip("tokenizers")
    pytest.importorskip("transformers")
    from training.tokenizer import example_texts, train_tokenizer

    return train_tokenizer(example_texts(build_examples(records)), vocab_size=600)


def test_corpus_directory_reads_back(tmp_path):
    corpus = write_toy_corpus(tmp_path / "c", n_train=50, n_heldout=5, shard_size=20)
    train = read_corpus(corpus, "train")
    assert len(train) == 50 and [r["id"] for r in train] == sorted(r["id"] for r in train)
    assert len(read_corpus(corpus, "heldout")) == 5
    manifest = read_manifest(corpus)
    assert registry_from_definitions(manifest["tools"]).tools.keys() == toy_registry().tools.keys()


def test_a_line_that_is_not_utf8_is_named_not_a_traceback(tmp_path):
    corpus = write_toy_corpus(tmp_path / "c", n_train=5, n_heldout=1, shard_size=20)
    shard = sorted(corpus.glob("train-*.jsonl"))[0]
    lines = shard.read_bytes().splitlines(keepends=True)
    lines.insert(2, b'{"instruction": "caf\xe9 \xff", "calls": []}\n')
    shard.write_bytes(b"".join(lines))
    with pytest.raises(GrammarEngineError) as info:
        read_corpus(corpus, "train")
    assert "not UTF-8" in str(info.value) and f"{shard}:3:1" in str(info.value)


def test_calls_come_from_messages_when_calls_are_absent(records):
    record = dict(records[0])
    calls = record.pop("calls")
    assert record_calls(record) == calls
    record["messages"][1]["tool_calls"][0]["function"]["arguments"] = json.dumps(calls[0]["arguments"])
    assert record_calls(record)[0] == calls[0]


def test_plain_format_is_compact_canonical_json():
    record = {"id": "x", "instruction": "tanimoto of CCO and CCN",
              "calls": [{"name": "tanimoto_similarity",
                         "arguments": {"molecule_b": "CCN", "radius": 2.0, "fingerprint": "morgan",
                                       "molecule_a": "CCO"}},
                        {"name": "normalize_total", "arguments": {"target_sum": 10000.0}}]}
    example = plain_example(record, toy_registry())
    assert example.prompt == f"{USER_MARKER}tanimoto of CCO and CCN{CALLS_MARKER}"
    messy = plain_example({**record, "instruction": "  tanimoto of\nCCO  and CCN ?"}, toy_registry())
    assert messy.prompt == example.prompt  # the prompt holds the normalized instruction
    # defaults dropped, schema order, integral floats as ints, no spaces
    assert example.target == ('[{"name":"tanimoto_similarity","arguments":{"molecule_a":"CCO","molecule_b":"CCN"}},'
                              '{"name":"normalize_total","arguments":{"target_sum":10000}}]' + END_MARKER)
    assert extract_calls(example.target) == [
        {"name": "tanimoto_similarity", "arguments": {"molecule_a": "CCO", "molecule_b": "CCN"}},
        {"name": "normalize_total", "arguments": {"target_sum": 10000}}]


def test_loss_mask_covers_exactly_the_calls(records, tokenizer):
    for example in build_examples(records[:20], registry=toy_registry()):
        encoded = encode_example(example, tokenizer, max_length=512)
        ids, labels = encoded["input_ids"], encoded["labels"]
        assert len(ids) == len(labels) == len(encoded["attention_mask"])
        kept = [token for token, label in zip(ids, labels) if label != IGNORE_INDEX]
        assert [label for label in labels if label != IGNORE_INDEX] == kept
        first = labels.index(kept[0]) if kept else len(labels)
        assert all(label == IGNORE_INDEX for label in labels[:first])  # the prompt, then only targets
        assert all(label != IGNORE_INDEX for label in labels[first:])
        assert tokenizer.decode(kept) == example.target
        assert tokenizer.decode(ids[:first]) == example.prompt


def test_long_examples_are_cut_to_max_length(records, tokenizer):
    example = build_examples(records[:1])[0]
    encoded = encode_example(example, tokenizer, max_length=8)
    assert len(encoded["input_ids"]) == 8 and any(label != IGNORE_INDEX for label in encoded["labels"])


def test_tokenizer_splits_digits_and_round_trips(tokenizer, tmp_path):
    from training.tokenizer import load_tokenizer, save_tokenizer

    text = ('<|user|>normalize to 123456 counts<|calls|>'
            '[{"name":"normalize_total","arguments":{"target_sum":123456}}]<|end|>')
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert [p for p in pieces if any(ch.isdigit() for ch in p)] == list("123456") * 2
    assert pieces[0] == USER_MARKER and pieces[-1] == END_MARKER
    assert tokenizer.decode(ids) == text
    assert len(tokenizer) <= 600 and tokenizer.pad_token_id == 0
    loaded = load_tokenizer(save_tokenizer(tokenizer, tmp_path / "tok"))
    assert loaded(text, add_special_tokens=False)["input_ids"] == ids
    assert loaded.decode(ids) == text
    assert (loaded.pad_token, loaded.eos_token) == (tokenizer.pad_token, tokenizer.eos_token)
    assert len(loaded) == len(tokenizer)


CHAT_TEMPLATE = (
    "{%- if tools %}<|system|>{{ tools | tojson }}{% endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'user' %}<|user|>{{ m.content }}"
    "{%- elif m.role == 'assistant' %}<|assistant|>{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}"
    "</tool_call>{% endfor %}<|end|>{% endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}<|assistant|>{% endif -%}"
)


def test_chat_format_masks_all_but_the_assistant_turn(records, tokenizer):
    import copy

    chat_tokenizer = copy.deepcopy(tokenizer)
    chat_tokenizer.chat_template = CHAT_TEMPLATE
    from training.data import resolve_prompt_format

    assert resolve_prompt_format("auto", chat_tokenizer) == "chat"
    assert resolve_prompt_format("auto", tokenizer) == "plain"
    tools = toy_registry().function_definitions()
    examples = build_examples(records[:5], prompt_format="chat", tokenizer=chat_tokenizer, tools=tools,
                              registry=toy_registry())
    for example, record in zip(examples, records[:5]):
        assert example.prompt.startswith("<|system|>") and example.prompt.endswith("<|assistant|>")
        assert example.target.startswith("<tool_call>") and example.target.endswith(END_MARKER)
        assert extract_calls(example.target, "chat") == example.calls
        encoded = encode_example(example, chat_tokenizer, max_length=4096)
        kept = [t for t, label in zip(encoded["input_ids"], encoded["labels"]) if label != IGNORE_INDEX]
        assert chat_tokenizer.decode(kept) == example.target


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty output"),
    ("[{\"name\":\"pca\",\"arguments\":{}}", "not JSON"),
    ("{\"name\":\"pca\"}", "no 'arguments' object"),
    ("[1, 2]", "not an object with a 'name'"),
    ("\"pca\"", "expected a JSON list"),
    ("[{\"name\":\"pca\",\"arguments\":{},\"extra\":1}]", "unexpected keys"),
])
def test_extract_calls_says_why_output_is_invalid(text, reason):
    with pytest.raises(ValueError, match=reason):
        extract_calls(text)


def test_extract_calls_from_chat_text():
    text = ('Sure.\n<tool_call>\n{"name": "pca", "arguments": {"n_comps": 5}}\n</tool_call>\n'
            '<tool_call>{"name": "log1p", "arguments": "{}"}</tool_call>')
    assert extract_calls(text, "chat") == [{"name": "pca", "arguments": {"n_comps": 5}},
                                            {"name": "log1p", "arguments": {}}]
    assert calls_to_json(extract_calls(text, "chat")) == \
        '[{"name":"pca","arguments":{"n_comps":5}},{"name":"log1p","arguments":{}}]'
