"""The chem executor runs every tool of grammars/chem/tools.json on RDKit."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("selfies")

from rdkit import Chem  # noqa: E402

from grammar_engine.errors import GrammarEngineError  # noqa: E402
from grammar_engine.executors import (  # noqa: E402
    ExecutionError,
    available_domains,
    format_results,
    is_available,
    run_calls,
    tool_names,
)
from grammar_engine.executors import chem  # noqa: E402
from grammar_engine.tools import ToolRegistry  # noqa: E402
from grammar_engine.values import ValueKind  # noqa: E402

pytestmark = pytest.mark.chem

TOOLS_JSON = Path(__file__).resolve().parent.parent / "grammars" / "chem" / "tools.json"


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return ToolRegistry.from_file(TOOLS_JSON)


def run_one(workdir: Path, name: str, **arguments):
    return run_calls("chem", [{"name": name, "arguments": arguments}], workdir)[0]["result"]


# -- schemas -----------------------------------------------------------------------------------


def test_tools_json_loads_and_every_tool_has_an_executor(registry):
    assert registry.domain == "chem"
    assert set(registry.tools) == set(tool_names("chem")) == set(chem.TOOLS)
    assert "chem" in available_domains() and is_available("chem")


def test_schema_follows_the_contract(registry):
    tanimoto = registry["tanimoto_similarity"].arguments
    assert tanimoto["fingerprint"].enum == ["morgan", "maccs", "rdkit", "atompair"]
    assert tanimoto["fingerprint"].default == "morgan" and tanimoto["radius"].default == 2
    assert registry["ring_count"].arguments["aromatic_only"].default is False
    assert registry["similarity_search"].required == ["query", "library"]
    assert registry["similarity_search"].arguments["top_k"].default == 10
    assert registry["has_substructure"].arguments["group"].enum == list(chem.GROUPS)
    assert registry["run_reaction"].arguments["reaction"].enum == list(chem.REACTIONS)
    assert registry["run_reaction"].arguments["reactants"].kind is ValueKind.MOLECULE_LIST
    assert registry["filter_library"].arguments["property"].enum == list(chem.PROPERTIES)
    assert registry["draw_molecule"].arguments["output"].kind is ValueKind.PATH
    for tool in registry:
        assert tool.description
        for spec in tool.arguments.values():
            assert spec.schema.get("description"), f"{tool.name}.{spec.name} has no description"


def test_value_sources_are_valid(registry):
    smiles = registry.value_sources["SMILES"]
    assert len(smiles) >= 30
    assert all(Chem.MolFromSmiles(s) is not None for s in smiles)
    for path in registry.value_sources["LIBRARY_PATH"]:
        assert chem.library_path(Path("/nonexistent-workdir"), path).is_file()


# -- descriptors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "molecule", "expected"),
    [
        ("molecular_weight", "aspirin", 180.159),
        ("molecular_weight", "CC(=O)Oc1ccccc1C(=O)O", 180.159),
        ("logp", "aspirin", 1.3101),
        ("tpsa", "aspirin", 63.6),
        ("tpsa", "caffeine", 61.82),
        ("hbond_donors", "aspirin", 1),
        ("hbond_acceptors", "aspirin", 3),
        ("rotatable_bonds", "ibuprofen", 4),
        ("qed", "aspirin", 0.5501),
    ],
)
def test_descriptor_values(tmp_path, tool, molecule, expected):
    assert run_one(tmp_path, tool, molecule=molecule) == pytest.approx(expected, abs=1e-3)


def test_ring_count(tmp_path):
    tetralin = "c1ccc2c(c1)CCCC2"
    assert run_one(tmp_path, "ring_count", molecule=tetralin) == 2
    assert run_one(tmp_path, "ring_count", molecule=tetralin, aromatic_only=True) == 1
    assert run_one(tmp_path, "ring_count", molecule="naphthalene", aromatic_only=True) == 2


def test_lipinski(tmp_path):
    aspirin = run_one(tmp_path, "lipinski_rule_of_five", molecule="aspirin")
    assert aspirin["passes"] is True and aspirin["violations"] == 0
    assert aspirin["molecular_weight"] == pytest.approx(180.159, abs=1e-3)
    long_acid = "C" * 38 + "(=O)O"  # MW > 500 and logP > 5: two violations
    result = run_one(tmp_path, "lipinski_rule_of_five", molecule=long_acid)
    assert result["violations"] == 2 and result["passes"] is False
    assert set(result["violated"]) == {"molecular_weight", "logp"}


def test_identifiers(tmp_path):
    assert run_one(tmp_path, "canonical_smiles", molecule="OC(=O)c1ccccc1OC(C)=O") == "CC(=O)Oc1ccccc1C(=O)O"
    assert run_one(tmp_path, "canonical_smiles", molecule="C[C@@H](O)C(=O)O") == "C[C@@H](O)C(=O)O"
    assert run_one(tmp_path, "inchikey", molecule="aspirin") == "BSYNRYMUTXBXSQ-UHFFFAOYSA-N"
    encoded = run_one(tmp_path, "to_selfies", molecule="caffeine")
    import selfies

    decoded = Chem.CanonSmiles(selfies.decoder(encoded))
    assert decoded == Chem.CanonSmiles("Cn1c(=O)c2c(ncn2C)n(C)c1=O")


@pytest.mark.parametrize("fingerprint", chem.FINGERPRINTS)
@pytest.mark.parametrize("molecule", ["aspirin", "caffeine", "C[C@@H](O)C(=O)O", "[NH4+]"])
def test_tanimoto_of_a_molecule_with_itself_is_one(tmp_path, fingerprint, molecule):
    assert run_one(tmp_path, "tanimoto_similarity", molecule_a=molecule, molecule_b=molecule,
                   fingerprint=fingerprint) == 1.0


def test_tanimoto_of_different_molecules(tmp_path):
    scores = {
        fp: run_one(tmp_path, "tanimoto_similarity", molecule_a="aspirin", molecule_b="caffeine", fingerprint=fp)
        for fp in chem.FINGERPRINTS
    }
    assert all(0 <= score < 0.5 for score in scores.values())
    r1 = run_one(tmp_path, "tanimoto_similarity", molecule_a="aspirin", molecule_b="salicylic acid", radius=1)
    r3 = run_one(tmp_path, "tanimoto_similarity", molecule_a="aspirin", molecule_b="salicylic acid", radius=3)
    assert r1 > r3  # larger environments share fewer bits


# -- substructures and reactions ---------------------------------------------------------------

GROUP_CASES = {
    "carboxylic_acid": ("CC(=O)O", "CC(=O)OC"),
    "primary_amine": ("CCN", "CC(N)=O"),
    "secondary_amine": ("CCNCC", "CCN(C)C"),
    "amide": ("CC(=O)Nc1ccc(O)cc1", "CC(=O)OC"),
    "ester": ("CCOC(C)=O", "CC(=O)O"),
    "ketone": ("CC(C)=O", "CC=O"),
    "aldehyde": ("O=Cc1ccccc1", "CC(C)=O"),
    "alcohol": ("CCO", "Oc1ccccc1"),
    "phenol": ("Oc1ccccc1", "OCc1ccccc1"),
    "nitro": ("O=[N+]([O-])c1ccccc1", "Nc1ccccc1"),
    "nitrile": ("N#Cc1ccccc1", "CCN"),
    "halogen": ("Clc1ccccc1", "c1ccccc1"),
    "sulfonamide": ("NS(=O)(=O)c1ccccc1", "CS(C)=O"),
    "aromatic_ring": ("c1ccoc1", "C1CCCCC1"),
    "thiol": ("Sc1ccccc1", "CSC"),
}


def test_every_group_has_a_case():
    assert set(GROUP_CASES) == set(chem.GROUPS)


@pytest.mark.parametrize("group", sorted(GROUP_CASES))
def test_substructure_groups(tmp_path, group):
    positive, negative = GROUP_CASES[group]
    assert run_one(tmp_path, "has_substructure", molecule=positive, group=group) is True
    assert run_one(tmp_path, "has_substructure", molecule=negative, group=group) is False


REACTION_CASES = [
    ("amide_coupling", ["benzoic acid", "benzylamine"], "O=C(NCc1ccccc1)c1ccccc1"),
    ("amide_coupling", ["morpholine", "CC(=O)O"], "CC(=O)N1CCOCC1"),
    ("suzuki_coupling", ["4-bromoanisole", "phenylboronic acid"], "COc1ccc(-c2ccccc2)cc1"),
    ("esterification", ["acetic acid", "ethanol"], "CCOC(C)=O"),
    ("reductive_amination", ["benzaldehyde", "dimethylamine"], "CN(C)Cc1ccccc1"),
    ("reductive_amination", ["cyclohexanone", "benzylamine"], "c1ccc(CNC2CCCCC2)cc1"),
    ("buchwald_hartwig", ["bromobenzene", "morpholine"], "c1ccc(N2CCOCC2)cc1"),
    ("buchwald_hartwig", ["aniline", "iodobenzene"], "c1ccc(Nc2ccccc2)cc1"),
]


def test_every_reaction_has_a_case():
    assert {case[0] for case in REACTION_CASES} == set(chem.REACTIONS)


@pytest.mark.parametrize(("reaction", "reactants", "product"), REACTION_CASES)
def test_reactions(tmp_path, reaction, reactants, product):
    result = run_one(tmp_path, "run_reaction", reaction=reaction, reactants=reactants)
    assert result["product"] == Chem.CanonSmiles(product)


@pytest.mark.parametrize(
    ("reaction", "reactants"),
    [("amide_coupling", ["benzene", "ethanol"]), ("suzuki_coupling", ["bromobenzene", "aniline"]),
     ("esterification", ["acetic acid", "phenol"]), ("amide_coupling", ["benzoic acid"])],
)
def test_reaction_mismatch_is_an_error(tmp_path, reaction, reactants):
    with pytest.raises(ExecutionError, match=reaction):
        run_one(tmp_path, "run_reaction", reaction=reaction, reactants=reactants)


# -- libraries ---------------------------------------------------------------------------------


def test_shipped_library():
    entries = chem.read_library(chem.DATA_DIR / "library.smi")
    assert 60 <= len(entries) <= 100
    assert len({entry.name for entry in entries}) == len(entries)


def test_similarity_search(tmp_path):
    hits = run_one(tmp_path, "similarity_search", query="aspirin", library="library.smi", top_k=3)
    assert len(hits) == 3 and hits[0]["name"] == "aspirin" and hits[0]["similarity"] == 1.0
    assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)
    default = run_one(tmp_path, "similarity_search", query="aspirin", library="data/library.smi")
    assert len(default) == 10
    strict = run_one(tmp_path, "similarity_search", query="aspirin", library="library.smi", threshold=0.9)
    assert [h["name"] for h in strict] == ["aspirin"]


def test_filter_library(tmp_path):
    result = run_one(tmp_path, "filter_library", library="library.smi", property="molecular_weight",
                     comparator="le", value=200)
    expected = [e.name for e in chem.read_library(chem.DATA_DIR / "library.smi") if chem.PROPERTIES["molecular_weight"](e.mol) <= 200]
    assert [m["name"] for m in result["molecules"]] == expected and result["kept"] == len(expected)
    donors = run_one(tmp_path, "filter_library", library="fragments.smi", property="hbond_donors",
                     comparator="eq", value=0)
    assert all(m["hbond_donors"] == 0 for m in donors["molecules"]) and donors["kept"] > 0


def test_workdir_library_comes_first(tmp_path):
    (tmp_path / "library.smi").write_text("CCO\tethanol\nCCCO\tpropanol\n", encoding="utf-8")
    hits = run_one(tmp_path, "similarity_search", query="CCO", library="library.smi")
    assert [h["name"] for h in hits] == ["ethanol", "propanol"]
    with pytest.raises(ExecutionError, match="not found"):
        run_one(tmp_path, "similarity_search", query="CCO", library="missing.smi")


# -- drawing and paths -------------------------------------------------------------------------


def test_draw_molecule(tmp_path):
    result = run_one(tmp_path, "draw_molecule", molecule="caffeine", output="img/caffeine.png")
    assert result["path"] == "img/caffeine.png"
    assert (tmp_path / "img" / "caffeine.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = run_one(tmp_path, "draw_molecule", molecule="aspirin", output="aspirin.svg")
    assert "<svg" in (tmp_path / svg["path"]).read_text(encoding="utf-8")


def test_fallback_png_is_valid():
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles("c1ccccc1O")
    AllChem.Compute2DCoords(mol)
    data = chem._bond_sketch_png(mol, size=64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    assert len(raw) == 64 * 65 and 0 in raw  # 64 rows of filter byte + 64 pixels, some black


@pytest.mark.parametrize("output", ["../escape.png", "a/../../escape.png", "/tmp/escape.png"])
def test_paths_escaping_the_workdir_are_refused(tmp_path, output):
    workdir = tmp_path / "work"
    with pytest.raises(ExecutionError, match="outside the working directory"):
        run_one(workdir, "draw_molecule", molecule="CCO", output=output)
    assert not (tmp_path / "escape.png").exists()


def test_library_path_escape_is_refused(tmp_path):
    with pytest.raises(ExecutionError, match="outside"):
        run_one(tmp_path, "filter_library", library="../../etc/passwd", property="qed", comparator="gt", value=0)


def test_absolute_path_inside_workdir_is_allowed(tmp_path):
    result = run_one(tmp_path, "draw_molecule", molecule="CCO", output=str(tmp_path / "ethanol.png"))
    assert result["path"] == "ethanol.png"


# -- errors ------------------------------------------------------------------------------------


def test_invalid_smiles_is_an_execution_error(tmp_path):
    calls = [{"name": "logp", "arguments": {"molecule": "CCO"}},
             {"name": "molecular_weight", "arguments": {"molecule": "C1CC(("}}]
    with pytest.raises(ExecutionError) as info:
        run_calls("chem", calls, tmp_path)
    error = info.value
    assert error.index == 1 and error.tool == "molecular_weight"
    assert "call 2 (molecular_weight)" in str(error) and "C1CC((" in str(error)
    assert isinstance(error, GrammarEngineError) and isinstance(error, RuntimeError)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ({"name": "molecular_wieght", "arguments": {"molecule": "CCO"}}, "did you mean 'molecular_weight'"),
        ({"name": "logp", "arguments": {"smiles": "CCO"}}, "no argument 'smiles'"),
        ({"name": "logp", "arguments": {}}, "missing required argument 'molecule'"),
        ({"name": "has_substructure", "arguments": {"molecule": "CCO", "group": "ether"}}, "group must be one of"),
        ({"name": "tanimoto_similarity", "arguments": {"molecule_a": "C", "molecule_b": "C", "fingerprint": "ecfp"}},
         "fingerprint must be one of"),
        ({"arguments": {}}, "must be an object with a 'name'"),
    ],
)
def test_bad_calls(tmp_path, call, match):
    with pytest.raises(ExecutionError, match=match):
        run_calls("chem", [call], tmp_path)


def test_core_imports_without_the_libraries():
    import subprocess
    import sys

    code = ("import sys, grammar_engine.executors as e; e.available_domains(); e.is_available('chem'); "
            "assert not {'rdkit', 'scanpy', 'selfies', 'anndata'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_libraries_say_what_to_install(monkeypatch):
    import importlib.util

    from grammar_engine import executors

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rdkit" else real(name, *a))
    executors.is_available.cache_clear()
    try:
        assert executors.is_available("chem") is False
        with pytest.raises(ExecutionError, match=r"pip install 'grammar-engine\[chem\]'"):
            run_calls("chem", [], ".")
    finally:
        executors.is_available.cache_clear()


def test_unknown_domain():
    with pytest.raises(ExecutionError, match="no executor for domain 'physics'"):
        run_calls("physics", [], ".")


def test_null_arguments_are_dropped_and_defaults_accepted(tmp_path):
    calls = [{"name": "ring_count", "arguments": {"molecule": "c1ccccc1", "aromatic_only": None}},
             {"name": "tanimoto_similarity",
              "arguments": {"molecule_a": "CCO", "molecule_b": "CCO", "fingerprint": "morgan", "radius": 2}}]
    assert [r["result"] for r in run_calls("chem", calls, tmp_path)] == [1, 1.0]


def test_results_are_json_and_print(tmp_path):
    calls = [{"name": "lipinski_rule_of_five", "arguments": {"molecule": "ibuprofen"}},
             {"name": "similarity_search", "arguments": {"query": "CCO", "library": "fragments.smi", "top_k": 2}},
             {"name": "qed", "arguments": {"molecule": "caffeine"}}]
    results = run_calls("chem", calls, tmp_path)
    assert json.loads(json.dumps(results)) == results
    text = format_results(results)
    assert text.startswith("1. lipinski_rule_of_five") and "3. qed: 0.5" in text and "name=" in text


# -- random call lists drawn from the schema ---------------------------------------------------

# Which reactant pairs a reaction accepts is chemistry, not schema: take them from the cases.
REACTANT_PAIRS: dict[str, list[list[str]]] = {}
for _reaction, _reactants, _ in REACTION_CASES:
    REACTANT_PAIRS.setdefault(_reaction, []).append(_reactants)


def random_value(rng: random.Random, registry: ToolRegistry, tool: str, spec) -> object:
    sources = registry.value_sources
    if tool == "run_reaction" and spec.name == "reactants":
        return None  # filled in with the reaction
    if spec.enum is not None and spec.kind is not ValueKind.STR_LIST:
        return rng.choice(spec.enum)
    if spec.kind is ValueKind.MOLECULE:
        return rng.choice(sources["SMILES"] + ["aspirin", "caffeine", "ibuprofen"])
    if spec.kind is ValueKind.PATH:
        return rng.choice(sources["LIBRARY_PATH" if spec.name == "library" else "IMAGE_PATH"])
    if spec.kind is ValueKind.BOOL:
        return rng.random() < 0.5
    if spec.kind is ValueKind.INT:
        return rng.randint(int(spec.minimum), int(spec.maximum))
    if spec.kind is ValueKind.NUMBER:
        return round(rng.uniform(spec.minimum, spec.maximum), 2)
    raise AssertionError(f"no generator for {tool}.{spec.name}")


def random_call(rng: random.Random, registry: ToolRegistry) -> dict:
    tool = rng.choice(list(registry))
    arguments = {}
    for name, spec in tool.arguments.items():
        if spec.required or rng.random() < 0.5:
            arguments[name] = random_value(rng, registry, tool.name, spec)
    if tool.name == "run_reaction":
        arguments["reactants"] = list(rng.choice(REACTANT_PAIRS[arguments["reaction"]]))
        rng.shuffle(arguments["reactants"])
    return {"name": tool.name, "arguments": arguments}


def test_random_call_lists_from_the_schema_run(tmp_path, registry):
    rng = random.Random(20240611)
    seen = set()
    for number in range(300):
        calls = [random_call(rng, registry) for _ in range(rng.randint(1, 4))]
        for call in calls:
            assert registry.validate_call(call) == [], call
            seen.add(call["name"])
        results = run_calls("chem", calls, tmp_path / f"run{number % 10}")
        assert [r["name"] for r in results] == [c["name"] for c in calls]
        json.dumps(results)
    assert seen == set(registry.tools)
