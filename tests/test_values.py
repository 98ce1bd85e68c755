from __future__ import annotations

import pytest

from grammar_engine import ValueConversionError
from grammar_engine.values import MoleculeLexicon, ValueKind, convert, default_lexicon, parse_bool, parse_number


@pytest.mark.parametrize(
    "text, value",
    [
        ("10k", 10000), ("10K", 10000), ("10,000", 10000), ("1e4", 10000), ("ten thousand", 10000),
        ("fifty", 50), ("0.5", 0.5), ("2.5k", 2500), ("two hundred and fifty", 250), ("1 million", 1000000),
        ("twenty-five", 25), ("1,000,000", 1000000), (".5", 0.5), ("3", 3), ("half", 0.5), ("1M", 1000000),
    ],
)
def test_numbers_in_digits_words_and_shorthands(text: str, value: float) -> None:
    got = parse_number(text)
    assert got == value
    assert type(got) is type(value)  # 10000 stays an int, so JSON writes 10000 not 10000.0


@pytest.mark.parametrize("text", ["banana", "", "ten bananas", "1e999"])
def test_not_a_number(text: str) -> None:
    with pytest.raises(ValueConversionError, match="as a number"):
        parse_number(text)


def test_int_kind_refuses_fractions() -> None:
    with pytest.raises(ValueConversionError, match="whole number"):
        convert(ValueKind.INT, "0.5")


def test_molecule_names_become_smiles_and_smiles_stay() -> None:
    assert convert("molecule", "Aspirin") == "CC(=O)Oc1ccccc1C(=O)O"
    assert convert("molecule", "acetylsalicylic  acid") == "CC(=O)Oc1ccccc1C(=O)O"
    assert convert("molecule", "C[C@@H](O)C(=O)O") == "C[C@@H](O)C(=O)O"


def test_lists_convert_each_item() -> None:
    assert convert("str_list", "", items=["CST3", "NKG7", "PPBP"]) == ["CST3", "NKG7", "PPBP"]
    assert convert("molecule_list", "", items=["aspirin", "CCO"]) == ["CC(=O)Oc1ccccc1C(=O)O", "CCO"]


def test_enum_matching_ignores_case_and_punctuation() -> None:
    assert convert("enum", "Seurat v3", enum=["seurat", "seurat_v3", "cell_ranger"]) == "seurat_v3"
    assert convert("enum", "t test", enum=["t-test", "wilcoxon"]) == "t-test"
    with pytest.raises(ValueConversionError, match="not one of"):
        convert("enum", "kmeans", enum=["leiden", "louvain"])


def test_bool_words() -> None:
    assert parse_bool("yes") is True and parse_bool("false") is False
    with pytest.raises(ValueConversionError):
        parse_bool("maybe")


def test_shipped_lexicon_matches_the_shared_one() -> None:
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "molecules.tsv"
    if not shared.is_file():
        pytest.skip("../shared is not beside this checkout")
    theirs = MoleculeLexicon.from_file(shared)
    ours = default_lexicon()
    assert theirs.names == ours.names
    assert all(theirs.smiles(n) == ours.smiles(n) for n in theirs.names)


def test_lexicon_needs_a_header(tmp_path) -> None:
    bad = tmp_path / "m.tsv"
    bad.write_text("aspirin\tCC\n")
    with pytest.raises(ValueConversionError, match="header"):
        MoleculeLexicon.from_file(bad)


@pytest.mark.parametrize("value", [5e-324, 1e-310, 1e-300, 3.7, 1.5e308])
def test_rounding_a_drawn_number_never_divides_by_zero(value: float) -> None:
    import math
    import random

    from grammar_engine.value_sources import _nice

    for seed in range(4):
        out = _nice(value, random.Random(seed))
        assert math.isfinite(out) and out > 0 and abs(out - value) <= 0.5 * value
