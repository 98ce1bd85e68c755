"""Derivations given in advance: replaying a parse, and the cached derivations of number forms.

A :class:`DNode` is a (partial) derivation: an expansion and, per child, a sub-derivation, a
token text, or :data:`FREE` for a child the sampler chooses. :func:`derivation_of_parse` rebuilds
one from a parse (what :func:`grammar_engine.sampling.near` replays); the number forms of
:class:`grammar_engine.generation.Generator` are parsed once per digit shape into templates whose
tokens are ranges of words (:func:`piece_shape`, :func:`spans_to_pieces`, :func:`fill_pieces`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lark.exceptions import LarkError

from .gen_tables import GenTables, gen_tables, shared

if TYPE_CHECKING:
    import lark

    from .grammar import Grammar

__all__ = ["DNode", "FREE", "derivation_of_parse", "fill_pieces", "parse_from", "piece_shape", "spans_to_pieces"]

FREE = None
"""A child of a :class:`DNode` left for the sampler to choose."""


class DNode:
    """A (partial) derivation: one expansion and, per child, a sub-derivation, a token text or FREE."""

    __slots__ = ("exp", "kids")

    def __init__(self, exp: int, kids: list[Any]) -> None:
        self.exp = exp
        self.kids = kids

    def __repr__(self) -> str:
        return f"DNode({self.exp}, {self.kids!r})"



_NUMBER_SCALES = frozenset({"hundred", "thousand", "million", "billion"})
_NUMBER_UNITS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety".split()
)


def piece_shape(piece: str) -> str:
    if any(c.isdigit() for c in piece):
        return re.sub(r"\d", "0", piece)
    low = piece.lower()
    if low in _NUMBER_UNITS:
        return "<unit>"
    if low in _NUMBER_SCALES:
        return "<scale>"
    return low


def spans_to_pieces(node: DNode, text: str) -> DNode | None:
    """Turn character spans into ranges of space-separated pieces (None if a token splits a piece)."""
    starts, ends, pos = {}, {}, 0
    for k, piece in enumerate(text.split(" ")):
        starts[pos] = k
        ends[pos + len(piece)] = k + 1
        pos += len(piece) + 1
    root = DNode(node.exp, [])
    stack = [(node, root)]
    while stack:
        src, dst = stack.pop()
        for kid in src.kids:
            if isinstance(kid, DNode):
                copy = DNode(kid.exp, [])
                dst.kids.append(copy)
                stack.append((kid, copy))
            elif isinstance(kid, tuple):
                if kid[0] not in starts or kid[1] not in ends:
                    return None
                dst.kids.append((starts[kid[0]], ends[kid[1]]))
            else:
                dst.kids.append(kid)
    return root


def fill_pieces(node: DNode, text: str) -> DNode:
    """Replace piece ranges in a cached form derivation by the words of ``text``."""
    pieces = text.split(" ")
    root = DNode(node.exp, [])
    stack = [(node, root)]
    while stack:
        src, dst = stack.pop()
        for kid in src.kids:
            if isinstance(kid, DNode):
                copy = DNode(kid.exp, [])
                dst.kids.append(copy)
                stack.append((kid, copy))
            elif isinstance(kid, tuple):
                dst.kids.append(" ".join(pieces[kid[0]:kid[1]]))
            else:
                dst.kids.append(kid)
    return root


def parse_from(grammar: Grammar, text: str, symbol: str) -> tuple[int, ...] | None:
    """Expansions (post-order) of a parse of ``text`` from ``symbol``, or None.

    An Earley grammar is parsed with its own parser from that symbol (Earley predicts from any
    nonterminal); an LALR one, whose tables know only its start symbols, with an Earley parser
    built once for the purpose.
    """
    try:
        if grammar.parser_kind == "earley":
            grammar._used.clear()
            grammar._lark.parser.parser.parse(text, symbol)
            return tuple(grammar._used)
        helper = shared(grammar, "form_parser", lambda: _form_parser(grammar))
        if helper is None:
            return None
        parser, used = helper
        used.clear()
        parser.parse(text, start=symbol)
        return tuple(used)
    except (LarkError, KeyError):
        return None


def _form_parser(grammar: Grammar) -> tuple[lark.Lark, list[int]] | None:
    starts = sorted(gen_tables(grammar).numeric_vals)
    try:
        parser = grammar._build("earley", start=[gen_tables(grammar).start, *starts])
    except Exception:  # noqa: BLE001 - without it, numbers are rendered token by token
        return None
    used: list[int] = []
    _instrument(parser, grammar._lark, used)
    return parser, used


def _instrument(parser: lark.Lark, main: lark.Lark, used: list[int]) -> None:
    """Record, in ``used``, the index (in ``main.rules``) of every rule ``parser`` reduces."""
    index = {(str(r.origin.name), tuple(s.name for s in r.expansion), r.alias): i for i, r in enumerate(main.rules)}
    callbacks = parser._callbacks
    for rule, callback in list(callbacks.items()):
        position = index.get((str(rule.origin.name), tuple(s.name for s in rule.expansion), rule.alias))
        if position is None:
            continue

        def wrapped(children: list[Any], _cb: Any = callback, _pos: int = position) -> Any:
            used.append(_pos)
            return _cb(children)

        callbacks[rule] = wrapped


def derivation_of_parse(t: GenTables, text: str, post: Sequence[int], *, as_spans: bool = False) -> DNode | None:
    """Rebuild the derivation of a parse from the expansions its callbacks reduced (post-order).

    Token texts are recovered by matching each terminal's pattern at its place in ``text`` (Lark
    matches terminals the same way), skipping ignored text between tokens. Returns None when the
    expansions do not form one derivation of ``text``. With ``as_spans``, terminal children are
    ``(start, end)`` offsets instead of texts.
    """
    stack: list[DNode] = []
    for e in post:
        if e >= len(t.exps):
            return None
        k = t.exps[e].n_nonterminals
        if k > len(stack):
            return None
        kids = stack[len(stack) - k:] if k else []
        if k:
            del stack[len(stack) - k:]
        stack.append(DNode(e, list(kids)))
    if len(stack) != 1:
        return None
    root = stack[0]
    pos = 0
    walk: list[tuple[DNode, int, list[Any]]] = [(root, 0, [])]
    nt_queues: dict[int, list[DNode]] = {}
    while walk:
        node, i, built = walk.pop()
        x = t.exps[node.exp]
        if i == 0:
            nt_queues[id(node)] = list(node.kids)
        if i >= len(x.children):
            node.kids = built
            nt_queues.pop(id(node), None)
            continue
        if x.is_term[i]:
            pos = _skip_ignored(t, text, pos)
            pattern = t.patterns.get(x.children[i])
            match = pattern.match(text, pos) if pattern is not None else None
            if match is None or match.end() == pos:
                return None
            built.append((pos, match.end()) if as_spans else match.group())
            pos = match.end()
            walk.append((node, i + 1, built))
        else:
            queue = nt_queues[id(node)]
            if not queue:
                return None
            child = queue.pop(0)
            if t.exps[child.exp].origin != x.children[i]:
                return None
            built.append(child)
            walk.append((node, i + 1, built))
            walk.append((child, 0, []))
    if _skip_ignored(t, text, pos) != len(text):
        return None
    return root


def _skip_ignored(t: GenTables, text: str, pos: int) -> int:
    moved = True
    while moved and pos < len(text):
        moved = False
        for pattern in t.ignore:
            m = pattern.match(text, pos)
            if m and m.end() > pos:
                pos = m.end()
                moved = True
    return pos
