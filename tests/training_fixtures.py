"""A toy domain and corpus in the format `grammar-engine sample` writes, for the training tests.

Twelve tools cover every argument type of the contract (integer, number, boolean, enum,
string, path, SMILES, list of strings, defaults, an unordered molecule pair). Instructions come
from templates with wide value ranges; two templates appear only in the heldout split.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from grammar_engine.tools import ToolRegistry

TOY_TOOLS: dict[str, Any] = {
    "domain": "toy",
    "tools": [
        {"name": "normalize_total", "description": "Normalize counts per cell.",
         "parameters": {"type": "object", "properties": {"target_sum": {"type": "number"}}}},
        {"name": "log1p", "description": "Log-transform.", "parameters": {"type": "object", "properties": {}}},
        {"name": "pca", "description": "PCA.",
         "parameters": {"type": "object", "properties": {"n_comps": {"type": "integer"}}}},
        {"name": "neighbors", "description": "kNN graph.",
         "parameters": {"type": "object", "properties": {"n_neighbors": {"type": "integer", "default": 15},
                                                         "n_pcs": {"type": "integer"}}}},
        {"name": "leiden", "description": "Leiden clustering.",
         "parameters": {"type": "object", "properties": {"resolution": {"type": "number", "default": 1.0}}}},
        {"name": "highly_variable_genes", "description": "HVG selection.",
         "parameters": {"type": "object", "properties": {
             "n_top_genes": {"type": "integer"},
             "flavor": {"type": "string", "enum": ["seurat", "seurat_v3", "cell_ranger"], "default": "seurat"}}}},
        {"name": "plot_umap", "description": "UMAP plot.",
         "parameters": {"type": "object", "properties": {"color": {"type": "array", "items": {"type": "string"}}},
                        "required": ["color"]}},
        {"name": "read_h5ad", "description": "Read a file.",
         "parameters": {"type": "object", "properties": {"path": {"type": "string", "format": "path"}},
                        "required": ["path"]}},
        {"name": "molecular_weight", "description": "Molecular weight.",
         "parameters": {"type": "object", "properties": {"molecule": {"type": "string", "format": "smiles"}},
                        "required": ["molecule"]}},
        {"name": "ring_count", "description": "Rings.",
         "parameters": {"type": "object", "properties": {
             "molecule": {"type": "string", "format": "smiles"},
             "aromatic_only": {"type": "boolean", "default": False}}, "required": ["molecule"]}},
        {"name": "tanimoto_similarity", "description": "Similarity.",
         "parameters": {"type": "object", "properties": {
             "molecule_a": {"type": "string", "format": "smiles"},
             "molecule_b": {"type": "string", "format": "smiles"},
             "fingerprint": {"type": "string", "enum": ["morgan", "maccs", "rdkit", "atompair"], "default": "morgan"},
             "radius": {"type": "integer", "default": 2}}, "required": ["molecule_a", "molecule_b"]}},
        {"name": "run_reaction", "description": "Reaction.",
         "parameters": {"type": "object", "properties": {
             "reaction": {"type": "string", "enum": ["amide_coupling", "esterification"]},
             "reactants": {"type": "array", "items": {"type": "string", "format": "smiles"}}},
             "required": ["reaction", "reactants"]}},
    ],
}

GENES = ["CST3", "NKG7", "MS4A1", "CD3E", "LYZ", "GNLY", "PPBP", "FCGR3A", "leiden", "louvain", "n_genes"]
SMILES = ["CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "C1CCCCC1", "CC(C)O",
          "OC(=O)CCC(=O)O", "Nc1ccccc1", "CC(=O)N", "C/C=C\\C"]
FILES = ["pbmc3k.h5ad", "data/raw.h5ad", "runs/sample_7.h5ad", "atlas.h5ad"]


def _templates(rng: random.Random) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(template id, instruction, calls) for one draw of every template."""
    n = rng.randint(2, 300)
    k = rng.randint(2, 99)
    res = round(rng.uniform(0.1, 2.5), 1)
    target = rng.choice([1000, 10000, 100000, 1000000, rng.randint(100, 99999)])
    genes = rng.sample(GENES, rng.randint(1, 3))
    a, b = rng.sample(SMILES, 2)
    path = rng.choice(FILES)
    flavor = rng.choice(["seurat_v3", "cell_ranger"])
    return [
        ("norm", f"normalize to {target} counts per cell",
         [{"name": "normalize_total", "arguments": {"target_sum": target}}]),
        ("norm_log", f"normalize total counts to {target} then log transform",
         [{"name": "normalize_total", "arguments": {"target_sum": target}}, {"name": "log1p", "arguments": {}}]),
        ("log", "log1p the data", [{"name": "log1p", "arguments": {}}]),
        ("pca", f"run pca with {n} components", [{"name": "pca", "arguments": {"n_comps": n}}]),
        ("pca_plain", "compute a pca", [{"name": "pca", "arguments": {}}]),
        ("nbrs", f"build the neighbor graph with {k} neighbors",
         [{"name": "neighbors", "arguments": {"n_neighbors": k}}]),
        ("nbrs_pcs", f"compute neighbors using {k} pcs", [{"name": "neighbors", "arguments": {"n_pcs": k}}]),
        ("leiden", f"cluster with leiden at resolution {res}",
         [{"name": "leiden", "arguments": {"resolution": res}}]),
        ("hvg", f"select {n} highly variable genes",
         [{"name": "highly_variable_genes", "arguments": {"n_top_genes": n}}]),
        ("hvg_flavor", f"find highly variable genes with the {flavor} flavor",
         [{"name": "highly_variable_genes", "arguments": {"flavor": flavor}}]),
        ("umap", f"plot the umap colored by {' and '.join(genes)}",
         [{"name": "plot_umap", "arguments": {"color": genes}}]),
        ("read", f"load {path}", [{"name": "read_h5ad", "arguments": {"path": path}}]),
        ("mw", f"molecular weight of {a}", [{"name": "molecular_weight", "arguments": {"molecule": a}}]),
        ("rings", f"count aromatic rings in {a}",
         [{"name": "ring_count", "arguments": {"molecule": a, "aromatic_only": True}}]),
        ("tani", f"tanimoto similarity between {a} and {b}",
         [{"name": "tanimoto_similarity", "arguments": {"molecule_a": a, "molecule_b": b}}]),
        ("rxn", f"do an amide coupling of {a} with {b}",
         [{"name": "run_reaction", "arguments": {"reaction": "amide_coupling", "reactants": [a, b]}}]),
        # heldout-only phrasings
        ("H_pca_then_leiden", f"pca with {n} comps and then leiden clustering at {res}",
         [{"name": "pca", "arguments": {"n_comps": n}}, {"name": "leiden", "arguments": {"resolution": res}}]),
        ("H_mw_and_rings", f"what is the molecular weight and ring count of {a}",
         [{"name": "molecular_weight", "arguments": {"molecule": a}},
          {"name": "ring_count", "arguments": {"molecule": a}}]),
    ]


