"""The singlecell executor: every tool of ``grammars/singlecell/tools.json`` on scanpy.

All calls of a list act on one AnnData. A list that does not start with ``read_h5ad`` starts
from :func:`make_dataset`, a small synthetic PBMC-like data set generated deterministically;
``read_h5ad`` of a missing ``.h5ad`` path writes that data set there first, so every sampled
pipeline can start. Plots are drawn with matplotlib's Agg backend and saved as
``figures/NN_<tool>.png`` inside the working directory (NN is the call's 1-based position).

Where scanpy would fail on a value that only this small data set makes impossible, the call is
adapted rather than failed, and the result says so under ``"adjusted"``: ``n_comps`` and
``n_pcs`` are capped at what the data has, ``n_neighbors`` at the number of cells, the t-SNE
perplexity at a third of the cells, and ``rank_genes_groups`` skips groups of a single cell.
A call that cannot run at all (a filter that removes every cell, an unknown gene or obs key)
raises :class:`~grammar_engine.executors.ExecutionError`, and so do the count-based steps
(filters, QC metrics, normalize_total, log1p, seurat_v3 genes) on data that ``scale`` or
``regress_out`` has centered: scanpy would run them into NaNs or meaningless numbers.
"""

from __future__ import annotations

import contextlib
import random
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # never switch a backend someone already uses
    matplotlib.use("Agg")

import anndata
import numpy as np
import pandas as pd
import scanpy as sc
from matplotlib import pyplot as plt
from scipy import sparse

from . import ExecutionError, check_arguments, relative_to_workdir, resolve_path, unknown_tool

__all__ = ["CELL_TYPES", "GENE_SETS", "MARKER_GENES", "Session", "TOOLS", "gene_names", "make_dataset"]

# -- the synthetic data set --------------------------------------------------------------------

# Cell type -> (share of cells, marker genes), after the PBMC 3k annotation.
CELL_TYPES: dict[str, tuple[float, tuple[str, ...]]] = {
    "CD4 T cells": (0.27, ("IL7R", "CD3E", "CD3D", "LDHB", "CCR7", "TCF7", "LEF1")),
    "CD14+ Monocytes": (0.20, ("CD14", "LYZ", "S100A8", "S100A9", "FCN1", "CST3", "TYROBP")),
    "B cells": (0.15, ("MS4A1", "CD79A", "CD79B", "BANK1", "HLA-DRA", "CD74", "HLA-DPB1")),
    "CD8 T cells": (0.13, ("CD8A", "CD8B", "CD3E", "CD3D", "GZMK", "CCL5")),
    "NK cells": (0.12, ("GNLY", "NKG7", "GZMB", "PRF1", "KLRD1", "GZMA", "FCGR3A")),
    "FCGR3A+ Monocytes": (0.08, ("FCGR3A", "MS4A7", "LST1", "AIF1", "CST3", "IFITM3", "FCER1G")),
    "Megakaryocytes": (0.05, ("PPBP", "PF4", "GNG11", "SPARC", "SDPR")),
}
MARKER_GENES: tuple[str, ...] = tuple(dict.fromkeys(g for _, genes in CELL_TYPES.values() for g in genes))
_HOUSEKEEPING = ("MALAT1", "B2M", "TMSB4X", "ACTB", "FTL", "FTH1", "EEF1A1", "TPT1", "GAPDH")
_MT = ("MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3", "MT-ND3", "MT-ND4L",
       "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB")
_RIBO = ("RPS2", "RPS3", "RPS6", "RPS12", "RPS18", "RPS27", "RPS27A", "RPL3", "RPL7", "RPL10", "RPL13",
         "RPL13A", "RPL21", "RPL32", "RPL34", "RPLP1")
_HB = ("HBA1", "HBA2", "HBB")
# Seurat's cell-cycle genes (Tirosh et al. 2016), a subset.
_S_GENES = ("MCM5", "PCNA", "TYMS", "FEN1", "MCM2", "MCM4", "RRM1", "UNG", "GINS2", "MCM6", "CDCA7",
            "DTL", "PRIM1", "UHRF1", "HELLS", "RFC2", "NASP", "RAD51AP1")
_G2M_GENES = ("HMGB2", "CDK1", "NUSAP1", "UBE2C", "BIRC5", "TPX2", "TOP2A", "NDC80", "CKS2", "NUF2",
              "CKS1B", "MKI67", "TMPO", "CENPF", "TACC3", "SMC4", "CCNB2", "CKAP2L")
