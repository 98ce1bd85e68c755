"""The singlecell executor runs every tool of grammars/singlecell/tools.json on scanpy."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("scanpy")
pytest.importorskip("leidenalg")

import numpy as np  # noqa: E402

from grammar_engine.executors import ExecutionError, format_results, is_available, run_calls, tool_names  # noqa: E402
from grammar_engine.executors import singlecell  # noqa: E402
from grammar_engine.tools import ToolRegistry  # noqa: E402
from grammar_engine.values import ValueKind  # noqa: E402

pytestmark = pytest.mark.singlecell

TOOLS_JSON = Path(__file__).resolve().parent.parent / "grammars" / "singlecell" / "tools.json"


def C(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return ToolRegistry.from_file(TOOLS_JSON)


@pytest.fixture(scope="module")
def dataset():
    return singlecell.make_dataset()


STANDARD = [
    C("read_h5ad", path="data/pbmc3k.h5ad"),
    C("calculate_qc_metrics", qc_vars=["mt", "ribo", "hb"]),
    C("plot_violin", keys=["n_genes_by_counts", "total_counts", "pct_counts_mt"]),
    C("filter_cells", min_genes=200),
    C("filter_cells", min_counts=500),
    C("filter_genes", min_cells=3),
    C("normalize_total", target_sum=10000),
    C("log1p"),
    C("highly_variable_genes", n_top_genes=300),
    C("plot_highly_variable_genes"),
    C("scale", max_value=10),
    C("pca", n_comps=30),
    C("plot_pca", color=["cell_type", "CST3"]),
    C("neighbors", n_neighbors=10, n_pcs=20),
    C("leiden"),
    C("louvain", resolution=0.8),
    C("umap"),
    C("tsne"),
    C("plot_umap", color=["leiden", "NKG7", "pct_counts_mt"]),
    C("plot_tsne", color=["louvain"]),
    C("rank_genes_groups", groupby="leiden", method="wilcoxon"),
    C("plot_rank_genes_groups", n_genes=10),
    C("plot_dotplot", var_names=["CST3", "NKG7", "MS4A1", "PPBP"], groupby="leiden"),
    C("subset_cells", key="leiden", values=["0", "1"]),
    C("write_h5ad", path="results/processed.h5ad"),
]


# -- schemas and data --------------------------------------------------------------------------


def test_tools_json_loads_and_every_tool_has_an_executor(registry):
    assert registry.domain == "singlecell" and is_available("singlecell")
    assert set(registry.tools) == set(tool_names("singlecell")) == set(singlecell.TOOLS)
    for tool in registry:
        assert tool.description
        for spec in tool.arguments.values():
            assert spec.schema.get("description"), f"{tool.name}.{spec.name}"


def test_schema_follows_the_contract(registry):
    assert registry["highly_variable_genes"].arguments["flavor"].enum == ["seurat", "seurat_v3", "cell_ranger"]
    assert registry["highly_variable_genes"].arguments["flavor"].default == "seurat"
    assert registry["neighbors"].arguments["n_neighbors"].default == 15
    assert registry["rank_genes_groups"].arguments["method"].default == "t-test"
    assert registry["plot_rank_genes_groups"].arguments["n_genes"].default == 20
    assert registry["leiden"].arguments["resolution"].default == 1.0
    assert registry["filter_cells"].required == [] and registry["normalize_total"].required == []
    assert registry["plot_dotplot"].required == ["var_names", "groupby"]
    assert registry["plot_violin"].required == ["keys"]
    assert registry["subset_cells"].arguments["values"].kind is ValueKind.STR_LIST
    assert registry["read_h5ad"].arguments["path"].kind is ValueKind.PATH


def test_initial_state_is_true_of_the_dataset(registry, dataset):
    for fact in registry.initial_state:
        kind, _, key = fact.partition(":")
        if kind == "obs":
            assert key in dataset.obs.columns, fact
        elif kind == "groups":
            assert str(dataset.obs[key].dtype) == "category", fact
    x = dataset.X.toarray()
    assert (x >= 0).all() and np.array_equal(x, np.round(x))  # "counts"


def test_value_sources_exist_in_the_dataset(registry, dataset):
    values = registry.value_sources
    assert set(values["GENE"]) <= set(dataset.var_names)
    assert any(g.startswith("MT-") for g in values["GENE"])
    for value in values["OBS_VALUE"]:
        assert value.isdigit() or any(value in set(dataset.obs[k].astype(str)) for k in registry.value_sources["GROUP_KEY"][:4])


def test_make_dataset_is_deterministic(dataset):
    again = singlecell.make_dataset()
    assert (again.X != dataset.X).nnz == 0 and again.obs.equals(dataset.obs)
    other = singlecell.make_dataset(seed=1, n_cells=60, n_genes=200)
    assert other.shape == (60, 200)
    assert sum(name.startswith("MT-") for name in dataset.var_names) == 13
    assert list(dataset.obs.columns) == ["cell_type", "sample", "batch", "S_score", "G2M_score", "phase"]
    with pytest.raises(ExecutionError, match="n_genes"):
        singlecell.make_dataset(n_genes=10)


# -- pipelines ---------------------------------------------------------------------------------


def test_standard_pipeline(tmp_path, dataset):
    results = run_calls("singlecell", STANDARD, tmp_path)
    assert [r["name"] for r in results] == [c["name"] for c in STANDARD]
    json.dumps(results)
    by_name = {r["name"]: r["result"] for r in results}
    assert by_name["read_h5ad"]["generated"] is True and (tmp_path / "data" / "pbmc3k.h5ad").is_file()
    assert 1 < by_name["calculate_qc_metrics"]["median_pct_counts_mt"] < 10
    assert by_name["highly_variable_genes"]["n_highly_variable"] == 300
    assert 5 <= by_name["leiden"]["n_clusters"] <= 10 and by_name["louvain"]["n_clusters"] >= 4
    # the clusters find the cell types again: the top markers of some cluster are NK markers
    top = by_name["rank_genes_groups"]["top_genes"]
    assert any({"GNLY", "NKG7"} & set(genes) for genes in top.values())
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["03_plot_violin.png", "10_plot_highly_variable_genes.png", "13_plot_pca.png",
                       "19_plot_umap.png", "20_plot_tsne.png", "22_plot_rank_genes_groups.png",
                       "23_plot_dotplot.png"]
    assert by_name["write_h5ad"]["path"] == "results/processed.h5ad"
    # a written file reads back, with everything computed so far
    again = run_calls("singlecell", [C("read_h5ad", path="results/processed.h5ad"), C("plot_umap", color=["leiden"])],
                      tmp_path)
    assert again[0]["result"]["generated"] is False
    assert again[0]["result"]["n_obs"] == by_name["subset_cells"]["n_obs"]
    assert "1. read_h5ad" in format_results(results)


def test_other_flavors_and_tools(tmp_path):
    pytest.importorskip("skmisc")
    calls = [
        C("highly_variable_genes", flavor="seurat_v3", n_top_genes=200),
        C("calculate_qc_metrics", qc_vars=["mt"]),
        C("normalize_total"),
        C("log1p"),
        C("highly_variable_genes", flavor="cell_ranger"),
        C("regress_out", keys=["total_counts", "pct_counts_mt"]),
        C("scale"),
        C("tsne"),
        C("plot_tsne", color=["cell_type"]),
        C("rank_genes_groups", groupby="cell_type", method="logreg"),
        C("plot_rank_genes_groups"),
        C("plot_violin", keys=["CST3"], groupby="cell_type"),
    ]
    results = run_calls("singlecell", calls, tmp_path)
    assert results[0]["result"]["n_highly_variable"] == 200
    assert "median" not in json.dumps(results[2]["result"]) and results[2]["result"]["target_sum"] > 0


def test_small_data_adjusts_instead_of_failing(tmp_path):
    calls = [
        C("subset_cells", key="cell_type", values=["Megakaryocytes"]),
        C("pca", n_comps=100),
        C("neighbors", n_neighbors=100, n_pcs=50),
        C("tsne"),
    ]
    results = run_calls("singlecell", calls, tmp_path)
    n_obs = results[0]["result"]["n_obs"]
    assert n_obs < 40
    assert results[1]["result"]["adjusted"] == {"n_comps": n_obs - 1}
    assert results[2]["result"]["adjusted"]["n_pcs"] == n_obs - 1
    assert results[2]["result"]["adjusted"]["n_neighbors"] == n_obs - 1
    assert "perplexity" in results[3]["result"]["adjusted"]


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calls", "match"),
    [
        ([C("filter_cells", min_genes=200, min_counts=500)], "exactly one of"),
        ([C("filter_genes")], "exactly one of"),
        ([C("filter_cells", min_genes=5000)], "removed all 300 cells"),
        ([C("scale"), C("log1p")], "call 2 \\(log1p\\): log1p needs non-negative data"),
        ([C("highly_variable_genes")], "run normalize_total and log1p first"),
        ([C("umap")], "umap needs neighbors to run first"),
        ([C("plot_umap", color=["leiden"])], "plot_umap needs umap"),
        ([C("pca"), C("plot_pca", color=["leiden"])], "'leiden' is not a gene nor an obs key"),
        ([C("plot_dotplot", var_names=["NOTAGENE"], groupby="cell_type")], "'NOTAGENE' is not a gene"),
        ([C("rank_genes_groups", groupby="S_score")], "numeric"),
        ([C("regress_out", keys=["batch", "S_score"])], "single categorical"),
        ([C("subset_cells", key="cell_type", values=["T cells"])], "no cell has cell_type in"),
        ([C("calculate_qc_metrics", qc_vars=["chloroplast"])], "unknown gene set"),
        ([C("read_h5ad", path="../outside.h5ad")], "outside the working directory"),
        ([C("write_h5ad", path="/tmp/outside.h5ad")], "outside the working directory"),
        ([C("read_h5ad", path="notes.txt")], "no file"),
        ([C("pca", n_components=10)], "no argument 'n_components'"),
        ([C("cluster")], "no tool 'cluster'"),
    ],
)
def test_failing_calls(tmp_path, calls, match):
    with pytest.raises(ExecutionError, match=match):
        run_calls("singlecell", calls, tmp_path / "work")
    assert not (tmp_path / "outside.h5ad").exists()


def test_sequence_problems_catch_missing_steps(registry):
    assert registry.sequence_problems([C("umap")]) == ["call 1 (umap) needs 'neighbors' first"]
    assert registry.sequence_problems([C("rank_genes_groups", groupby="leiden")])
    assert not registry.sequence_problems([C("neighbors"), C("leiden"), C("rank_genes_groups", groupby="leiden")])
    assert registry.sequence_problems([C("highly_variable_genes", flavor="seurat")])
    assert not registry.sequence_problems([C("highly_variable_genes", flavor="seurat_v3")])


# -- random pipelines drawn from the schema ----------------------------------------------------

NUMERIC_OBS = {"S_score", "G2M_score", "n_genes_by_counts", "total_counts", "log1p_total_counts",
               "pct_counts_mt", "pct_counts_ribo", "pct_counts_hb"}


def _facts(templates, arguments):
    out = []
    for template in templates:
        try:
            out.append(template.format(**arguments))
        except KeyError:
            continue
    return out


def _with_defaults(registry, call):
    arguments = {name: spec.default for name, spec in registry[call["name"]].arguments.items() if spec.has_default}
    return {"name": call["name"], "arguments": arguments | call["arguments"]}


class PipelineSampler:
    """Random call lists whose values come from the schema, respecting requires/provides/forbids.

    List arguments name genes and obs keys, which facts cannot check item by item, so the sampler
    tracks the obs keys that exist (the "obs:" facts plus the pct_counts_<set> keys of QC).
    """

    def __init__(self, registry: ToolRegistry, dataset, rng: random.Random) -> None:
        self.registry, self.rng = registry, rng
        self.categories = {key: sorted(map(str, dataset.obs[key].cat.categories))
                           for key in ("cell_type", "sample", "batch", "phase")}
        self.forbids = {t["name"]: t.get("forbids", []) for t in json.loads(TOOLS_JSON.read_text())["tools"]}

    def value(self, tool, spec, facts):
        rng, sources = self.rng, self.registry.value_sources
        obs = sorted(f[4:] for f in facts if f.startswith("obs:"))
        groups = sorted(f[7:] for f in facts if f.startswith("groups:"))
        numeric = [k for k in obs if k in NUMERIC_OBS]
        if spec.name in ("groupby", "key"):
            return rng.choice(groups)
        if spec.name == "color":
            return rng.sample(sources["GENE"] + obs, rng.randint(1, 3))
        if spec.name == "keys" and tool == "plot_violin":
            return rng.sample(sources["GENE"] + numeric, rng.randint(1, 3))
        if spec.name == "keys":  # regress_out: numeric keys, or one categorical key
            return rng.sample(numeric, rng.randint(1, 2)) if rng.random() < 0.8 else [rng.choice(["batch", "sample"])]
        if spec.name == "values":
            return ["placeholder"]  # chosen in call(), once the key is known
        if spec.name == "var_names":
            return rng.sample(sources["GENE"], rng.randint(1, 5))
        if spec.kind is ValueKind.PATH:
            return rng.choice(sources["PATH"])
        if spec.enum is not None:
            items = spec.enum
            return rng.sample(items, rng.randint(1, len(items))) if spec.kind.is_list else rng.choice(items)
        if spec.kind is ValueKind.INT:
            return rng.randint(int(spec.minimum), int(spec.maximum))
        if spec.kind is ValueKind.NUMBER:
            return round(rng.uniform(spec.minimum, spec.maximum), 2)
        raise AssertionError(f"no generator for {tool}.{spec.name}")

    def call(self, tool, facts):
        schema = self.registry[tool]
        arguments = {}
        optional = [n for n, s in schema.arguments.items() if not s.required]
        if tool in ("filter_cells", "filter_genes"):  # exactly one criterion per call
            optional = [self.rng.choice(optional)]
        for name, spec in schema.arguments.items():
            if spec.required or (name in optional and (tool.startswith("filter_") or self.rng.random() < 0.5)):
                arguments[name] = self.value(tool, spec, facts)
        if tool == "subset_cells":  # keep at least half of the groups: later steps need cells
            key = arguments["key"]
            labels = self.categories.get(key, ["0", "1", "2"])
            arguments["values"] = self.rng.sample(labels, max(2, (len(labels) + 1) // 2))
        return {"name": tool, "arguments": arguments}

    def pipeline(self, length: int) -> list[dict]:
        facts = set(self.registry.initial_state)
        calls = [C("read_h5ad", path=self.rng.choice(self.registry.value_sources["PATH"]))]
        tools = [t for t in self.registry.tools if t != "read_h5ad"]
        while len(calls) < length:
            call = self.call(self.rng.choice(tools), facts)
            full = _with_defaults(self.registry, call)
            if self.registry.sequence_problems([full], state=facts):
                continue
            if set(_facts(self.forbids[call["name"]], full["arguments"])) & facts:
                continue
            if call["name"] == "subset_cells" and sum(c["name"] == "subset_cells" for c in calls):
                continue  # one subset per pipeline keeps enough cells
            calls.append(call)
            facts.update(_facts(self.registry[call["name"]].provides, full["arguments"]))
            if call["name"] == "calculate_qc_metrics":
                facts.update(f"obs:pct_counts_{name}" for name in call["arguments"]["qc_vars"])
        return calls


def test_random_pipelines_from_the_schema_run(tmp_path, registry, dataset):
    pytest.importorskip("skmisc")  # seurat_v3
    rng = random.Random(7)
    sampler = PipelineSampler(registry, dataset, rng)
    seen = set()
    for number in range(30):
        calls = sampler.pipeline(rng.randint(4, 9))
        filled = [_with_defaults(registry, c) for c in calls]
        assert registry.sequence_problems(filled) == []
        for call in calls:
            assert registry.validate_call(call) == [], call
        try:
            run_calls("singlecell", calls, tmp_path / f"run{number}")
        except ExecutionError as exc:
            pytest.fail(f"pipeline {number} failed: {exc}\n{json.dumps(calls)}")
        seen.update(c["name"] for c in calls)
    assert len(seen) >= 20
