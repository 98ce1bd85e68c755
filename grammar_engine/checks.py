"""Static checks of a tool-typed grammar, and the summary ``grammar-engine check`` prints.

Each finding is a :class:`~grammar_engine.errors.Diagnostic` with the file, line and column of
the rule at fault and a hint. The checks read the compiled grammar and its derivation tables
only; nothing in the grammar runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any

from .derivation import (
    count_derivations,
    productive_symbols,
    reachable_symbols,
    typed_descendants,
)
from .errors import Diagnostic, DiagnosticList, InstructionParseError, ValueConversionError
from .slots import SlotKind, const_literal_text
from .values import ValueKind, convert

if TYPE_CHECKING:
    from .grammar import Grammar

__all__ = ["CheckReport", "check_grammar"]

#: Finite slot languages larger than this are not enumerated for the conversion check.
MAX_ENUMERATED_STRINGS = 300


@dataclass
class CheckReport:
    """Everything ``check`` found, plus the grammar's size."""

    diagnostics: list[Diagnostic]
    tools: int
    rules: int
    expansions: int
    language_size: int
    language_infinite: bool
    depth_bound: int
    per_tool: dict[str, int]
    recorded_total: int = 0
    recorded_parsed: int = 0
    recorded_correct: int = 0
    recorded_with_gold: int = 0
    ambiguous: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """The human-readable summary ``check`` prints after the diagnostics."""
        bound = f" (derivations up to depth {self.depth_bound}; the language is infinite)" if self.language_infinite else ""
        lines = [
            f"tools: {self.tools}   rules: {self.rules}   expansions: {self.expansions}",
            f"distinct instructions: {_big(self.language_size)}{bound}",
        ]
        for tool, count in sorted(self.per_tool.items()):
            lines.append(f"  {tool:<28} {_big(count):>14} phrasings")
        if self.recorded_total:
            share = self.recorded_parsed / self.recorded_total
            lines.append(
                f"recorded: {self.recorded_parsed}/{self.recorded_total} parse ({share:.0%})"
                + (f", {self.recorded_correct}/{self.recorded_with_gold} match their gold calls"
                   if self.recorded_with_gold else "")
            )
        if self.ambiguous:
            lines.append(f"ambiguous: {len(self.ambiguous)} instructions have parses with different calls")
        lines.append(f"{len(self.errors)} errors, {len(self.warnings)} warnings")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "ok": self.ok,
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "tools": self.tools, "rules": self.rules, "expansions": self.expansions,
            "language_size": self.language_size, "language_infinite": self.language_infinite,
            "depth_bound": self.depth_bound, "per_tool": self.per_tool,
            "recorded": {"total": self.recorded_total, "parsed": self.recorded_parsed,
                         "with_gold": self.recorded_with_gold, "correct": self.recorded_correct},
            "ambiguous": self.ambiguous,
        }


def _big(count: int) -> str:
    """Thousands separators, or scientific notation past a trillion."""
    if count < 10**12:
        return f"{count:,}"
    digits = str(count)
    return f"{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"


def _finite_strings(grammar: Grammar, symbol: str, limit: int) -> list[str] | None:
    """Every string ``symbol`` derives when it uses literals only and is finite, else None."""
    table = grammar.table
    memo: dict[str, list[str] | None] = {}
    order: list[str] = []
    stack = [symbol]
    visiting: set[str] = set()
    # iterative post-order over nonterminals; a cycle or a regex terminal makes it "not finite"
    while stack:
        name = stack[-1]
        if name in memo:
            stack.pop()
            continue
        pending = [c for exp in table.by_origin.get(name, ()) for c in exp.children
                   if c in table.by_origin and c not in memo]
        if pending and name not in visiting:
            visiting.add(name)
            for child in pending:
                if child in visiting:
                    return None
                stack.append(child)
            continue
        stack.pop()
        visiting.discard(name)
        result: list[str] | None = []
        for exp in table.by_origin.get(name, ()):
            parts: list[list[str]] = []
            for child in exp.children:
                if child in table.by_origin:
                    sub = memo.get(child)
                    if sub is None:
                        result = None
                        break
                    parts.append(sub)
                else:
                    literal = table.terminals.get(child)
                    if literal is None:
                        result = None
                        break
                    parts.append([literal])
            if result is None:
                break
            for combo in itertools.product(*parts):
                result.append(" ".join(p for p in combo if p))
                if len(result) > limit:
                    result = None
                    break
            if result is None:
                break
        memo[name] = result
        order.append(name)
    return memo.get(symbol)


def _enclosing_tools(grammar: Grammar) -> dict[str, set[str]]:
    """For each slot name, the tools whose calls (or groups of calls) it can fill."""
    table = grammar.table
    enclosing: dict[str, set[str]] = {}
    for name, typed in table.typed.items():
        if typed.kind is SlotKind.CALL:
            for slot, slot_typed in typed_descendants(table, name, stop={SlotKind.CALL, SlotKind.GROUP}):
                if slot_typed.kind.fills_argument:
                    enclosing.setdefault(slot, set()).add(typed.target)
        elif typed.kind is SlotKind.GROUP:
            below = list(typed_descendants(table, name, stop={SlotKind.CALL, SlotKind.GROUP}))
            tools = {t.target for _, t in below if t.kind is SlotKind.CALL}
            for slot, slot_typed in below:
                if slot_typed.kind.fills_argument:
                    enclosing.setdefault(slot, set()).update(tools)
    return enclosing


