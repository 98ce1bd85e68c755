"""Corpora: byte-identical output whatever the workers, records, dedup, held-out splits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from grammar_engine.corpus import (
    DigestSet,
    dedup_key,
    heldout_phrasings,
    read_corpus,
    recorded_phrasings,
    write_corpus,
)
from grammar_engine.errors import InvalidArgument


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def corpus_dir(example_grammar, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "w1"
    manifest = write_corpus(example_grammar, out, n=600, seed=7, workers=1, chunk_size=200, shard_size=250)
    return out, manifest


def test_same_seed_gives_identical_bytes_whatever_the_workers(example_grammar, corpus_dir, tmp_path):
    out, _ = corpus_dir
    write_corpus(example_grammar, tmp_path / "w2", n=600, seed=7, workers=2, chunk_size=200, shard_size=250)
    assert _digests(out) == _digests(tmp_path / "w2")
    write_corpus(example_grammar, tmp_path / "again", n=600, seed=7, chunk_size=200, shard_size=250)
    assert _digests(out) == _digests(tmp_path / "again")
    write_corpus(example_grammar, tmp_path / "other", n=600, seed=8, chunk_size=200, shard_size=250)
    assert _digests(out) != _digests(tmp_path / "other")


def test_records_and_manifest(example_grammar, corpus_dir):
    out, manifest = corpus_dir
    records = list(read_corpus(out))
    assert len(records) == manifest["counts"]["written"] == 600
    assert manifest["counts"]["train"] + manifest["counts"]["heldout"] == 600
    assert {s["file"] for s in manifest["shards"]} == {p.name for p in out.glob("*.jsonl")}
    assert sum(s["records"] for s in manifest["shards"]) == 600
    for key in ("domain", "grammar_hash", "recordings_hash", "strategy", "seed", "counts", "tools", "rejected", "dedup"):
        assert key in manifest
    assert "run" in manifest and "run" not in json.loads((out / "manifest.json").read_text())
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    for r in records[:50]:
        assert list(r) == ["id", "domain", "instruction", "calls", "split", "phrasing", "messages", "tools"]
        assert example_grammar.parse(r["instruction"]).calls == r["calls"]
        user, assistant = r["messages"]
        assert user == {"role": "user", "content": r["instruction"]}
        assert assistant["tool_calls"] == [
            {"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in r["calls"]
        ]
        assert r["tools"] == manifest["tools"]


def test_tools_can_be_left_out_of_records(example_grammar, tmp_path):
    write_corpus(example_grammar, tmp_path, n=20, seed=1, tools_in_records=False)
    assert all("tools" not in r for r in read_corpus(tmp_path))


def test_no_duplicates_exact_or_normalized(corpus_dir):
    out, manifest = corpus_dir
    texts = [r["instruction"] for r in read_corpus(out)]
    assert len({dedup_key(t) for t in texts}) == len(texts)
    assert manifest["dedup"]["exact"] > 0  # the example grammar repeats itself often


def test_heldout_split_holds_out_whole_phrasings(example_grammar, corpus_dir):
    out, manifest = corpus_dir
    held = set(manifest["heldout_phrasings"])
    assert held
    for r in read_corpus(out, split="train"):
        assert not held & set(r["phrasing"]), r
    heldout = list(read_corpus(out, split="heldout"))
    assert heldout and all(held & set(r["phrasing"]) for r in heldout)
    # every tool keeps a phrasing for training
    assert heldout_phrasings(example_grammar, 0.5, 0) == heldout_phrasings(example_grammar, 0.5, 0)
    most = set(heldout_phrasings(example_grammar, 0.9, 0))
    per_tool: dict[str, set[str]] = {}
    for e in example_grammar.table.expansions:
        typed = example_grammar.table.typed_of(e)
        if typed is not None and typed.kind.value == "call":
            per_tool.setdefault(typed.target, set()).add(e.node_id)
    assert all(phrasings - most for phrasings in per_tool.values())


def test_heldout_split_keeps_every_recorded_phrasing_in_train(example_grammar, corpus_dir, tmp_path):
    out, manifest = corpus_dir
    recorded = recorded_phrasings(example_grammar)
    for line in example_grammar.recorded_path.read_text(encoding="utf-8").splitlines():
        found = example_grammar.try_parse(json.loads(line)["instruction"])
        if found is not None:
            table = example_grammar.table
            used = {table.expansions[e] for e in found.expansions}
            calls = {e.node_id for e in used if (t := table.typed_of(e)) is not None and t.kind.value == "call"}
            assert calls and calls <= recorded
    assert manifest["heldout_phrasings"] and not recorded & set(manifest["heldout_phrasings"])
    # the same share and seed would hold some of them out if nothing were kept
    assert recorded & set(heldout_phrasings(example_grammar, 0.5, 0))
    kept = heldout_phrasings(example_grammar, 0.5, 0, keep=recorded)
    assert kept and not recorded & set(kept)
    free = write_corpus(example_grammar, tmp_path / "free", n=200, seed=7, chunk_size=200, heldout=0.5,
                        heldout_keep=())
    assert free["heldout_phrasings"] == heldout_phrasings(example_grammar, 0.5, 7)
    assert recorded_phrasings(example_grammar, recordings=[]) == frozenset()


def test_digest_set_is_bounded():
    digests = DigestSet(16)
    assert digests.add(5) and not digests.add(5)
    for value in range(100, 200):
        digests.add(value)
    assert digests.saturated and len(digests) <= 16
    assert dedup_key("Normalize ,  then PCA.") == dedup_key("normalize, then pca")


def test_loads_with_datasets(corpus_dir):
    datasets = pytest.importorskip("datasets")
    out, manifest = corpus_dir
    ds = datasets.load_dataset("json", data_files={"train": str(out / "train-*.jsonl")})["train"]
    assert ds.num_rows == manifest["counts"]["train"]
    assert ds[0]["messages"][1]["tool_calls"][0]["type"] == "function"


def test_a_coverage_corpus_starts_with_one_covering_stream(example_grammar, tmp_path):
    kwargs = dict(n=900, strategy="coverage", seed=3, chunk_size=200)
    covered = write_corpus(example_grammar, tmp_path / "covered", until_covered=True, **kwargs)
    head = covered["covering_head"]
    assert head["exhausted"] and head["samples"] < 900  # it stopped on its own, before the budget
    assert covered["counts"]["chunks"] == 1
    assert covered["counts"]["written"] == head["samples"] - covered["dedup"]["exact"] - covered["dedup"]["normalized"]
    texts = [r["instruction"] for r in read_corpus(tmp_path / "covered")]
    report = example_grammar.coverage(texts)
    assert report.total["expansion"] - report.covered["expansion"] <= head["given_up_expansions"]

    # without until_covered the head comes first and independent chunks fill up to n
    full = write_corpus(example_grammar, tmp_path / "w1", **kwargs)
    assert full["counts"]["written"] == 900 and full["counts"]["chunks"] > 1
    assert full["covering_head"] == {**head, "until_covered": False} and head["until_covered"]
    for split in ("train", "heldout"):  # the head's records come first in each split
        head_texts = [r["instruction"] for r in read_corpus(tmp_path / "covered", split=split)]
        assert [r["instruction"] for r in read_corpus(tmp_path / "w1", split=split)][:len(head_texts)] == head_texts
    write_corpus(example_grammar, tmp_path / "w2", workers=2, **kwargs)
    assert _digests(tmp_path / "w1") == _digests(tmp_path / "w2")


def test_bad_arguments(example_grammar, tmp_path):
    with pytest.raises(InvalidArgument):
        write_corpus(example_grammar, tmp_path, n=-1)
    with pytest.raises(InvalidArgument):
        write_corpus(example_grammar, tmp_path, n=5, workers=0)
    with pytest.raises(InvalidArgument, match="unknown strategy"):
        write_corpus(example_grammar, tmp_path, n=5, strategy="random")
    with pytest.raises(InvalidArgument, match="needs the coverage strategy"):
        write_corpus(example_grammar, tmp_path, n=5, strategy="weighted", until_covered=True)
