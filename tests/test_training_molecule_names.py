"""Molecules named in words: written as names in plain targets, read back as SMILES; spaces as tokens."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from grammar_engine.tools import ToolRegistry
from training.config import ConfigError, ModelConfig
from training.data import build_examples, plain_example
from training.molecule_names import MoleculeNames

pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parent.parent
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CAFFEINE = "Cn1c(=O)c2c(ncn2C)n(C)c1=O"
ETHANOL = "CCO"
METHANOL = "CO"


@pytest.fixture(scope="module")
def chem() -> ToolRegistry:
    return ToolRegistry.from_file(ROOT / "grammars" / "chem" / "tools.json")


@pytest.fixture(scope="module")
def names() -> MoleculeNames:
    return MoleculeNames({"aspirin": ASPIRIN, "acetylsalicylic acid": ASPIRIN, "caffeine": CAFFEINE,
                          "ethanol": ETHANOL, "methanol": METHANOL})


def test_the_name_is_taken_as_the_instruction_spells_it(names):
    assert names.spelled(CAFFEINE, "logP of Caffeine please") == "Caffeine"
    assert names.spelled(ASPIRIN, "MW of acetylsalicylic  acid") == "acetylsalicylic  acid"
    # the first name the instruction uses, when it uses two names of one molecule
    assert names.spelled(ASPIRIN, "aspirin (acetylsalicylic acid)") == "aspirin"


def test_a_name_inside_another_word_or_absent_is_not_a_name(names):
    assert names.spelled(ETHANOL, "tpsa of methanol") is None
    assert names.spelled(METHANOL, "tpsa of methanol-d4") is None
    assert names.spelled(CAFFEINE, f"tpsa of {CAFFEINE}") is None


def test_names_replace_molecules_only_and_resolve_back(names, chem):
    calls = [
        {"name": "tanimoto_similarity", "arguments": {"molecule_a": ASPIRIN, "molecule_b": CAFFEINE,
                                                      "fingerprint": "maccs"}},
        {"name": "run_reaction", "arguments": {"reaction": "esterification", "reactants": [ETHANOL, "CC(=O)O"]}},
        {"name": "draw_molecule", "arguments": {"molecule": CAFFEINE, "output": "caffeine.png"}},
    ]
    text = "compare Aspirin with caffeine (maccs), esterify ethanol with CC(=O)O, draw caffeine to caffeine.png"
    named = names.to_names(calls, text, chem)
    assert named[0]["arguments"] == {"molecule_a": "Aspirin", "molecule_b": "caffeine", "fingerprint": "maccs"}
    assert named[1]["arguments"]["reactants"] == ["ethanol", "CC(=O)O"]  # a SMILES in the text stays
    assert named[2]["arguments"]["output"] == "caffeine.png"  # a path is not a molecule
    assert names.resolve(named, chem) == calls
    assert calls[0]["arguments"]["molecule_a"] == ASPIRIN  # the input is not changed


def test_plain_targets_use_names_only_when_asked(names, chem):
    record = {"id": "1", "instruction": "logp of caffeine", "calls": [{"name": "logp", "arguments": {"molecule": CAFFEINE}}]}
    named = plain_example(record, chem, molecules=names)
    assert json.loads(named.target.split("<|end|>")[0]) == [{"name": "logp", "arguments": {"molecule": "caffeine"}}]
    assert named.calls == record["calls"]  # the gold calls keep their SMILES
    (plain,) = build_examples([record], registry=chem)
    assert CAFFEINE in plain.target


def test_only_tools_with_molecule_arguments_take_molecules(chem):
    singlecell = ToolRegistry.from_file(ROOT / "grammars" / "singlecell" / "tools.json")
    assert chem.takes_molecules and not singlecell.takes_molecules


def test_the_corpus_manifest_carries_the_lexicon_for_molecule_domains(tmp_path):
    import grammar_engine
    from grammar_engine.corpus import write_corpus

    chem = write_corpus(grammar_engine.load(ROOT / "grammars" / "chem"), tmp_path / "chem", n=5, seed=0)
    assert chem["molecules"]["caffeine"] == CAFFEINE
    assert json.loads((tmp_path / "chem" / "manifest.json").read_text())["molecules"]["aspirin"] == ASPIRIN
    single = write_corpus(grammar_engine.load(ROOT / "grammars" / "singlecell"), tmp_path / "sc", n=5, seed=0)
    assert "molecules" not in single


def test_the_predictor_reads_names_back_as_smiles(chem):
    from training.predict import Predictor

    definitions = json.loads((ROOT / "grammars" / "chem" / "tools.json").read_text())["tools"]
    info = {"prompt_format": "plain", "tools": definitions, "molecules": {"caffeine": CAFFEINE}}
    predictor = Predictor(None, SimpleNamespace(padding_side="right"), info=info)
    result = predictor._result('[{"name":"logp","arguments":{"molecule":"Caffeine"}}]')
    assert result["calls"] == [{"name": "logp", "arguments": {"molecule": CAFFEINE}}]
    assert "schema_errors" not in result
    # an unknown name is passed on as written, for the evaluation to mark wrong
    unknown = predictor._result('[{"name":"logp","arguments":{"molecule":"unobtainium"}}]')
    assert unknown["calls"][0]["arguments"]["molecule"] == "unobtainium"


def test_split_spaces_gives_a_word_the_same_tokens_after_a_space_and_after_a_quote():
    pytest.importorskip("tokenizers")
    pytest.importorskip("transformers")
    from training.tokenizer import train_tokenizer

    texts = ['<|user|>plot CST3 and NKG7 on the umap<|calls|>[{"name":"plot_umap","arguments":{"color":["CST3","NKG7"]}}]']
    texts = texts * 50
    split = train_tokenizer(texts, vocab_size=400, split_spaces=True)
    joined = train_tokenizer(texts, vocab_size=400, split_spaces=False)
    assert split.tokenize(" CST3")[1:] == split.tokenize('"CST3')[1:]
    assert joined.tokenize(" CST3")[1:] != joined.tokenize('"CST3')[1:]
    for tokenizer in (split, joined):  # either way the text comes back exactly
        text = "plot  CST3,\tNKG7 on the umap"
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_model_config_flags_must_be_booleans():
    with pytest.raises(ConfigError, match="split_spaces"):
        ModelConfig(split_spaces="yes")  # type: ignore[arg-type]
    assert ModelConfig.from_dict({"molecule_names": False}).molecule_names is False