_FILLER_FAMILIES = ("ZNF", "TMEM", "CCDC", "ANKRD", "LRRC", "SLC25A", "KLHL", "TRIM", "DDX", "USP",
                    "FAM", "ZBTB", "ARHGAP", "PLEKH", "WDR", "SNX")
_NAMED = tuple(dict.fromkeys(MARKER_GENES + _HOUSEKEEPING + _MT + _RIBO + _HB + _S_GENES + _G2M_GENES))
SAMPLES = {"sample1": "batch1", "sample2": "batch1", "sample3": "batch2", "sample4": "batch2"}

# How calculate_qc_metrics finds each gene set (scanpy tutorial conventions).
GENE_SETS: dict[str, Callable[[pd.Index], np.ndarray]] = {
    "mt": lambda names: np.asarray(names.str.upper().str.startswith("MT-")),
    "ribo": lambda names: np.asarray(names.str.upper().str.startswith(("RPS", "RPL"))),
    "hb": lambda names: np.asarray(names.str.upper().str.contains(r"^HB[^(P)]", regex=True)),
}


def gene_names(n_genes: int) -> list[str]:
    """The ``n_genes`` var names of :func:`make_dataset`: named genes first, then gene-like fillers.

    Raises
    ------
    ExecutionError
        When ``n_genes`` is smaller than the named genes (markers, MT-, ribosomal, hemoglobin and
        cell-cycle genes).
    """
    named = list(_NAMED)
    if n_genes < len(named):
        raise ExecutionError(f"make_dataset needs n_genes >= {len(named)}, got {n_genes}")
    fillers: list[str] = []
    number = 1
    while len(named) + len(fillers) < n_genes:
        fillers += [f"{family}{number}" for family in _FILLER_FAMILIES]
        number += 1
    return named + fillers[: n_genes - len(named)]


def make_dataset(seed: int = 0, n_cells: int = 300, n_genes: int = 1000) -> anndata.AnnData:
    """A small PBMC-like single-cell data set, the same for the same arguments.

    Counts are negative binomial. Each cell type of :data:`CELL_TYPES` raises its marker genes
    and a private program of filler genes, so clustering finds the types again; 13 ``MT-`` genes,
    ribosomal ``RPS``/``RPL`` and hemoglobin ``HB`` genes make the QC gene sets real, a few cells
    are stressed (high mitochondrial fraction), and cycling cells raise S or G2/M genes.

    Parameters
    ----------
    seed
        Seed of the generator (``numpy.random.default_rng``).
    n_cells, n_genes
        Size of the data set (``n_genes`` at least the 119 named genes).

    Returns
    -------
    AnnData
        Raw counts in ``X`` (CSR, float32); ``obs`` columns ``cell_type``, ``sample``, ``batch``,
        ``phase`` (categorical) and ``S_score``, ``G2M_score``; a fresh copy on every call.
    """
    return _dataset(int(seed), int(n_cells), int(n_genes)).copy()


