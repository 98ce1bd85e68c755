"""Surface text -> JSON values: numbers in digits, words and shorthands, molecules, lists, enums.

A value kind names how text becomes an argument's JSON value. Each kind has one converter,
``convert(kind, text, ...)``; the kinds are the suffixes of ``val_<kind>`` nonterminals and are
also derived from tool schemas (see :func:`grammar_engine.tools.ArgumentSpec.kind`).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from pathlib import Path

from .errors import ValueConversionError

__all__ = [
    "MoleculeLexicon",
    "ValueKind",
    "convert",
    "normalize_enum_text",
    "parse_bool",
    "parse_number",
]


class ValueKind(str, Enum):
    """The JSON value kinds a slot can produce."""

    INT = "int"
    NUMBER = "number"
    BOOL = "bool"
    STR = "str"
    PATH = "path"
    ENUM = "enum"
    MOLECULE = "molecule"
    STR_LIST = "str_list"
    MOLECULE_LIST = "molecule_list"

    @property
    def is_list(self) -> bool:
        return self in (ValueKind.STR_LIST, ValueKind.MOLECULE_LIST)

    @property
    def item_kind(self) -> ValueKind:
        """The kind of one item of a list kind (the kind itself otherwise)."""
        if self is ValueKind.STR_LIST:
            return ValueKind.STR
        if self is ValueKind.MOLECULE_LIST:
            return ValueKind.MOLECULE
        return self


_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "a": 1, "an": 1, "single": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "dozen": 12,
}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_FRACTIONS = {"half": 0.5, "quarter": 0.25}
_SUFFIXES = {"k": 1_000, "m": 1_000_000, "mm": 1_000_000, "b": 1_000_000_000}
_DIGITS_RE = re.compile(
    r"^(?P<sign>[-+])?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)"
    r"(?:[eE](?P<exp>[-+]?\d+))?\s*(?P<suffix>k|K|m|M|mm|MM|b|B)?$"
)


def _to_json_number(value: float) -> int | float:
    """An integral float becomes an int so that JSON writes ``10000``, not ``10000.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _parse_words(words: list[str]) -> float | None:
    """Parse English number words: 'ten thousand', 'two hundred and fifty', 'half'."""
    if not words:
        return None
    if len(words) == 1 and words[0] in _FRACTIONS:
        return _FRACTIONS[words[0]]
    total = 0.0
    current = 0.0
    seen = False
    for word in words:
        if word in ("and", "-"):
            continue
        if word in _UNITS:
            current += _UNITS[word]
            seen = True
        elif word in _SCALES:
            current = (current or 1) * _SCALES[word]
            if _SCALES[word] >= 1000:
                total += current
                current = 0
            seen = True
        elif re.fullmatch(r"\d+(?:\.\d+)?", word):
            current += float(word)
            seen = True
        else:
            return None
    return total + current if seen else None


def parse_number(text: str) -> int | float:
    """Parse a number written in digits, with separators, exponents, shorthands, or in words.

    Examples
    --------
    >>> [parse_number(t) for t in ["10k", "10,000", "1e4", "ten thousand", "0.5", "fifty", "2.5k"]]
    [10000, 10000, 10000, 10000, 0.5, 50, 2500]
    """
    raw = text.strip()
    match = _DIGITS_RE.match(raw)
    if match:
        # Decimal keeps "2.9k" at exactly 2900 (float arithmetic gives 2900.0000000000005)
        exact = Decimal(match["num"].replace(",", ""))
        if match["exp"]:
            exponent = int(match["exp"])
            exact = exact.scaleb(exponent) if abs(exponent) < 300 else Decimal("Infinity")
        if match["suffix"]:
            exact *= _SUFFIXES[match["suffix"].lower()]
        value = float(exact)
        if match["sign"] == "-":
            value = -value
        if math.isfinite(value):
            return _to_json_number(value)
    words = re.split(r"[\s-]+", raw.lower())
    # "2 million", "1.5 thousand"
    if len(words) == 2 and words[1] in _SCALES:
        try:
            return _to_json_number(float(words[0].replace(",", "")) * _SCALES[words[1]])
        except ValueError:
            pass
    parsed = _parse_words(words)
    if parsed is not None:
        return _to_json_number(parsed)
    raise ValueConversionError(
        f"cannot read {text!r} as a number",
        hint="write digits (10000, 10,000, 1e4), a shorthand (10k) or words (ten thousand)",
    )