def _guaranteed_args(grammar: Grammar) -> dict[str, set[str]]:
    """For each nonterminal, the arguments every derivation fills outside nested calls/groups.

    A greatest fixed point: start from "everything" and shrink until stable, so recursion is fine.
    """
    table = grammar.table
    everything = {t.target for t in table.typed.values() if t.kind.fills_argument}
    filled: dict[str, set[str]] = {n: set(everything) for n in table.by_origin}

    def node_fills(exp_name: str, children: tuple[str, ...]) -> set[str]:
        out: set[str] = set()
        for child in children:
            typed = table.typed.get(child)
            if typed is not None and typed.kind.fills_argument:
                out.add(typed.target)
            elif typed is not None and typed.kind in (SlotKind.CALL, SlotKind.GROUP):
                continue
            elif child in filled:
                out |= filled[child]
        return out

    changed = True
    while changed:
        changed = False
        for origin, exps in table.by_origin.items():
            result: set[str] | None = None
            for exp in exps:
                typed = table.typed_of(exp)
                if typed is not None and typed.kind.fills_argument and exp.alias:
                    got = {typed.target}
                else:
                    got = node_fills(origin, exp.children)
                result = got if result is None else result & got
            result = result or set()
            if result != filled[origin]:
                filled[origin] = result
                changed = True
    return filled


