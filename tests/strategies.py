"""Shared hypothesis strategies for the engine's tests: grammar files, inputs and corpora to fuzz with.

Everything here draws through hypothesis (no private random generator), so failures replay and shrink.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import lark
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = ROOT / "grammars" / "example"


@lru_cache(maxsize=None)
def example_text() -> str:
    return (EXAMPLE_DIR / "grammar.lark").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def example_tools() -> dict[str, Any]:
    return json.loads((EXAMPLE_DIR / "tools.json").read_text(encoding="utf-8"))


# -- grammar files -----------------------------------------------------------------------------------

#: Pieces of Lark syntax (and of our directives) that mutations insert: each is a plausible typo.
GRAMMAR_BITS = [
    ":", "|", '"', "'", "/", "(", ")", "[", "]", "{", "}", "?", "*", "+", "~", "..", "->", ".", ",", "!",
    "_", "\n", " ", "\t", "%import", "%ignore", "%declare", "%override", "%import common.WS",
    "%import numbers (integer, number)", "%import nosuch.THING", "//", "//! parser: lalr",
    "//! parser: bogus", "//! parser: earley", "start:", "start: start", "call_pca:", "arg_n_comps:",
    "call_nosuch: \"x\"", "arg_nosuch: \"y\"", "val_kind: NAME", "const_n_comps__ten: \"ten\"",
    "?call_log1p: \"log1p\"", "each_color: NAME", "ref_molecule: \"it\"", "group_g: call_logp",
    "reversed_r: step step", "/[a-z]+/", "/(a|)*/", "/\\d{2,}/", "/(?i)x/", '"\\"', "\\", "\x00",
    "é", "\u2028", "𝔘", "\ufeff", "x{y}", "t{a}: a", "NAME.2:", "rule.-1:", "NAME: NAME",
]


@st.composite
def mutated_grammars(draw: Any, base: str | None = None) -> str:
    """A grammar file after a few random edits: deletions, insertions, duplicated or swapped lines."""
    text = base if base is not None else example_text()
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "swap", "truncate", "replace"]))
        n = len(text)
        if op == "delete" and n:
            i = draw(st.integers(0, n - 1))
            j = draw(st.integers(i, min(n, i + 40)))
            text = text[:i] + text[j:]
        elif op == "insert":
            i = draw(st.integers(0, n))
            bit = draw(st.sampled_from(GRAMMAR_BITS) | st.text(max_size=6))
            text = text[:i] + bit + text[i:]
        elif op == "replace" and n:
            i = draw(st.integers(0, n - 1))
            text = text[:i] + draw(st.sampled_from(GRAMMAR_BITS)) + text[i + 1:]
        elif op == "truncate":
            text = text[:draw(st.integers(0, n))]
        else:
            lines = text.split("\n")
            if len(lines) > 1:
                a = draw(st.integers(0, len(lines) - 1))
                b = draw(st.integers(0, len(lines) - 1))
                if op == "duplicate":
                    lines.insert(b, lines[a])
                else:
                    lines[a], lines[b] = lines[b], lines[a]
                text = "\n".join(lines)
    return text


@lru_cache(maxsize=None)
def _lark_meta_parser() -> lark.Lark:
    path = Path(lark.__file__).parent / "grammars" / "lark.lark"
    return lark.Lark(path.read_text(encoding="utf-8"), parser="earley", import_paths=[str(path.parent)])


def lark_grammars() -> st.SearchStrategy[str]:
    """Random grammar files drawn from Lark's own grammar of grammars (hypothesis.extra.lark)."""
    return from_lark(_lark_meta_parser(), alphabet=st.characters(codec="ascii", exclude_characters="\r"))


def grammar_texts() -> st.SearchStrategy[str]:
    """Grammar files to load: mutated shipped ones, random ones, and arbitrary text."""
    return st.one_of(mutated_grammars(), lark_grammars(), st.text(max_size=80))


# -- tool schemas ----------------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def mutated_tools(draw: Any) -> Any:
    """``tools.json`` data with one part replaced by arbitrary JSON (wrong types, missing keys)."""
    data = json.loads(json.dumps(example_tools()))
    where = draw(st.sampled_from(["root", "tools", "tool", "name", "parameters", "properties", "argument",
                                  "required", "requires", "provides", "values", "state", "domain"]))
    junk = draw(_JSON)
    tool = data["tools"][draw(st.integers(0, len(data["tools"]) - 1))]
    if where == "root":
        return junk
    if where in ("tools", "values", "state", "domain"):
        data[where] = junk
    elif where == "tool":
        data["tools"][0] = junk
    elif where == "name":
        tool["name"] = junk
    elif where == "parameters":
        tool["parameters"] = junk
    elif where in ("properties", "required"):
        tool.setdefault("parameters", {"type": "object"})[where] = junk
    elif where == "argument":
        props = tool.setdefault("parameters", {"type": "object"}).setdefault("properties", {})
        props[draw(st.sampled_from(sorted(props) or ["x"]))] = junk
    else:
        tool[where] = junk
    return data


# -- instructions ----------------------------------------------------------------------------------------

def instruction_inputs() -> st.SearchStrategy[Any]:
    """Anything a caller might pass as an instruction: unicode, binary, empty, long, control chars."""
    words = st.sampled_from(["pca", "normalize", "to", "10k", "then", "and", ",", "log1p", "plot", "cst3",
                             "before", "of", "aspirin", "mw", "logp", "cluster", "with", "leiden", "it"])
    return st.one_of(
        st.text(),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
        st.lists(words, max_size=60).map(" ".join),
        st.binary(max_size=64),
        st.just(""),
        st.sampled_from(["\x00", "\ufeff", "\u2028", " " * 5000, "pca " * 600, "a" * 2001, "é" * 3000]),
        st.none() | st.integers() | st.lists(st.text(max_size=3), max_size=2),
    )


# -- corpora and recordings ------------------------------------------------------------------------------

_RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "id": _JSON,
        "instruction": st.text(max_size=30) | _JSON | st.sampled_from(["pca 50", "normalize to 10k then log1p"]),
        "calls": _JSON | st.lists(st.fixed_dictionaries({"name": st.text(max_size=8) | _JSON},
                                                        optional={"arguments": _JSON}), max_size=2),
    },
)


@st.composite
def jsonl_files(draw: Any) -> bytes:
    """A corrupt JSONL file: good records, wrong types, broken JSON, bad bytes, blank lines, truncation."""
    lines = draw(st.lists(st.one_of(
        _RECORDS.map(lambda r: json.dumps(r).encode()),
        _JSON.map(lambda v: json.dumps(v).encode()),
        st.just(b'{"id": 1, "instruction": "pca 50"}'),
        st.binary(max_size=20),
        st.just(b""), st.just(b"   "), st.just(b"\xff\xfe{}"), st.just(b'{"instruction": "pca'),
        st.just(b"\xef\xbb\xbf" + b'{"instruction": "pca 50"}'),
    ), max_size=8))
    data = b"\n".join(lines)
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]  # truncated mid-line
    return data


def big_line(size: int = 70_000) -> bytes:
    """One JSONL line longer than the reader's limit."""
    return json.dumps({"instruction": "x" * size}).encode()


def write(tmp: Path, name: str, data: bytes | str) -> Path:
    path = tmp / name
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    path.write_bytes(data)
    return path


__all__ = [
    "EXAMPLE_DIR", "GRAMMAR_BITS", "big_line", "example_text", "example_tools", "grammar_texts",
    "instruction_inputs", "jsonl_files", "lark_grammars", "mutated_grammars", "mutated_tools", "write",
]