def parse_bool(text: str) -> bool:
    """Read yes/no words as a boolean."""
    word = text.strip().lower()
    if word in {"true", "yes", "y", "on", "only", "1"}:
        return True
    if word in {"false", "no", "n", "off", "0", "all", "any"}:
        return False
    raise ValueConversionError(f"cannot read {text!r} as true or false", hint="use true/false or yes/no")


def normalize_enum_text(text: str) -> str:
    """Fold text for enum matching: lower case, letters and digits only ('Seurat v3' -> 'seuratv3')."""
    return re.sub(r"[^0-9a-z]+", "", text.lower())


class MoleculeLexicon:
    """Molecule names and their SMILES, read from a ``name<TAB>smiles[<TAB>...]`` file."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self._by_name = {self._key(name): smiles for name, smiles in names.items()}
        self.names: list[str] = list(names)

    @staticmethod
    def _key(name: str) -> str:
        return " ".join(name.lower().split())

    @classmethod
    def from_file(cls, path: str | Path) -> MoleculeLexicon:
        """Load a TSV lexicon with a header row whose first two columns are name and smiles."""
        names: dict[str, str] = {}
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header[:2]] != ["name", "smiles"]:
                raise ValueConversionError(
                    "molecule lexicon must start with a 'name<TAB>smiles' header", hint=str(path)
                )
            for row in reader:
                if len(row) >= 2 and row[0].strip():
                    names[row[0].strip()] = row[1].strip()
        return cls(names)

    def smiles(self, name: str) -> str | None:
        """The SMILES of a molecule name (case and spacing ignored), or None."""
        return self._by_name.get(self._key(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)


@lru_cache(maxsize=None)
def default_lexicon() -> MoleculeLexicon:
    """The molecule lexicon shipped in ``grammars/shared/molecules.tsv``."""
    return MoleculeLexicon.from_file(shared_grammar_dir() / "molecules.tsv")


def shared_grammar_dir() -> Path:
    """The folder of shared grammar pieces (``grammars/shared``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "grammars" / "shared", here / "grammars" / "shared"):
        if candidate.is_dir():
            return candidate
    return here.parent / "grammars" / "shared"


def convert(
    kind: ValueKind | str,
    text: str,
    *,
    enum: Iterable[str] | None = None,
    lexicon: MoleculeLexicon | None = None,
    items: list[str] | None = None,
) -> object:
    """Convert the surface text of a slot to the JSON value of ``kind``.

    Parameters
    ----------
    kind
        The value kind (``int``, ``number``, ``molecule``, ``str_list``, ...).
    text
        The text the slot matched, as written (case kept).
    enum
        The allowed values, for ``enum`` (matched after :func:`normalize_enum_text`).
    lexicon
        Molecule names; defaults to the shipped lexicon.
    items
        For list kinds, the item texts found by the parse (each converted by the item kind);
        when None the whole text is one item.

    Raises
    ------
    ValueConversionError
        When the text is not a value of that kind.
    """
    kind = ValueKind(kind)
    if kind.is_list:
        parts = items if items is not None else [text]
        return [convert(kind.item_kind, part, enum=enum, lexicon=lexicon) for part in parts]
    stripped = " ".join(text.split())
    if kind is ValueKind.INT:
        number = parse_number(stripped)
        if isinstance(number, float):
            raise ValueConversionError(f"{text!r} is not a whole number", hint="integer arguments take whole numbers")
        return number
    if kind is ValueKind.NUMBER:
        return parse_number(stripped)
    if kind is ValueKind.BOOL:
        return parse_bool(stripped)
    if kind is ValueKind.ENUM:
        options = list(enum or [])
        folded = normalize_enum_text(stripped)
        for option in options:
            if normalize_enum_text(option) == folded:
                return option
        raise ValueConversionError(
            f"{text!r} is not one of {options}",
            hint="write the enum value itself, or give the phrase its own const_<argument>__<value> rule",
        )
    if kind is ValueKind.MOLECULE:
        smiles = (lexicon or default_lexicon()).smiles(stripped)
        return smiles if smiles is not None else stripped.replace(" ", "")
    # str and path keep their text as written
    return stripped.strip("'\"`")
