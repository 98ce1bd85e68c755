"""The single-cell (scanpy) domain grammar: hand-picked phrasings parse to exact calls.

The phrasings cover every tool and enum value of ``grammars/singlecell/tools.json``, numbers in
digits, words and shorthands, gene lists, multi-step instructions and reversed order ("before X,
Y"; "X, but Y first"). The recorded instructions must parse to their gold calls (>= 90% of those
with gold calls), and the unsupported ones must be rejected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import grammar_engine.grammar as G
from grammar_engine.errors import InstructionParseError
from grammar_engine.slots import SlotKind

DOMAIN = Path(__file__).resolve().parent.parent / "grammars" / "singlecell"


def c(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


@pytest.fixture(scope="module")
def grammar() -> G.Grammar:
    return G.load(DOMAIN)


CASES: list[tuple[str, list[dict[str, Any]]]] = [
    # -- read / write ----------------------------------------------------------------------
    ("Load data/pbmc3k.h5ad", [c("read_h5ad", path="data/pbmc3k.h5ad")]),
    ("adata = sc.read_h5ad('data/raw.h5ad')", [c("read_h5ad", path="data/raw.h5ad")]),
    ("Save the processed object to results/processed.h5ad", [c("write_h5ad", path="results/processed.h5ad")]),
    ("export to output.h5ad", [c("write_h5ad", path="output.h5ad")]),
    # -- filtering: one criterion per call ---------------------------------------------------
    ("filter cells with fewer than 200 genes", [c("filter_cells", min_genes=200)]),
    ("cells with less than 500 counts should be removed", [c("filter_cells", min_counts=500)]),
    ("keep cells with at least three hundred genes", [c("filter_cells", min_genes=300)]),
    ("remove genes detected in fewer than 3 cells", [c("filter_genes", min_cells=3)]),
    ("drop genes with fewer than 10 counts", [c("filter_genes", min_counts=10)]),
    ("filter cells with fewer than 200 genes and genes expressed in fewer than 3 cells",
     [c("filter_cells", min_genes=200), c("filter_genes", min_cells=3)]),
    ("filter cells: min 300 genes, min 1000 counts", [c("filter_cells", min_genes=300), c("filter_cells", min_counts=1000)]),
    ("sc.pp.filter_genes(adata, min_cells=5)", [c("filter_genes", min_cells=5)]),
    # -- QC --------------------------------------------------------------------------------
    ("calculate qc metrics for mitochondrial genes", [c("calculate_qc_metrics", qc_vars=["mt"])]),
    ("compute QC metrics including ribosomal genes", [c("calculate_qc_metrics", qc_vars=["ribo"])]),
    ("qc with hemoglobin genes", [c("calculate_qc_metrics", qc_vars=["hb"])]),
    ("mark mt genes and compute qc", [c("calculate_qc_metrics", qc_vars=["mt"])]),
    # -- normalization, numbers in every spelling ------------------------------------------------
    ("normalize each cell to 10,000 counts", [c("normalize_total", target_sum=10000)]),
    ("normalise to 10k", [c("normalize_total", target_sum=10000)]),
    ("library size normalization to 1e4", [c("normalize_total", target_sum=10000)]),
    ("normalize total counts per cell to ten thousand", [c("normalize_total", target_sum=10000)]),
    ("normalize to CPM", [c("normalize_total", target_sum=1000000)]),
    ("median normalization", [c("normalize_total")]),
    ("log-transform the data", [c("log1p")]),
    ("logarithmize", [c("log1p")]),
    # -- HVGs: every flavor ------------------------------------------------------------------
    ("hvg 2000 seurat_v3", [c("highly_variable_genes", n_top_genes=2000, flavor="seurat_v3")]),
    ("select the top 3000 variable features using the cell_ranger flavor",
     [c("highly_variable_genes", n_top_genes=3000, flavor="cell_ranger")]),
    ("find highly variable genes with the seurat flavor", [c("highly_variable_genes")]),
    ("pick 2.5k HVGs", [c("highly_variable_genes", n_top_genes=2500)]),
    # -- scale / regress out -----------------------------------------------------------------
    ("scale to unit variance", [c("scale")]),
    ("scale the data, clipping values at 10", [c("scale", max_value=10)]),
    ("regress out total_counts and pct_counts_mt", [c("regress_out", keys=["total_counts", "pct_counts_mt"])]),
    ("regress out percent mito", [c("regress_out", keys=["pct_counts_mt"])]),
    # -- PCA, neighbors, embeddings -------------------------------------------------------------
    ("could you please run a PCA with fifty components?", [c("pca", n_comps=50)]),
    ("log1p then pca 50 comps", [c("log1p"), c("pca", n_comps=50)]),
    ("can you compute the neighborhood graph with 30 neighbors?", [c("neighbors", n_neighbors=30)]),
    ("build a kNN graph with 10 neighbors using 40 PCs", [c("neighbors", n_neighbors=10, n_pcs=40)]),
    ("umap", [c("umap")]),
    ("compute a t-SNE", [c("tsne")]),
    # -- clustering ----------------------------------------------------------------------------
    ("leiden res 0.8", [c("leiden", resolution=0.8)]),
    ("cluster the cells with louvain at resolution 0.3", [c("louvain", resolution=0.3)]),
    ("leiden clustering at resolution 1", [c("leiden")]),
    # -- markers: every method ------------------------------------------------------------------
    ("find marker genes for each leiden cluster using wilcoxon",
     [c("rank_genes_groups", groupby="leiden", method="wilcoxon")]),
    ("logistic regression DE on cell_type", [c("rank_genes_groups", groupby="cell_type", method="logreg")]),
    ("t-test markers for louvain groups", [c("rank_genes_groups", groupby="louvain")]),
    ("cluster with leiden and find marker genes using logistic regression",
     [c("leiden"), c("rank_genes_groups", groupby="leiden", method="logreg")]),
    ("find marker genes for each cluster", [c("rank_genes_groups", groupby="leiden")]),
    # -- plots -----------------------------------------------------------------------------------
    ("plot umap colored by leiden and CST3", [c("plot_umap", color=["leiden", "CST3"])]),
    ("Can you plot the expression of CST3, NKG7 and PPBP on the umap?", [c("plot_umap", color=["CST3", "NKG7", "PPBP"])]),
    ("t-SNE plot coloured by n_genes_by_counts", [c("plot_tsne", color=["n_genes_by_counts"])]),
    ("pca plot colored by sample", [c("plot_pca", color=["sample"])]),
    ("violin plot of n_genes_by_counts, total_counts and pct_counts_mt",
     [c("plot_violin", keys=["n_genes_by_counts", "total_counts", "pct_counts_mt"])]),
    ("violin of CST3 and LYZ by leiden", [c("plot_violin", keys=["CST3", "LYZ"], groupby="leiden")]),
    ("dotplot of MS4A1, CD3E, NKG7 grouped by leiden", [c("plot_dotplot", var_names=["MS4A1", "CD3E", "NKG7"], groupby="leiden")]),
    ("show the top 25 marker genes per cluster", [c("plot_rank_genes_groups", n_genes=25)]),
    ("plot the highly variable genes", [c("plot_highly_variable_genes")]),
    ("Plot MT-CO1 and HLA-DRA on the umap", [c("plot_umap", color=["MT-CO1", "HLA-DRA"])]),
    # -- subsetting -------------------------------------------------------------------------------
    ("keep only clusters 0 and 3", [c("subset_cells", key="leiden", values=["0", "3"])]),
    ("keep only cells where sample is ctrl or stim", [c("subset_cells", key="sample", values=["ctrl", "stim"])]),
    ("subset to cell_type B cells", [c("subset_cells", key="cell_type", values=["B cells"])]),
    # -- multi-step -------------------------------------------------------------------------------
    ("1. load data/lung.h5ad 2. filter genes found in less than 10 cells 3. normalize to 1e4 4. log1p",
     [c("read_h5ad", path="data/lung.h5ad"), c("filter_genes", min_cells=10),
      c("normalize_total", target_sum=10000), c("log1p")]),
    ("neighbors -> umap -> leiden", [c("neighbors"), c("umap"), c("leiden")]),
    ("normalize to 10k; log1p; hvg 2000; scale max 10; pca 50",
     [c("normalize_total", target_sum=10000), c("log1p"), c("highly_variable_genes", n_top_genes=2000),
      c("scale", max_value=10), c("pca", n_comps=50)]),
    ("run tsne and plot it colored by louvain", [c("tsne"), c("plot_tsne", color=["louvain"])]),
    ("PCA followed by neighbors and UMAP", [c("pca"), c("neighbors"), c("umap")]),
    # -- reversed order --------------------------------------------------------------------------
    ("before leiden clustering at resolution 0.5, build the kNN graph with 10 neighbors using 40 PCs",
     [c("neighbors", n_neighbors=10, n_pcs=40), c("leiden", resolution=0.5)]),
    ("cluster with louvain (resolution 1.2), but compute neighbors first", [c("neighbors"), c("louvain", resolution=1.2)]),
    ("run umap after computing neighbors", [c("neighbors"), c("umap")]),
    ("after computing the neighbour graph, run umap", [c("neighbors"), c("umap")]),
]

# several named quantities in one list argument ("mito and ribo"): one const_ slot each, so the
# call needs the parser to join a call's slots for the same list argument
MERGED_LIST_CASES: list[tuple[str, list[dict[str, Any]]]] = [
    ("compute qc metrics incl. mito and ribo genes", [c("calculate_qc_metrics", qc_vars=["mt", "ribo"])]),
    ("qc for mitochondrial, ribosomal and hemoglobin genes", [c("calculate_qc_metrics", qc_vars=["mt", "ribo", "hb"])]),
    ("regress out total counts and percent mito", [c("regress_out", keys=["total_counts", "pct_counts_mt"])]),
]

UNSUPPORTED = [
    "run scVI integration on batch",
    "annotate cell types with CellTypist",
    "remove cells with more than 20% mitochondrial counts",
    "plot the umap",
]


@pytest.mark.parametrize(("instruction", "calls"), CASES, ids=[case[0][:60] for case in CASES])
def test_phrasing_parses_to_exact_calls(grammar: G.Grammar, instruction: str, calls: list[dict[str, Any]]) -> None:
    assert grammar.parse(instruction).calls == calls
    distinct = {json.dumps(d.calls, sort_keys=True) for d in grammar.parse_all(instruction, limit=8)}
    assert len(distinct) == 1, f"ambiguous: {distinct}"


@pytest.mark.parametrize(("instruction", "calls"), MERGED_LIST_CASES, ids=[case[0][:60] for case in MERGED_LIST_CASES])
def test_named_quantities_join_into_one_list(grammar: G.Grammar, instruction: str, calls: list[dict[str, Any]]) -> None:
    assert grammar.parse(instruction).calls == calls


# ranked readings: a key-less "find markers" right after a Louvain step is louvain's (over leiden's);
# "log-normalize" is normalize then log1p (over "log", "-", "normalize")
RANKED_CASES: list[tuple[str, list[dict[str, Any]]]] = [
    ("run louvain and then find the marker genes for each cluster", [c("louvain"), c("rank_genes_groups", groupby="louvain")]),
    ("louvain res 0.5, then markers with wilcoxon", [c("louvain", resolution=0.5), c("rank_genes_groups", groupby="louvain", method="wilcoxon")]),
    ("log-normalize to 10k", [c("normalize_total", target_sum=10000), c("log1p")]),
    ("umap colored by leiden, louvain", [c("plot_umap", color=["leiden", "louvain"])]),
    ("louvain 0.4 -> markers -> plot top 10",
     [c("louvain", resolution=0.4), c("rank_genes_groups", groupby="louvain"), c("plot_rank_genes_groups", n_genes=10)]),
]


@pytest.mark.parametrize(("instruction", "calls"), RANKED_CASES, ids=[case[0][:60] for case in RANKED_CASES])
def test_ranked_reading_wins(grammar: G.Grammar, instruction: str, calls: list[dict[str, Any]]) -> None:
    assert grammar.parse(instruction).calls == calls


@pytest.mark.parametrize("number", ["10000", "10,000", "10k", "1e4", "ten thousand"])
def test_number_spellings(grammar: G.Grammar, number: str) -> None:
    assert grammar.parse(f"normalize to {number} counts per cell").calls == [c("normalize_total", target_sum=10000)]


@pytest.mark.parametrize("instruction", UNSUPPORTED)
def test_unsupported_requests_are_rejected(grammar: G.Grammar, instruction: str) -> None:
    with pytest.raises(InstructionParseError):
        grammar.parse(instruction)


def test_gene_names_keep_their_case(grammar: G.Grammar) -> None:
    calls = grammar.parse("dotplot of Cst3, nkg7 and PPBP by cell_type").calls
    assert calls == [c("plot_dotplot", var_names=["Cst3", "nkg7", "PPBP"], groupby="cell_type")]


def test_recorded_instructions_parse_to_their_gold_calls(grammar: G.Grammar) -> None:
    rows = [json.loads(line) for line in (DOMAIN / "recorded.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) >= 60
    gold = [r for r in rows if r.get("calls")]
    correct = 0
    for row in gold:
        try:
            correct += grammar.parse(row["instruction"]).calls == grammar.tools.normalize_calls(row["calls"])
        except InstructionParseError:
            pass
    assert correct / len(gold) >= 0.9, f"{correct}/{len(gold)}"
    for row in rows:
        if "calls" not in row:
            with pytest.raises(InstructionParseError):
                grammar.parse(row["instruction"])


def test_every_tool_has_a_reachable_call_rule(grammar: G.Grammar) -> None:
    from grammar_engine.derivation import reachable_symbols

    reachable = reachable_symbols(grammar.table)
    covered = {t.target for name, t in grammar.table.typed.items() if t.kind is SlotKind.CALL and name in reachable}
    assert {tool.name for tool in grammar.tools} <= covered


def test_static_checks_pass(grammar: G.Grammar) -> None:
    report = grammar.check()
    assert report.ok, [str(d) for d in report.errors]


# -- regressions: each pins a fixed bug or a phrasing the grammar once missed ------------------------

REGRESSION_CASES: list[tuple[str, list[dict[str, Any]]]] = [
    # cell-cycle scores are the obs keys S_score and G2M_score
    ("regress out the cell cycle scores", [c("regress_out", keys=["S_score", "G2M_score"])]),
    ("remove the effect of the cell cycle", [c("regress_out", keys=["S_score", "G2M_score"])]),
    ("regress out the S and G2M scores", [c("regress_out", keys=["S_score", "G2M_score"])]),
    ("regress out total counts, percent mito and cell cycle",
     [c("regress_out", keys=["total_counts", "pct_counts_mt", "S_score", "G2M_score"])]),
    ("violin of the cell cycle scores by leiden", [c("plot_violin", keys=["S_score", "G2M_score"], groupby="leiden")]),
    # genes listed with spaces alone
    ("plot CD3E CD8A MS4A1 on the umap", [c("plot_umap", color=["CD3E", "CD8A", "MS4A1"])]),
    ("umap colored by CD3E CD8A MS4A1", [c("plot_umap", color=["CD3E", "CD8A", "MS4A1"])]),
    ("dotplot of MS4A1 CD79A CD3E NKG7 by leiden", [c("plot_dotplot", var_names=["MS4A1", "CD79A", "CD3E", "NKG7"], groupby="leiden")]),
    ("violin plot of CD3E CD8A by leiden", [c("plot_violin", keys=["CD3E", "CD8A"], groupby="leiden")]),
    # "cell type" with a space is the obs key cell_type
    ("umap colored by cell type", [c("plot_umap", color=["cell_type"])]),
    ("umap colored by leiden and cell type", [c("plot_umap", color=["leiden", "cell_type"])]),
    ("find marker genes for each cell type with wilcoxon", [c("rank_genes_groups", groupby="cell_type", method="wilcoxon")]),
    ("dotplot of CD3E, MS4A1 grouped by cell type", [c("plot_dotplot", var_names=["CD3E", "MS4A1"], groupby="cell_type")]),
    ("subset to cell type B cells", [c("subset_cells", key="cell_type", values=["B cells"])]),
    # noun-phrase requests
    ("umap colored by leiden", [c("plot_umap", color=["leiden"])]),
    ("a violin of n_genes_by_counts", [c("plot_violin", keys=["n_genes_by_counts"])]),
    ("leiden clusters on the umap", [c("plot_umap", color=["leiden"])]),
    # key-less cluster subsets read the leiden clusters
    ("keep clusters 0 and 3", [c("subset_cells", key="leiden", values=["0", "3"])]),
    # lab-notebook framing
    ("For the paper, make a UMAP colored by leiden", [c("plot_umap", color=["leiden"])]),
    ("I need a UMAP colored by cell type for my figure", [c("plot_umap", color=["cell_type"])]),
    # questions, context sentences, "u"/"w/", glosses in parentheses, named defaults
    ("which genes mark the leiden clusters?", [c("rank_genes_groups", groupby="leiden")]),
    ("what genes distinguish the cell types with wilcoxon", [c("rank_genes_groups", groupby="cell_type", method="wilcoxon")]),
    ("Today I'm reanalysing the lung atlas: load data/lung.h5ad", [c("read_h5ad", path="data/lung.h5ad")]),
    ("Hi! I'm new to scanpy. Could you log-transform the data?", [c("log1p")]),
    ("can u run pca pls", [c("pca")]),
    ("pca w/ 30 PCs, then neighbors using all 30 PCs", [c("pca", n_comps=30), c("neighbors", n_pcs=30)]),
    ("leiden w/ res 0.3", [c("leiden", resolution=0.3)]),
    ("plot UMAP w/ leiden and sample", [c("plot_umap", color=["leiden", "sample"])]),
    ("find highly variable genes using the default Seurat flavor", [c("highly_variable_genes")]),
    ("QC: mito + ribo", [c("calculate_qc_metrics", qc_vars=["mt", "ribo"])]),
    ("filter: genes in at least 3 cells; cells with at least 200 genes", [c("filter_genes", min_cells=3), c("filter_cells", min_genes=200)]),
    ("regress out total counts and percent mito (mt genes)", [c("regress_out", keys=["total_counts", "pct_counts_mt"])]),
    ("regress out the cell-cycle keys S_score and G2M_score", [c("regress_out", keys=["S_score", "G2M_score"])]),
    ("regress out the batch effect (obs key batch)", [c("regress_out", keys=["batch"])]),
    ("plot the expression of canonical markers (CD14, LYZ) on the tsne", [c("plot_tsne", color=["CD14", "LYZ"])]),
    ("subset to the cells in leiden cluster 2", [c("subset_cells", key="leiden", values=["2"])]),
    ("subset to cell type B cells", [c("subset_cells", key="cell_type", values=["B cells"])]),
    ("t-test markers per leiden cluster, then plot top 15", [c("rank_genes_groups", groupby="leiden"), c("plot_rank_genes_groups", n_genes=15)]),
    ("which genes mark the clusters? plot the top 5 per cluster", [c("rank_genes_groups", groupby="leiden"), c("plot_rank_genes_groups", n_genes=5)]),
    ("violin of the QC metrics n_genes_by_counts, total_counts by sample", [c("plot_violin", keys=["n_genes_by_counts", "total_counts"], groupby="sample")]),
    ("compute QC metrics for mito (mt) genes", [c("calculate_qc_metrics", qc_vars=["mt"])]),
    ("select HVGs (n=2000)", [c("highly_variable_genes", n_top_genes=2000)]),
    ("run PCA on the HVGs with 50 PCs", [c("pca", n_comps=50)]),
    ("normalise counts (median) then log1p", [c("normalize_total"), c("log1p")]),
    ("normalize - log1p - pca", [c("normalize_total"), c("log1p"), c("pca")]),
    ("log-norm every cell", [c("normalize_total"), c("log1p")]),
    ("could you make me a dotplot of CD3E, CD14 by leiden (for my slides)?", [c("plot_dotplot", var_names=["CD3E", "CD14"], groupby="leiden")]),
    ("run the standard preprocessing: normalize to 1e4, log1p", [c("normalize_total", target_sum=10000), c("log1p")]),
    ("dotplot w/ canonical markers CD3E, MS4A1 grouped by cell type", [c("plot_dotplot", var_names=["CD3E", "MS4A1"], groupby="cell_type")]),
    ("normalize w/ target sum 1e4", [c("normalize_total", target_sum=10000)]),
]


@pytest.mark.parametrize(("instruction", "calls"), REGRESSION_CASES, ids=[case[0][:60] for case in REGRESSION_CASES])
def test_regression_parses_to_exact_calls(grammar: G.Grammar, instruction: str, calls: list[dict[str, Any]]) -> None:
    assert grammar.parse(instruction).calls == calls
    distinct = {json.dumps(d.calls, sort_keys=True) for d in grammar.parse_all(instruction, limit=8)}
    assert len(distinct) == 1, f"ambiguous: {distinct}"


# filter_cells and filter_genes take minimums only: an upper bound is not in the contract
@pytest.mark.parametrize("instruction", [
    "remove cells with more than 5000 genes",
    "filter cells with at most 5000 genes",
    "keep cells with fewer than 2500 genes",
    "filter out genes detected in more than 1000 cells",
    "drop cells with more than 50000 counts",
])
def test_upper_bound_filters_are_rejected(grammar: G.Grammar, instruction: str) -> None:
    with pytest.raises(InstructionParseError):
        grammar.parse(instruction)
