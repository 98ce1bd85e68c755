"""Numbers and paths as placeholders: found in the instruction, referred to by the target, put back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import grammar_engine
from grammar_engine.grammar import normalize_instruction
from grammar_engine.tools import ToolRegistry
from training.data import build_examples, canonical_calls, plain_example
from training.value_placeholders import MAX_PLACEHOLDERS, ValuePlaceholders

pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def singlecell() -> ToolRegistry:
    return ToolRegistry.from_file(ROOT / "grammars" / "singlecell" / "tools.json")


def texts(spans):
    return [(s.text, s.number) for s in spans]


def test_numbers_are_read_in_every_digit_form_and_not_inside_words():
    masks = ValuePlaceholders()
    masked, spans = masks.mask("normalize to 10,000 (or 10k, 1e4), res 0.5, then log1p and a 3D umap, hvg 2000")
    assert texts(spans) == [("10,000", 10000), ("10k", 10000), ("1e4", 10000), ("0.5", 0.5), ("2000", 2000)]
    assert masked == "normalize to <|v0|> (or <|v1|>, <|v2|>), res <|v3|>, then log1p and a 3D umap, hvg <|v4|>"
    # a digit that is part of a name stays in it
    assert masks.spans("Buchwald coupling of 2-bromopyridine and 1,3-butadiene, then [13CH4] and C%10CC%10") == []
    assert texts(masks.spans("keep clusters 1,2 and 5")) == [("1", 1), ("2", 2), ("5", 5)]


def test_paths_are_words_with_a_separator_or_a_known_extension():
    masks = ValuePlaceholders(["h5ad"])
    spans = masks.spans("read raw/pbmc_10k_v3.h5ad, then pbmc.h5ad and save to /tmp/out and ./x")
    assert texts(spans) == [("raw/pbmc_10k_v3.h5ad", None), ("pbmc.h5ad", None), ("/tmp/out", None),
                            ("./x", None)]
    # "and/or" and "mt/ribo" are words; an extension nobody trained on needs a separator
    assert masks.spans("qc with mt/ribo genes and/or hb of library.smi") == []
    # quotes and brackets around a word are not part of it; a word with two separators is taken whole
    assert texts(masks.spans('read "data/x.h5ad" (or [out/y.h5ad]), canonical C/C=C/C(=O)O')) == [
        ("data/x.h5ad", None), ("out/y.h5ad", None), ("C/C=C/C(=O)O", None)]
    assert texts(ValuePlaceholders(["smi"]).spans("filter library.smi")) == [("library.smi", None)]


def test_the_numbers_of_a_numbered_list_are_not_values():
    masks = ValuePlaceholders(["h5ad"])
    masked, spans = masks.mask("1. load data/lung.h5ad 2. filter genes in less than 10 cells 3. normalize to 1e4 "
                               "4. log1p")
    assert masked == "1. load <|v0|> 2. filter genes in less than <|v1|> cells 3. normalize to <|v2|> 4. log1p"
    assert texts(spans) == [("data/lung.h5ad", None), ("10", 10), ("1e4", 10000)]
    assert masks.mask("1) pca w/ 30 PCs\n2) neighbors using all 30 PCs\n(3) umap")[0] == (
        "1) pca w/ <|v0|> PCs\n2) neighbors using all <|v1|> PCs\n(3) umap")
    assert masks.mask("Step 7: pca\n- step 8: plot it")[0] == "Step 7: pca\n- step 8: plot it"
    # a number that closes a clause, or skips the list's order, is a value
    assert masks.mask("scale (max value 1) and keep genes in at least 3. 4. then plot")[0] == (
        "scale (max value <|v0|>) and keep genes in at least <|v1|>. <|v2|>. then plot")
    assert masks.mask("1. res 0.5 3. umap")[0] == "1. res <|v0|> <|v1|>. umap"
    # a model directory from before keeps masking them, as it was trained
    old = ValuePlaceholders.from_dict({"extensions": ["h5ad"]})
    assert old.mask("1. load x.h5ad 2. pca")[0] == "<|v0|>. load <|v1|> <|v2|>. pca"
    assert ValuePlaceholders.from_dict(masks.to_dict()).mask("1. pca")[0] == "1. pca"


def test_spans_past_the_limit_stay_as_written():
    text = " ".join(str(n) for n in range(MAX_PLACEHOLDERS + 3))
    masked, spans = ValuePlaceholders().mask(text)
    assert len(spans) == MAX_PLACEHOLDERS
    assert masked.endswith(f"<|v{MAX_PLACEHOLDERS - 1}|> {MAX_PLACEHOLDERS} {MAX_PLACEHOLDERS + 1} "
                           f"{MAX_PLACEHOLDERS + 2}")


def test_a_target_refers_to_spans_bare_for_numbers_quoted_for_strings(singlecell):
    record = {"instruction": "read data/x.h5ad, keep leiden clusters 0 and 3, normalize to 10k and pca with "
                             "fifty comps",
              "calls": [{"name": "read_h5ad", "arguments": {"path": "data/x.h5ad"}},
                        {"name": "subset_cells", "arguments": {"key": "leiden", "values": ["0", "3"]}},
                        {"name": "normalize_total", "arguments": {"target_sum": 10000}},
                        {"name": "pca", "arguments": {"n_comps": 50}}]}
    example = plain_example(record, singlecell, placeholders=ValuePlaceholders(["h5ad"]))
    assert example.prompt == ("<|user|>read <|v0|>, keep leiden clusters <|v1|> and <|v2|>, normalize to <|v3|> "
                              "and pca with <|v4|> comps<|calls|>")
    assert example.target == (
        '[{"name":"read_h5ad","arguments":{"path":"<|v0|>"}},'
        '{"name":"subset_cells","arguments":{"key":"leiden","values":["<|v1|>","<|v2|>"]}},'
        '{"name":"normalize_total","arguments":{"target_sum":<|v3|>}},'
        '{"name":"pca","arguments":{"n_comps":<|v4|>}}]<|end|>'
    )
    spans = ValuePlaceholders(["h5ad"]).spans(record["instruction"])
    restored = json.loads(ValuePlaceholders.restore(example.target.removesuffix("<|end|>"), spans))
    assert restored == record["calls"]  # "fifty" comes back as 50
    # a model trained before number words were spans writes them out itself
    before = plain_example(record, singlecell, placeholders=ValuePlaceholders(["h5ad"], number_words=False))
    assert before.prompt.endswith("pca with fifty comps<|calls|>") and before.target.endswith(
        '{"name":"pca","arguments":{"n_comps":50}}]<|end|>')


@pytest.mark.parametrize(("text", "numbers"), [
    ("normalize to ten thousand counts", [10000]),
    ("twenty-five neighbors and two hundred and fifty genes", [25, 250]),
    ("Normalize to 1 million counts, then Fifty PCs", [1000000, 50]),
    ("MW under five hundred Da, at most 3 donors", [500, 3]),
    ("the first two principal components, one hundred cells", [2, 100]),
    ("rule-of-five for aspirin, quick one: leiden", []),  # inside a hyphenated word; a lone "one"
    ("scale to zero mean and unit variance, one by one", []),
    ("phone three-d lone", []),  # a number word inside a word or before a hyphenated part is no number
])
def test_numbers_written_in_words_are_spans(text, numbers):
    assert [span.number for span in ValuePlaceholders().spans(text)] == numbers
    # without them, only digits are numbers ("1 million" is then the number 1)
    assert all(span.text.isdigit() for span in ValuePlaceholders(number_words=False).spans(text))


def test_number_words_travel_with_the_model():
    assert ValuePlaceholders.from_dict(ValuePlaceholders().to_dict()).number_words is True
    assert ValuePlaceholders.from_dict({"extensions": ["h5ad"], "list_markers": True}).number_words is False


def test_symbols_are_identifier_words_the_corpus_wrote_only_as_values(singlecell):
    def plot(text, genes):
        return {"instruction": text, "calls": [{"name": "plot_umap", "arguments": {"color": genes}}]}

    records = [plot("UMAP of CD3E and NKG7, for QC", ["CD3E", "NKG7"]),
               plot("umap colored by MS4A1 (qc)", ["MS4A1"]),
               plot("the UMAP with donor_id, cpm normalized counts, CPM normalized", ["donor_id"]),
               plot("UMAP of NK cells", ["NK cells"])]
    masks = ValuePlaceholders.from_records(records, singlecell, symbols=True)
    # words written outside string values at least twice, in any case; values never
    assert {"umap", "qc", "cpm", "of", "normalized"} <= masks.keywords
    assert not {"cd3e", "nkg7", "donor_id", "nk", "cells", "colored", "counts"} & masks.keywords
    masked, spans = masks.mask("show HLA-DRA, GZMB and donor_id on the UMAP after QC (CPM-normalized, 2 comps)")
    # a hyphenated word whose parts are all keywords is a word
    assert masked == ("show <|v0|>, <|v1|> and <|v2|> on the UMAP after QC (CPM-normalized, <|v3|> comps)")
    assert [(s.text, s.symbol) for s in spans] == [("HLA-DRA", True), ("GZMB", True), ("donor_id", True),
                                                   ("2", False)]
    # a keyword in another case is a word, hyphen and all
    assert ValuePlaceholders(keywords=["t-sne", "of"]).mask("t-SNE of CD3E")[0] == "t-SNE of <|v0|>"
    # lower-case words, one capital without a digit, and names with dots are not symbols
    assert masks.spans("plot Leiden clusters of the B cells with sc.pl.umap_3d and log1p") == []
    # a symbol that is one word of a string value is referred to inside the string
    masked, spans = masks.mask("keep the NK cells and the CD8A T cells")
    calls = [{"name": "subset_cells", "arguments": {"key": "cell_type", "values": ["NK cells", "CD8A T cells"]}}]
    target = masks.target_json(calls, spans)
    assert target == ('[{"name":"subset_cells","arguments":{"key":"cell_type",'
                      '"values":["<|v0|> cells","<|v1|> T cells"]}}]')
    assert json.loads(masks.restore(target, spans)) == calls
    # the keywords travel with the model; without them (the default, an older model) no symbol is masked
    assert ValuePlaceholders.from_dict(json.loads(json.dumps(masks.to_dict()))).keywords == masks.keywords
    assert ValuePlaceholders.from_dict({"extensions": []}).spans("plot CD3E") == []
    assert ValuePlaceholders.from_records(records, singlecell).keywords is None


@pytest.mark.parametrize("symbols", [False, True])
def test_restore_gives_back_the_calls_of_every_sampled_instruction(singlecell, symbols):
    """Over sampled singlecell instructions: the target with its placeholders put back is the plain
    target without them, and placeholders occur wherever the instruction spells a value."""
    grammar = grammar_engine.load(ROOT / "grammars" / "singlecell")
    records = [{"instruction": s.instruction, "calls": [dict(c) for c in s.calls]}
               for s in grammar.sample(300, seed=5)]
    masks = ValuePlaceholders.from_records(records, singlecell, symbols=symbols)
    assert masks.extensions == ["h5ad"]
    with_masks = build_examples(records, registry=singlecell, placeholders=masks)
    without = build_examples(records, registry=singlecell)
    replaced = 0
    for record, masked, plain in zip(records, with_masks, without):
        _, spans = masks.mask(normalize_instruction(record["instruction"]))
        body = masked.target.removesuffix("<|end|>")
        replaced += body.count("<|v")
        restored = json.loads(masks.restore(body, spans))
        assert restored == canonical_calls(record["calls"], singlecell)
        assert json.loads(plain.target.removesuffix("<|end|>")) == restored
    assert replaced > 100
    if symbols:  # gene symbols and obs keys among them
        assert sum(span.symbol for r in records for span in masks.spans(normalize_instruction(r["instruction"]))) > 50


def test_restore_handles_what_a_model_may_write():
    spans = ValuePlaceholders(["h5ad"]).spans("save 10k cells to out/a.h5ad")
    restore = ValuePlaceholders.restore
    assert json.loads(restore('[{"n":<|v0|>,"p":"<|v1|>","q":[<|v0|>]}]', spans)) == [
        {"n": 10000, "p": "out/a.h5ad", "q": [10000]}]
    # a path placeholder written bare is still the path; one inside a string is its text
    assert json.loads(restore('{"p":<|v1|>,"s":"x_<|v0|>"}', spans)) == {"p": "out/a.h5ad", "s": "x_10k"}
    # a placeholder without a span stays, so the output fails its checks instead of guessing
    assert restore('{"p":"<|v7|>"}', spans) == '{"p":"<|v7|>"}'


def test_the_extensions_round_trip_through_model_info():
    masks = ValuePlaceholders([".H5AD", "csv", ""])
    assert masks.extensions == ["csv", "h5ad"]
    assert ValuePlaceholders.from_dict(json.loads(json.dumps(masks.to_dict()))).extensions == ["csv", "h5ad"]