def toy_registry() -> ToolRegistry:
    """The toy domain's tools."""
    return ToolRegistry.from_dict(json.loads(json.dumps(TOY_TOOLS)))


def write_toy_domain(directory: Path) -> Path:
    """A domain folder holding only ``tools.json`` (what ``--constrained``/``--domain`` read)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tools.json").write_text(json.dumps(TOY_TOOLS, indent=2), encoding="utf-8")
    return directory


def toy_records(n_train: int = 300, n_heldout: int = 40, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Corpus records per split (train from the ordinary templates, heldout from the H_ ones)."""
    rng = random.Random(seed)
    definitions = toy_registry().function_definitions()
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "heldout": []}
    while len(splits["train"]) < n_train or len(splits["heldout"]) < n_heldout:
        for template, instruction, calls in _templates(rng):
            split = "heldout" if template.startswith("H_") else "train"
            wanted = n_heldout if split == "heldout" else n_train
            if len(splits[split]) >= wanted:
                continue
            splits[split].append({
                "id": f"toy-{split}-{len(splits[split]):05d}",
                "domain": "toy",
                "instruction": instruction,
                "calls": calls,
                "split": split,
                "messages": [
                    {"role": "user", "content": instruction},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                        for c in calls]},
                ],
                "tools": definitions,
            })
    return splits


def write_toy_corpus(directory: Path, n_train: int = 300, n_heldout: int = 40, seed: int = 0,
                     shard_size: int = 200) -> Path:
    """Write ``manifest.json`` and ``{split}-{index:05d}.jsonl`` shards of the toy corpus."""
    directory.mkdir(parents=True, exist_ok=True)
    splits = toy_records(n_train, n_heldout, seed)
    for split, records in splits.items():
        for index in range(0, max(len(records), 1), shard_size):
            with open(directory / f"{split}-{index // shard_size:05d}.jsonl", "w", encoding="utf-8") as handle:
                for record in records[index:index + shard_size]:
                    handle.write(json.dumps(record) + "\n")
    manifest = {"domain": "toy", "grammar_hash": "toy", "recordings_hash": "toy", "strategy": "templates",
                "seed": seed, "counts": {s: len(r) for s, r in splits.items()},
                "tools": toy_registry().function_definitions()}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return directory


_TRAINED: dict[str, Path] = {}


def trained_toy_model(tmp_path_factory: Any, steps: int = 80) -> Path:
    """A tiny model trained briefly on the toy corpus, built once per test session."""
    key = f"steps-{steps}"
    if key not in _TRAINED:
        from training.config import TrainConfig
        from training.trainer import train

        root = tmp_path_factory.mktemp("trained")
        corpus = write_toy_corpus(root / "corpus", n_train=300, n_heldout=20)
        # plain batches: in this templated corpus, batches of one length would hold one template each,
        # and 80 such steps teach too little for the predict tests to see well-formed output
        train(TrainConfig(corpus_dir=str(corpus), output_dir=str(root / "model"), batch_size=16, max_steps=steps,
                          group_by_length=1, max_minutes=None, warmup_steps=5, checkpoint_every=0, progress=False,
                          plot=False))
        _TRAINED[key] = root / "model"
    return _TRAINED[key]
