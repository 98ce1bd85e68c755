"""The tool-typing convention: what a nonterminal's name says about the calls it builds.

A grammar stays plain Lark; typing lives in rule names (and aliases), so Lark accepts every file
and the parse tree carries the types. ``__`` separates the parts of a typed name; anything after
the typed parts is a free variant label (``call_pca__terse``) so one tool can have many rules.

=========================================  ===================================================
name                                        meaning
=========================================  ===================================================
``call_<tool>[__variant]``                  each derivation expresses one call of ``<tool>``
``arg_<argument>[__variant]``               fills ``<argument>`` of the enclosing call(s) from its
                                            text (or its ``val_`` child), read by the argument's type
``val_<kind>[__variant]``                   a value of ``<kind>`` (int, number, bool, str, path,
                                            enum, molecule, str_list, molecule_list)
``const_<argument>__<value>[__variant]``    sets ``<argument>`` to the literal ``<value>``
                                            (``_`` inside a number is its decimal point)
``each_<argument>[__variant]``              a list of values: the enclosing call is made once per item
``ref_<argument>[__variant]``               "it"/"its": the value of ``<argument>`` (or of the
                                            same type) in the previous call
``group_<name>``                            calls inside share the slots written beside them
                                            ("molecular weight and logP of aspirin")
``reversed_<name>``                         the calls of its children run in reverse spoken order
                                            ("before the violin plot, compute QC metrics")
=========================================  ===================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .values import ValueKind

__all__ = ["SlotKind", "TypedName", "parse_typed_name"]


class SlotKind(str, Enum):
    """The roles a typed nonterminal can play."""

    CALL = "call"
    ARG = "arg"
    VAL = "val"
    CONST = "const"
    EACH = "each"
    REF = "ref"
    GROUP = "group"
    REVERSED = "reversed"

    @property
    def fills_argument(self) -> bool:
        """Whether this kind of node provides a value for an argument."""
        return self in (SlotKind.ARG, SlotKind.CONST, SlotKind.EACH, SlotKind.REF)


@dataclass(frozen=True)
class TypedName:
    """What a typed nonterminal's name declares."""

    name: str
    kind: SlotKind
    target: str  # tool, argument, value kind, or group label
    value: str | None = None  # the literal of a const_ name
    variant: str = ""

    @property
    def value_kind(self) -> ValueKind | None:
        """For ``val_`` names, the value kind (None if the suffix is not a known kind)."""
        if self.kind is not SlotKind.VAL:
            return None
        try:
            return ValueKind(self.target)
        except ValueError:
            return None


_TYPED_RE = re.compile(r"^(call|arg|val|const|each|ref|group|reversed)_([a-z0-9_]+)$")


def parse_typed_name(name: str) -> TypedName | None:
    """Read the typing a nonterminal name declares, or None for an untyped name.

    Examples
    --------
    >>> parse_typed_name("call_molecular_weight__question").target
    'molecular_weight'
    >>> parse_typed_name("const_method__t_test").value
    't_test'
    >>> parse_typed_name("phrase") is None
    True
    """
    match = _TYPED_RE.match(name.lstrip("?!"))
    if not match:
        return None
    kind = SlotKind(match[1])
    parts = match[2].split("__")
    target = parts[0]
    if not target:
        return None
    if kind is SlotKind.CONST:
        if len(parts) < 2 or not parts[1]:
            return None
        return TypedName(name, kind, target, parts[1], "__".join(parts[2:]))
    return TypedName(name, kind, target, None, "__".join(parts[1:]))


def const_literal_text(value: str, numeric: bool) -> str:
    """The text a ``const_`` value stands for: ``0_5`` is 0.5 for numbers, else kept as written."""
    if numeric:
        return value.replace("_", ".", 1)
    return value