def check_grammar(grammar: Grammar, recorded: Iterable[dict[str, Any]] | None = None) -> CheckReport:
    """Run every static check and, given recorded instructions, parse them.

    Checks: tool nonterminals without a schema; slots naming an argument their tool lacks; value
    rules of unknown kind; required arguments some derivation never fills; finite slot languages
    whose strings cannot convert to the argument's type; non-productive and unreachable rules;
    ``?``-inlined typed rules (their type would vanish from the tree); schema tools no phrase
    reaches (warning).
    """
    diags = DiagnosticList()
    table = grammar.table
    tools = grammar.tools
    user_rules = [n for n in table.by_origin if not n.startswith("__")]
    loc = grammar.location_of

    # -- typing against the schemas ----------------------------------------------------------
    for name, typed in table.typed.items():
        if typed.kind is SlotKind.CALL and typed.target not in tools:
            close = get_close_matches(typed.target, list(tools.tools), n=1)
            diags.error("unknown-tool", f"{name} names tool {typed.target!r}, which has no schema", loc(name),
                        f"did you mean call_{close[0]}?" if close else "add the tool to tools.json or rename the rule")
        if typed.kind is SlotKind.VAL and typed.value_kind is None:
            diags.error("unknown-value-kind", f"{name}: {typed.target!r} is not a value kind", loc(name),
                        "value kinds: " + ", ".join(k.value for k in ValueKind))
    for exp in table.expansions:
        if exp.inline_single and exp.origin in table.typed:
            diags.error("inlined-typed-rule", f"typed rule {exp.origin} is written '?{exp.origin}'", loc(exp.origin),
                        "drop the '?': an inlined node loses the type its name declares")
            break

    enclosing = _enclosing_tools(grammar)
    for name, typed in table.typed.items():
        if not typed.kind.fills_argument:
            continue
        owners = enclosing.get(name, set())
        if not owners:
            diags.error("slot-outside-call", f"{name} fills '{typed.target}' but no call_ or group_ rule contains it",
                        loc(name), "use the slot inside a call_<tool> (or group_) rule")
            continue
        known = [t for t in owners if t in tools]
        having = [t for t in known if typed.target in tools[t].arguments]
        if known and not having:
            args = sorted({a for t in known for a in tools[t].arguments})
            close = get_close_matches(typed.target, args, n=1)
            diags.error("unknown-argument", f"{name} fills '{typed.target}', an argument {', '.join(sorted(known))} "
                        f"{'does' if len(known) == 1 else 'do'} not have", loc(name),
                        f"did you mean {close[0]!r}?" if close else f"arguments: {', '.join(args) or '(none)'}")
            continue
        # can the slot's strings (or const value) become the argument's value?
        for tool in having:
            spec = tools[tool].arguments[typed.target]
            kind = spec.kind
            try:
                if typed.kind is SlotKind.CONST:
                    text = const_literal_text(typed.value or "", kind in (ValueKind.INT, ValueKind.NUMBER))
                    convert(kind.item_kind, text, enum=spec.enum, lexicon=grammar.lexicon)
                elif typed.kind is SlotKind.ARG and name in table.by_origin:
                    for text in _finite_strings(grammar, name, MAX_ENUMERATED_STRINGS) or []:
                        convert(kind, text, enum=spec.enum, lexicon=grammar.lexicon)
            except ValueConversionError as exc:
                diags.error("bad-value", f"{name} for {tool}.{typed.target}: {exc.message}", loc(name), exc.hint)
            break

    # -- required arguments ------------------------------------------------------------------
    filled = _guaranteed_args(grammar)
    groups = {n: t for n, t in table.typed.items() if t.kind is SlotKind.GROUP and n in table.by_origin}
    group_calls: dict[str, set[str]] = {}
    for gname in groups:
        for child, ctyped in typed_descendants(table, gname, stop={SlotKind.CALL, SlotKind.GROUP}):
            if ctyped.kind is SlotKind.CALL:
                group_calls.setdefault(child, set()).add(gname)
    outside_groups = reachable_without(grammar, stop=set(groups))
    for name, typed in table.typed.items():
        if typed.kind is not SlotKind.CALL or typed.target not in tools or name not in table.by_origin:
            continue
        own = filled.get(name, set())
        missing = [a for a in tools[typed.target].required if a not in own]
        if not missing:
            continue
        for gname in sorted(group_calls.get(name, ())):
            lacking = [a for a in missing if a not in filled.get(gname, set())]
            if lacking:
                diags.error("required-unfilled", f"in {gname}, {name} can leave required argument "
                            f"{lacking[0]!r} of {typed.target} unfilled", loc(gname),
                            f"give {gname} an arg_{lacking[0]} (or each_/ref_) in every alternative")
        if name in outside_groups:
            diags.error("required-unfilled", f"some derivation of {name} never fills required argument "
                        f"{missing[0]!r} of {typed.target}", loc(name),
                        f"add arg_{missing[0]} (or const_/each_/ref_) to every alternative of {name}")

    # -- productivity and reachability ---------------------------------------------------------
    productive = productive_symbols(table)
    reachable = reachable_symbols(table)
    for name in user_rules:
        if name not in productive:
            diags.error("non-productive", f"rule {name} has no finite derivation", loc(name),
                        "every alternative refers back to itself: add an alternative that ends")
        elif name not in reachable:
            diags.error("unreachable", f"rule {name} is not reachable from start", loc(name),
                        f"use {name} in a rule reachable from start, or delete it")
    # Lark drops rules that start cannot reach, so find them in the grammar's own text
    for name in grammar.files[0].defined_rules():
        if name not in table.by_origin:
            diags.error("unreachable", f"rule {name} is not reachable from start", loc(name),
                        f"use {name} in a rule reachable from start, or delete it")
    for tool in tools:
        if not any(t.kind is SlotKind.CALL and t.target == tool.name and (n in reachable or n not in table.by_origin)
                   for n, t in table.typed.items()):
            diags.warning("unreached-tool", f"tool {tool.name!r} has a schema but no phrase reaches it",
                          tool.location or loc("start"), f"add a call_{tool.name} rule reachable from start")

    # -- size of the language --------------------------------------------------------------------
    call_rules = [n for n, t in table.typed.items() if t.kind is SlotKind.CALL and n in table.by_origin]
    depth_bound = 12
    counts, infinite = count_derivations(table, [table.start, *call_rules], depth_bound=depth_bound)
    per_tool: dict[str, int] = {}
    for name in call_rules:
        target = table.typed[name].target
        per_tool[target] = per_tool.get(target, 0) + counts.get(name, 0)

    report = CheckReport(
        diagnostics=diags.items,
        tools=len(tools),
        rules=len(user_rules),
        expansions=len(table.expansions),
        language_size=counts.get(table.start, 0),
        language_infinite=infinite,
        depth_bound=depth_bound,
        per_tool=per_tool,
    )
    if recorded is not None:
        _check_recorded(grammar, recorded, report)
    return report


def reachable_without(grammar: Grammar, stop: set[str]) -> set[str]:
    """Nonterminals reachable from start without entering any rule in ``stop``."""
    table = grammar.table
    seen = {table.start}
    stack = [table.start]
    while stack:
        name = stack.pop()
        for exp in table.by_origin.get(name, ()):
            for child in exp.children:
                if child in table.by_origin and child not in seen and child not in stop:
                    seen.add(child)
                    stack.append(child)
    return seen


def _check_recorded(grammar: Grammar, records: Iterable[dict[str, Any]], report: CheckReport) -> None:
    for record in records:
        text = record.get("instruction") if isinstance(record, dict) else None
        if not isinstance(text, str):
            continue
        report.recorded_total += 1
        try:
            calls = grammar.parse(text).calls
        except InstructionParseError:
            continue
        report.recorded_parsed += 1
        gold = record.get("calls")
        if isinstance(gold, list) and all(  # malformed gold calls are not gold (recordings.py rejects them too)
                isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("arguments") or {}, dict)
                for c in gold):
            report.recorded_with_gold += 1
            if grammar.tools.normalize_calls(gold) == calls:
                report.recorded_correct += 1
        distinct = {repr(d.calls) for d in grammar.parse_all(text, limit=8)}
        if len(distinct) > 1:
            report.ambiguous.append(text)
