"""Per-grammar tables for generation: usable expansions, minimum heights, typing, tool reach.

Built once per grammar from the compiled rules (:func:`gen_tables`) and shared by every
generator, chooser and coverage measure. Also a small per-grammar store for caches whose content
is a pure function of the grammar (:func:`shared`).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .derivation import min_depths, productive_symbols, reachable_symbols
from .slots import SlotKind, TypedName
from .values import ValueKind

if TYPE_CHECKING:
    from .grammar import Grammar
    from .tools import ArgumentSpec

__all__ = ["GenTables", "gen_tables", "shared"]

@dataclass(frozen=True)
class _Exp:
    index: int
    origin: str
    node_id: str
    name: str  # the tree node's name (alias, template or origin)
    children: tuple[str, ...]
    is_term: tuple[bool, ...]
    keep: tuple[bool, ...]  # the child stays in the tree (not a filtered token)
    expand: tuple[bool, ...]  # the child is a _rule inlined into this node
    expand1: bool  # ?rule without alias: a single child replaces the node
    typed: TypedName | None
    user: bool  # written by a person (origin does not start with "__")
    n_nonterminals: int
    code: int = 0  # the typed kind, as one of the _K_* codes below
    target: str = ""


_K_NONE, _K_CALL, _K_FILL, _K_REF, _K_VAL, _K_GROUP, _K_REVERSED = range(7)
_KIND_CODE = {SlotKind.CALL: _K_CALL, SlotKind.ARG: _K_FILL, SlotKind.EACH: _K_FILL, SlotKind.CONST: _K_FILL,
              SlotKind.REF: _K_REF, SlotKind.VAL: _K_VAL, SlotKind.GROUP: _K_GROUP, SlotKind.REVERSED: _K_REVERSED}


@dataclass
class GenTables:
    """Per-grammar tables for generation, built once (see :func:`gen_tables`)."""

    exps: list[_Exp]
    alts: dict[str, tuple[int, ...]]  # usable expansions per nonterminal
    exp_depth: dict[int, int]
    sym_depth: dict[str, int]
    max_alt_depth: dict[str, int]
    literal: dict[str, str | None]
    tool_index: dict[str, int]
    tool_bits: list[int]  # per expansion: tools whose calls it can contain
    arg_specs: dict[str, ArgumentSpec]  # argument name -> a schema with that argument (first tool)
    tool_args: dict[str, dict[str, ArgumentSpec]]  # tool -> its arguments
    numeric_vals: dict[str, ValueKind]  # val_int / val_number nonterminals
    ref_needs: dict[int, tuple[str, ...]]  # expansion -> arguments its ref_ children refer to
    ref_symbols: frozenset[str]  # nonterminals with an expansion in ref_needs
    tool_choice: frozenset[str]  # nonterminals whose expansions lead to different tools
    start: str
    ignore: list[re.Pattern[str]]
    patterns: dict[str, re.Pattern[str]]


_TABLES: weakref.WeakKeyDictionary[Any, GenTables] = weakref.WeakKeyDictionary()


def gen_tables(grammar: Grammar) -> GenTables:
    """The generation tables of ``grammar`` (cached per grammar object)."""
    found = _TABLES.get(grammar)
    if found is None:
        found = _build_tables(grammar)
        _TABLES[grammar] = found
    return found


def _build_tables(grammar: Grammar) -> GenTables:
    table = grammar.table
    rules = grammar._lark.rules  # the compiled rules, for filter_out, template names and !rule
    sym_depth, exp_depth = min_depths(table)
    live = productive_symbols(table) & reachable_symbols(table)
    renderable = {name for name, pattern in table.patterns.items() if pattern}
    exps: list[_Exp] = []
    for exp, rule in zip(table.expansions, rules):
        keep_all = bool(rule.options.keep_all_tokens)
        is_term = tuple(sym.is_term for sym in rule.expansion)
        keep = tuple(keep_all or not (sym.is_term and sym.filter_out) for sym in rule.expansion)
        expand = tuple((not sym.is_term) and sym.name.startswith("_") for sym in rule.expansion)
        name = str(rule.alias or rule.options.template_source or rule.origin.name)
        typed = table.typed.get(exp.alias or exp.origin)
        exps.append(_Exp(
            index=exp.index, origin=exp.origin, node_id=exp.node_id, name=name, children=exp.children,
            is_term=is_term, keep=keep, expand=expand,
            expand1=bool(rule.options.expand1) and not rule.alias,
            typed=typed, user=not exp.origin.startswith("__"),
            n_nonterminals=sum(1 for t in is_term if not t),
            code=_KIND_CODE[typed.kind] if typed is not None else _K_NONE,
            target=typed.target if typed is not None else "",
        ))
    alts: dict[str, tuple[int, ...]] = {}
    for origin, group in table.by_origin.items():
        usable = tuple(
            e.index for e in group
            if e.index in exp_depth and origin in live
            and all(c in renderable or not exps[e.index].is_term[i] for i, c in enumerate(e.children))
        )
        if usable:
            alts[origin] = usable
    max_alt_depth = {o: max(exp_depth[i] for i in ix) for o, ix in alts.items()}
    # tools each expansion can reach (for precondition steering)
    tools = list(grammar.tools.tools)
    tool_index = {t: i for i, t in enumerate(tools)}
    direct: list[int] = [0] * len(exps)
    for e in exps:
        if e.typed is not None and e.typed.kind is SlotKind.CALL and e.typed.target in tool_index:
            direct[e.index] = 1 << tool_index[e.typed.target]
    sym_bits: dict[str, int] = {}
    tool_bits = list(direct)
    changed = True
    while changed:  # fixed point over the (possibly cyclic) rule graph
        changed = False
        for e in exps:
            bits = direct[e.index]
            for child, term in zip(e.children, e.is_term):
                if not term:
                    bits |= sym_bits.get(child, 0)
            if bits != tool_bits[e.index]:
                tool_bits[e.index] = bits
                changed = True
            if bits | sym_bits.get(e.origin, 0) != sym_bits.get(e.origin, 0):
                sym_bits[e.origin] = sym_bits.get(e.origin, 0) | bits
                changed = True
    arg_specs: dict[str, ArgumentSpec] = {}
    for tool in grammar.tools:
        for name, spec in tool.arguments.items():
            arg_specs.setdefault(name, spec)
    numeric_vals = {
        name: typed.value_kind for name, typed in table.typed.items()
        if typed.kind is SlotKind.VAL and typed.value_kind in (ValueKind.INT, ValueKind.NUMBER)
        and name in alts
    }
    ref_needs: dict[int, tuple[str, ...]] = {}
    for e in exps:
        needs = []
        for child, term in zip(e.children, e.is_term):
            if term:
                continue
            typed = table.typed.get(child)
            if typed is not None and typed.kind is SlotKind.REF:
                needs.append(typed.target)
        if needs:
            ref_needs[e.index] = tuple(needs)
    ref_symbols = frozenset(exps[i].origin for i in ref_needs)
    tool_choice = frozenset(o for o, ix in alts.items() if len({tool_bits[i] for i in ix}) > 1)
    ignore_names = list(getattr(grammar._lark.lexer_conf, "ignore", ()))
    ignore = [re.compile(table.patterns[n], re.IGNORECASE) for n in ignore_names if n in table.patterns]
    patterns = {n: re.compile(p, re.IGNORECASE) for n, p in table.patterns.items()}
    return GenTables(exps, alts, exp_depth, sym_depth, max_alt_depth, dict(table.terminals), tool_index,
                     tool_bits, arg_specs, {t.name: t.arguments for t in grammar.tools}, numeric_vals, ref_needs, ref_symbols, tool_choice, table.start, ignore, patterns)



_SHARED: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def shared(grammar: Grammar, key: str, make: Any) -> Any:
    """A per-grammar object shared by every generator (caches whose content is a pure function)."""
    slot = _SHARED.setdefault(grammar, {})
    if key not in slot:
        slot[key] = make()
    return slot[key]