@lru_cache(maxsize=4)
def _dataset(seed: int, n_cells: int, n_genes: int) -> anndata.AnnData:
    if n_cells < 20:
        raise ExecutionError(f"make_dataset needs n_cells >= 20, got {n_cells}")
    rng = np.random.default_rng(seed)
    genes = gene_names(n_genes)
    index = {gene: i for i, gene in enumerate(genes)}
    types = list(CELL_TYPES)
    shares = np.array([CELL_TYPES[t][0] for t in types])
    labels = rng.choice(len(types), size=n_cells, p=shares / shares.sum())

    base = np.exp(rng.normal(-0.2, 1.0, n_genes)).clip(0.02, 8.0)  # filler genes
    for gene in MARKER_GENES:
        base[index[gene]] = 1.5  # present everywhere, so filters and plots always find them
    for gene in _HOUSEKEEPING:
        base[index[gene]] = rng.uniform(10, 40)
    for gene in _MT:
        base[index[gene]] = rng.uniform(1.0, 3.0)
    for gene in _RIBO:
        base[index[gene]] = rng.uniform(4, 12)
    for gene in _HB:
        base[index[gene]] = 0.05
    for gene in _S_GENES + _G2M_GENES:
        base[index[gene]] = 0.3
    mu = np.tile(base, (n_cells, 1))

    filler_ids = np.arange(len(_NAMED), n_genes)
    # one block of filler genes per cell type; the remaining blocks stay unprogrammed
    programs = np.array_split(rng.permutation(filler_ids), len(types) * 3)
    for t, cell_type in enumerate(types):
        rows = labels == t
        for gene in CELL_TYPES[cell_type][1]:
            mu[rows, index[gene]] *= 12.0
        if len(programs[t]):
            mu[np.ix_(rows, programs[t])] *= 4.0

    phase = rng.choice(3, size=n_cells, p=[0.8, 0.1, 0.1])  # G1, S, G2M
    for code, phase_genes in ((1, _S_GENES), (2, _G2M_GENES)):
        mu[np.ix_(phase == code, [index[g] for g in phase_genes])] *= 8.0
    stressed = rng.random(n_cells) < 0.06
    mu[np.ix_(stressed, [index[g] for g in _MT])] *= 8.0

    samples = rng.choice(list(SAMPLES), size=n_cells)
    depth = np.exp(rng.normal(0.0, 0.35, n_cells)) * np.where(
        np.array([SAMPLES[s] for s in samples]) == "batch2", 1.3, 1.0
    )
    mu *= depth[:, None]
    dispersion = 3.0
    counts = rng.negative_binomial(dispersion, dispersion / (dispersion + mu)).astype(np.float32)

    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([types[i] for i in labels], categories=types),
            "sample": pd.Categorical(samples, categories=list(SAMPLES)),
            "batch": pd.Categorical([SAMPLES[s] for s in samples], categories=sorted(set(SAMPLES.values()))),
        },
        index=[f"cell{i:04d}" for i in range(n_cells)],
    )
    adata = anndata.AnnData(X=sparse.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    # Cell-cycle scores as Seurat computes them, on a normalized copy.
    scored = adata.copy()
    with _quiet():
        sc.pp.normalize_total(scored, target_sum=1e4)
        sc.pp.log1p(scored)
        sc.tl.score_genes_cell_cycle(scored, s_genes=list(_S_GENES), g2m_genes=list(_G2M_GENES))
    for key in ("S_score", "G2M_score"):
        adata.obs[key] = scored.obs[key].to_numpy(dtype=np.float64)
    adata.obs["phase"] = pd.Categorical(scored.obs["phase"], categories=["G1", "S", "G2M"])
    return adata


# -- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Silence scanpy's log and collect warnings instead of printing them."""
    verbosity = sc.settings.verbosity
    sc.settings.verbosity = 0
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        sc.settings.verbosity = verbosity


@contextlib.contextmanager
def _igraph_seed(seed: int) -> Iterator[None]:
    """Seed igraph's generator for one call, as scanpy does for its igraph flavors."""
    import igraph

    igraph.set_random_number_generator(random.Random(seed))
    try:
        yield
    finally:
        igraph.set_random_number_generator(random)


def _has_negative(adata: anndata.AnnData) -> bool:
    x = adata.X
    values = x.data if sparse.issparse(x) else np.asarray(x)
    return bool(values.size) and float(values.min()) < 0


def _require_counts_like(adata: anndata.AnnData, tool: str) -> None:
    if _has_negative(adata):
        raise ExecutionError(
            f"{tool} needs non-negative data, but X has negative values (it was scaled or regressed)",
            hint=f"run {tool} before scale and regress_out",
        )


def _shape(adata: anndata.AnnData) -> dict[str, int]:
    return {"n_obs": int(adata.n_obs), "n_vars": int(adata.n_vars)}


def _check_obs_key(adata: anndata.AnnData, key: str, argument: str, *, categorical: bool = False) -> None:
    if key not in adata.obs.columns:
        raise ExecutionError(
            f"{argument} {key!r} is not an obs key",
            hint=f"obs keys now: {sorted(map(str, adata.obs.columns))}",
        )
    if categorical:
        column = adata.obs[key]
        if isinstance(column.dtype, pd.CategoricalDtype):
            return
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise ExecutionError(
                f"{argument} {key!r} is numeric; grouping needs a categorical obs key",
                hint="group by cell_type, sample, batch, phase, leiden or louvain",
            )
        adata.obs[key] = column.astype(str).astype("category")


def _check_keys(adata: anndata.AnnData, keys: Sequence[str], argument: str, *, genes_only: bool = False) -> None:
    if not isinstance(keys, list) or not keys:
        raise ExecutionError(f"{argument} must be a non-empty list, got {keys!r}")
    for key in keys:
        if key in adata.var_names:
            continue
        if not genes_only and key in adata.obs.columns:
            continue
        what = "a gene" if genes_only else "a gene nor an obs key"
        raise ExecutionError(
            f"{argument} {key!r} is not {what} of the data",
            hint="obs keys now: " + ", ".join(sorted(map(str, adata.obs.columns)))
            if not genes_only else "genes can be removed by filter_genes",
        )


def _need(adata: anndata.AnnData, present: bool, tool: str, first: str) -> None:
    if not present:
        raise ExecutionError(f"{tool} needs {first} to run first")


def _pca_limit(adata: anndata.AnnData) -> int:
    """The most principal components the data allows (scanpy uses highly variable genes if set)."""
    n_features = adata.n_vars
    if "highly_variable" in adata.var.columns:
        n_features = int(adata.var["highly_variable"].sum())
    return min(adata.n_obs, n_features) - 1


# -- tools -------------------------------------------------------------------------------------
# Each tool takes the session first and its contract arguments as keyword-only parameters, with
# the contract defaults, and returns a JSON-ready dict.


def read_h5ad(session: Session, *, path: str) -> dict[str, Any]:
    """Load an ``.h5ad`` file; a missing ``.h5ad`` path gets the generated data set first."""
    file = resolve_path(session.workdir, path)
    generated = False
    if not file.exists():
        if file.suffix != ".h5ad":
            raise ExecutionError(f"no file {path!r} in the working directory", hint="read an .h5ad file")
        file.parent.mkdir(parents=True, exist_ok=True)
        make_dataset().write_h5ad(file)
        generated = True
    session.adata = anndata.read_h5ad(file)
    return {"path": relative_to_workdir(session.workdir, file), **_shape(session.adata), "generated": generated}


def write_h5ad(session: Session, *, path: str) -> dict[str, Any]:
    """Write the current AnnData to ``path`` inside the working directory."""
    file = resolve_path(session.workdir, path)
    file.parent.mkdir(parents=True, exist_ok=True)
    session.data.write_h5ad(file)
    return {"path": relative_to_workdir(session.workdir, file), **_shape(session.data)}


def _one_criterion(tool: str, criteria: Mapping[str, int | None]) -> tuple[str, int]:
    given = {name: value for name, value in criteria.items() if value is not None}
    if len(given) != 1:
        raise ExecutionError(
            f"{tool} takes exactly one of {list(criteria)}, got {sorted(given) or 'none'}",
            hint="scanpy filters by one criterion per call: make one call per criterion",
        )
    ((name, value),) = given.items()
    return name, int(value)


def filter_cells(session: Session, *, min_genes: int | None = None, min_counts: int | None = None) -> dict[str, Any]:
    """Remove cells with fewer than ``min_genes`` detected genes or ``min_counts`` counts."""
    name, value = _one_criterion("filter_cells", {"min_genes": min_genes, "min_counts": min_counts})
    adata = session.data
    _require_counts_like(adata, "filter_cells")
    before = adata.n_obs
    sc.pp.filter_cells(adata, **{name: value})
    if adata.n_obs == 0:
        raise ExecutionError(f"filter_cells({name}={value}) removed all {before} cells")
    return {"removed": before - adata.n_obs, **_shape(adata)}


def filter_genes(session: Session, *, min_cells: int | None = None, min_counts: int | None = None) -> dict[str, Any]:
    """Remove genes detected in fewer than ``min_cells`` cells or with fewer than ``min_counts`` counts."""
    name, value = _one_criterion("filter_genes", {"min_cells": min_cells, "min_counts": min_counts})
    adata = session.data
    _require_counts_like(adata, "filter_genes")
    before = adata.n_vars
    sc.pp.filter_genes(adata, **{name: value})
    if adata.n_vars == 0:
        raise ExecutionError(f"filter_genes({name}={value}) removed all {before} genes")
    return {"removed": before - adata.n_vars, **_shape(adata)}


def calculate_qc_metrics(session: Session, *, qc_vars: list[str]) -> dict[str, Any]:
    """QC metrics per cell and gene; ``qc_vars`` names gene sets (mt, ribo, hb) marked in ``var``."""
    adata = session.data
    _require_counts_like(adata, "calculate_qc_metrics")
    if not isinstance(qc_vars, list):
        raise ExecutionError(f"qc_vars must be a list, got {qc_vars!r}")
    for name in qc_vars:
        if name in GENE_SETS:
            adata.var[name] = GENE_SETS[name](adata.var_names)
        elif not (name in adata.var.columns and pd.api.types.is_bool_dtype(adata.var[name])):
            raise ExecutionError(f"unknown gene set {name!r}", hint=f"use one of {sorted(GENE_SETS)}")
    # scanpy's default percent_top (50, 100, 200, 500) fails on data with fewer genes
    percent_top = [top for top in (50, 100, 200, 500) if top < adata.n_vars] or None
    sc.pp.calculate_qc_metrics(adata, qc_vars=qc_vars, percent_top=percent_top, log1p=True, inplace=True)
    keys = ["n_genes_by_counts", "total_counts"] + [f"pct_counts_{name}" for name in qc_vars]
    return {"median_" + key: float(adata.obs[key].median()) for key in keys} | _shape(adata)


def normalize_total(session: Session, *, target_sum: float | None = None) -> dict[str, Any]:
    """Scale every cell to the same total count (``target_sum``, else the median total)."""
    adata = session.data
    _require_counts_like(adata, "normalize_total")
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    used = float(target_sum) if target_sum is not None else float(np.median(totals[totals > 0]))
    return {"target_sum": used, **_shape(adata)}


def log1p(session: Session) -> dict[str, Any]:
    """Replace X by log(1 + X)."""
    adata = session.data
    _require_counts_like(adata, "log1p")
    sc.pp.log1p(adata)
    return _shape(adata)


def highly_variable_genes(
    session: Session, *, n_top_genes: int | None = None, flavor: str = "seurat"
) -> dict[str, Any]:
    """Mark highly variable genes in ``var['highly_variable']``."""
    adata = session.data
    if flavor not in ("seurat", "seurat_v3", "cell_ranger"):
        raise ExecutionError(f"flavor must be seurat, seurat_v3 or cell_ranger, got {flavor!r}")
    if flavor == "seurat_v3":
        try:
            import skmisc.loess  # noqa: F401
        except ImportError as exc:
            raise ExecutionError(
                "flavor 'seurat_v3' needs scikit-misc", hint="pip install scikit-misc"
            ) from exc
    # every flavor reads expression levels (seurat: log1p data, seurat_v3: counts); after scale
    # they are z-scores and cell_ranger marks no gene at all
    _require_counts_like(adata, "highly_variable_genes")
    kwargs: dict[str, Any] = {"flavor": flavor}
    if n_top_genes is not None:
        kwargs["n_top_genes"] = int(n_top_genes)
    try:
        sc.pp.highly_variable_genes(adata, **kwargs)
    except ValueError as exc:
        hint = "flavor 'seurat' expects log1p-transformed data: run normalize_total and log1p first"
        raise ExecutionError(f"highly_variable_genes failed: {exc}", hint=hint if flavor == "seurat" else "") from exc
    marked = int(adata.var["highly_variable"].sum())
    if marked == 0:
        raise ExecutionError("highly_variable_genes marked no gene", hint="give n_top_genes")
    return {"flavor": flavor, "n_highly_variable": marked, **_shape(adata)}


def scale(session: Session, *, max_value: float | None = None) -> dict[str, Any]:
    """Scale every gene to zero mean and unit variance, clipping at ``max_value``."""
    adata = session.data
    sc.pp.scale(adata, max_value=max_value)
    return {"max_value": max_value, **_shape(adata)}


def regress_out(session: Session, *, keys: list[str]) -> dict[str, Any]:
    """Regress out numeric obs keys (or one categorical key) from X."""
    adata = session.data
    if not isinstance(keys, list) or not keys:
        raise ExecutionError(f"keys must be a non-empty list of obs keys, got {keys!r}")
    for key in keys:
        _check_obs_key(adata, key, "keys")
    categorical = [k for k in keys if not pd.api.types.is_numeric_dtype(adata.obs[k])]
    if categorical and len(keys) > 1:
        raise ExecutionError(
            f"regress_out takes numeric obs keys or a single categorical one, got {keys}",
            hint=f"regress {categorical[0]!r} out in its own call",
        )
    if categorical and not isinstance(adata.obs[keys[0]].dtype, pd.CategoricalDtype):
        adata.obs[keys[0]] = adata.obs[keys[0]].astype(str).astype("category")
    sc.pp.regress_out(adata, keys, n_jobs=1)
    return {"keys": list(keys), **_shape(adata)}


def _run_pca(adata: anndata.AnnData, n_comps: int | None, adjusted: dict[str, Any]) -> int:
    limit = _pca_limit(adata)
    if limit < 1:
        raise ExecutionError(f"pca needs at least 2 cells and 2 genes, the data has {adata.n_obs} x {adata.n_vars}")
    requested = int(n_comps) if n_comps is not None else 50
    used = min(requested, limit)
    if n_comps is not None and used != requested:
        adjusted["n_comps"] = used
    sc.pp.pca(adata, n_comps=used, random_state=0)
    return used


def pca(session: Session, *, n_comps: int | None = None) -> dict[str, Any]:
    """Principal component analysis (on the highly variable genes when they are marked)."""
    adata = session.data
    adjusted: dict[str, Any] = {}
    used = _run_pca(adata, n_comps, adjusted)
    ratio = adata.uns["pca"]["variance_ratio"][:5]
    result: dict[str, Any] = {"n_comps": used, "variance_ratio_first": [round(float(r), 4) for r in ratio]}
    return result | ({"adjusted": adjusted} if adjusted else {}) | _shape(adata)


def _ensure_representation(adata: anndata.AnnData, n_pcs: int | None, adjusted: dict[str, Any]) -> int | None:
    """Make sure X_pca can serve ``n_pcs`` (scanpy computes PCA itself when X_pca is missing)."""
    if adata.n_vars <= sc.settings.N_PCS:
        return n_pcs  # scanpy uses X directly
    if "X_pca" not in adata.obsm:
        _run_pca(adata, n_pcs, adjusted)
    available = adata.obsm["X_pca"].shape[1]
    if n_pcs is not None and n_pcs > available:
        adjusted["n_pcs"] = available
        return available
    return n_pcs


def neighbors(session: Session, *, n_neighbors: int = 15, n_pcs: int | None = None) -> dict[str, Any]:
    """The k-nearest-neighbor graph of the cells (on X_pca, computed if missing)."""
    adata = session.data
    adjusted: dict[str, Any] = {}
    n_pcs = _ensure_representation(adata, None if n_pcs is None else int(n_pcs), adjusted)
    k = int(n_neighbors)
    if k >= adata.n_obs:
        k = max(2, adata.n_obs - 1)
        adjusted["n_neighbors"] = k
    sc.pp.neighbors(adata, n_neighbors=k, n_pcs=n_pcs, random_state=0)
    return {"n_neighbors": k, "n_pcs": n_pcs} | ({"adjusted": adjusted} if adjusted else {}) | _shape(adata)


def umap(session: Session) -> dict[str, Any]:
    """UMAP embedding of the neighbor graph, in ``obsm['X_umap']``."""
    adata = session.data
    _need(adata, "neighbors" in adata.uns, "umap", "neighbors")
    sc.tl.umap(adata, random_state=0)
    return {"embedding": "X_umap", **_shape(adata)}


def tsne(session: Session) -> dict[str, Any]:
    """t-SNE embedding (on X_pca, computed if missing), in ``obsm['X_tsne']``."""
    adata = session.data
    if adata.n_obs < 4:
        raise ExecutionError(f"tsne needs at least 4 cells, the data has {adata.n_obs}")
    adjusted: dict[str, Any] = {}
    _ensure_representation(adata, None, adjusted)
    perplexity = min(30.0, (adata.n_obs - 1) / 3)
    if perplexity < 30:
        adjusted["perplexity"] = round(perplexity, 2)
    sc.tl.tsne(adata, perplexity=perplexity, random_state=0, n_jobs=1)
    return {"embedding": "X_tsne"} | ({"adjusted": adjusted} if adjusted else {}) | _shape(adata)


def _clusters(adata: anndata.AnnData, key: str) -> dict[str, Any]:
    sizes = adata.obs[key].value_counts(sort=False)
    return {"key": key, "n_clusters": int((sizes > 0).sum()), "sizes": {str(k): int(v) for k, v in sizes.items()}}


def leiden(session: Session, *, resolution: float = 1.0) -> dict[str, Any]:
    """Leiden clustering of the neighbor graph into ``obs['leiden']``."""
    adata = session.data
    _need(adata, "neighbors" in adata.uns, "leiden", "neighbors")
    # igraph's implementation: scanpy's announced default, faster than leidenalg
    sc.tl.leiden(adata, resolution=float(resolution), flavor="igraph", n_iterations=2, directed=False, random_state=0)
    return _clusters(adata, "leiden") | _shape(adata)


def louvain(session: Session, *, resolution: float = 1.0) -> dict[str, Any]:
    """Louvain clustering of the neighbor graph into ``obs['louvain']``.

    Uses ``sc.tl.louvain`` when the ``louvain`` package is installed; otherwise igraph's
    multilevel (Louvain) algorithm with the same resolution, stored the way scanpy stores it.
    """
    adata = session.data
    _need(adata, "neighbors" in adata.uns, "louvain", "neighbors")
    try:
        import louvain as _louvain  # noqa: F401
    except ImportError:
        _igraph_louvain(adata, float(resolution))
    else:
        sc.tl.louvain(adata, resolution=float(resolution), random_state=0)
    return _clusters(adata, "louvain") | _shape(adata)


def _igraph_louvain(adata: anndata.AnnData, resolution: float) -> None:
    import igraph

    graph = sparse.triu(adata.obsp["connectivities"], k=1).tocoo()
    g = igraph.Graph(n=adata.n_obs, edges=list(zip(graph.row.tolist(), graph.col.tolist())), directed=False)
    g.es["weight"] = graph.data.tolist()
    with _igraph_seed(0):
        membership = np.asarray(g.community_multilevel(weights="weight", resolution=resolution).membership)
    # number clusters by decreasing size, as scanpy does
    order = np.argsort(-np.bincount(membership), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = rank[membership].astype(str)
    adata.obs["louvain"] = pd.Categorical(labels, categories=[str(i) for i in range(len(order))])
    adata.uns["louvain"] = {"params": {"resolution": resolution, "random_state": 0}}


def rank_genes_groups(session: Session, *, groupby: str, method: str = "t-test") -> dict[str, Any]:
    """Marker genes of each group of ``groupby`` against the rest."""
    adata = session.data
    if method not in ("t-test", "wilcoxon", "logreg"):
        raise ExecutionError(f"method must be t-test, wilcoxon or logreg, got {method!r}")
    _check_obs_key(adata, groupby, "groupby", categorical=True)
    sizes = adata.obs[groupby].value_counts()
    testable = [str(g) for g in adata.obs[groupby].cat.categories if sizes.get(g, 0) >= 2]
    if len(testable) < 2:
        raise ExecutionError(
            f"rank_genes_groups needs two groups of {groupby!r} with at least 2 cells, found {testable}"
        )
    adjusted: dict[str, Any] = {}
    groups: str | list[str] = "all"
    if len(testable) < len(sizes):
        groups = testable
        adjusted["skipped_groups"] = sorted(str(g) for g in sizes.index if str(g) not in testable)
    kwargs: dict[str, Any] = {"max_iter": 200} if method == "logreg" else {}
    sc.tl.rank_genes_groups(adata, groupby, groups=groups, method=method, **kwargs)
    names = adata.uns["rank_genes_groups"]["names"]
    top = {group: [str(gene) for gene in names[group][:5]] for group in names.dtype.names}
    return {"groupby": groupby, "method": method, "top_genes": top} | (
        {"adjusted": adjusted} if adjusted else {}
    ) | _shape(adata)


def _save_figure(session: Session, tool: str) -> dict[str, Any]:
    path = session.workdir / "figures" / f"{session.index + 1:02d}_{tool}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        plt.gcf().savefig(path, dpi=72, bbox_inches="tight")
    finally:
        plt.close("all")
    return {"path": relative_to_workdir(session.workdir, path)}


def _embedding_plot(session: Session, tool: str, basis: str, color: list[str]) -> dict[str, Any]:
    adata = session.data
    _need(adata, f"X_{basis}" in adata.obsm, tool, basis)
    _check_keys(adata, color, "color")
    getattr(sc.pl, basis)(adata, color=color, show=False)
    return _save_figure(session, tool)


def plot_umap(session: Session, *, color: list[str]) -> dict[str, Any]:
    """Scatter plot of the UMAP embedding colored by genes or obs keys."""
    return _embedding_plot(session, "plot_umap", "umap", color)


def plot_tsne(session: Session, *, color: list[str]) -> dict[str, Any]:
    """Scatter plot of the t-SNE embedding colored by genes or obs keys."""
    return _embedding_plot(session, "plot_tsne", "tsne", color)


def plot_pca(session: Session, *, color: list[str]) -> dict[str, Any]:
    """Scatter plot of the first two principal components colored by genes or obs keys."""
    return _embedding_plot(session, "plot_pca", "pca", color)


def plot_violin(session: Session, *, keys: list[str], groupby: str | None = None) -> dict[str, Any]:
    """Violin plots of genes or numeric obs keys, optionally per group."""
    adata = session.data
    _check_keys(adata, keys, "keys")
    if groupby is not None:
        _check_obs_key(adata, groupby, "groupby", categorical=True)
    sc.pl.violin(adata, keys, groupby=groupby, show=False)
    return _save_figure(session, "plot_violin")


def plot_dotplot(session: Session, *, var_names: list[str], groupby: str) -> dict[str, Any]:
    """Dot plot of genes per group: dot size = fraction expressing, color = mean expression."""
    adata = session.data
    _check_keys(adata, var_names, "var_names", genes_only=True)
    _check_obs_key(adata, groupby, "groupby", categorical=True)
    sc.pl.dotplot(adata, var_names, groupby=groupby, show=False)
    return _save_figure(session, "plot_dotplot")


def plot_rank_genes_groups(session: Session, *, n_genes: int = 20) -> dict[str, Any]:
    """The top ``n_genes`` marker genes of each group from rank_genes_groups."""
    adata = session.data
    _need(adata, "rank_genes_groups" in adata.uns, "plot_rank_genes_groups", "rank_genes_groups")
    available = len(adata.uns["rank_genes_groups"]["names"])
    sc.pl.rank_genes_groups(adata, n_genes=max(1, min(int(n_genes), available)), sharey=False, show=False)
    return _save_figure(session, "plot_rank_genes_groups")


def plot_highly_variable_genes(session: Session) -> dict[str, Any]:
    """Dispersions (or variances) against means, highly variable genes highlighted."""
    adata = session.data
    _need(adata, "highly_variable" in adata.var.columns, "plot_highly_variable_genes", "highly_variable_genes")
    sc.pl.highly_variable_genes(adata, show=False)
    return _save_figure(session, "plot_highly_variable_genes")


def subset_cells(session: Session, *, key: str, values: list[str]) -> dict[str, Any]:
    """Keep the cells whose obs ``key`` is one of ``values`` (compared as strings)."""
    adata = session.data
    _check_obs_key(adata, key, "key")
    if not isinstance(values, list) or not values:
        raise ExecutionError(f"values must be a non-empty list, got {values!r}")
    labels = adata.obs[key].astype(str)
    mask = labels.isin([str(v) for v in values]).to_numpy()
    if not mask.any():
        present = sorted(labels.unique())[:12]
        raise ExecutionError(f"no cell has {key} in {values}", hint=f"values of {key}: {present}")
    before = adata.n_obs
    session.adata = adata[mask].copy()
    return {"removed": before - int(mask.sum()), **_shape(session.adata)}


TOOLS: dict[str, Callable[..., dict[str, Any]]] = {
    function.__name__: function
    for function in (
        read_h5ad, write_h5ad, filter_cells, filter_genes, calculate_qc_metrics, normalize_total, log1p,
        highly_variable_genes, scale, regress_out, pca, neighbors, umap, tsne, leiden, louvain,
        rank_genes_groups, plot_umap, plot_tsne, plot_pca, plot_violin, plot_dotplot,
        plot_rank_genes_groups, plot_highly_variable_genes, subset_cells,
    )
}
"""Every singlecell tool by name."""


class Session:
    """Runs singlecell calls on one AnnData inside one working directory.

    Attributes
    ----------
    adata
        The current data (None until the first call; :func:`make_dataset` unless the list
        starts with ``read_h5ad``).
    index
        0-based position of the call being run (names the figure files).
    """

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)
        self.adata: anndata.AnnData | None = None
        self.index = 0

    @property
    def data(self) -> anndata.AnnData:
        """The current AnnData, generated on first use."""
        if self.adata is None:
            self.adata = make_dataset()
        return self.adata

    def tool_names(self) -> list[str]:
        """The tools this session runs."""
        return sorted(TOOLS)

    def call(self, index: int, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Run one call; warnings the libraries emit are returned under ``"warnings"``."""
        function = TOOLS.get(name)
        if function is None:
            raise unknown_tool("singlecell", name, TOOLS)
        args = check_arguments(function, name, arguments)
        self.index = index
        with _quiet() as caught:
            result = function(self, **args)
        messages = list(dict.fromkeys(str(w.message).strip().splitlines()[0][:160] for w in caught))
        if messages:
            result["warnings"] = messages
        return result
