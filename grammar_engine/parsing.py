"""Parse tree -> ordered tool calls: the decomposition of one instruction.

The walk reads only node names (see :mod:`grammar_engine.slots`) and the original text under
each node, so it works the same for trees from Earley and LALR, from parsing and from sampling.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lark import Token, Tree

from .errors import ValueConversionError
from .slots import SlotKind, TypedName, const_literal_text
from .values import MoleculeLexicon, ValueKind, convert

if TYPE_CHECKING:
    from .derivation import RuleTable
    from .tools import ToolRegistry

__all__ = ["Decomposition", "extract_calls"]


@dataclass
class Decomposition:
    """The result of parsing one instruction.

    Attributes
    ----------
    text
        The normalized instruction that was parsed.
    tree
        Lark's parse tree (typed nonterminals keep their names).
    calls
        The tool calls in the order they run, in the JSON form of the tool contract.
    expansions
        Indices (into ``grammar.table.expansions``) of the compiled expansions the parse used.
    """

    text: str
    tree: Tree
    calls: list[dict[str, Any]]
    expansions: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The calls and text as a JSON-ready mapping."""
        return {"instruction": self.text, "calls": self.calls}


@dataclass
class _Slot:
    typed: TypedName
    node: Tree


@dataclass
class _Pending:
    tool: str
    slots: list[_Slot] = field(default_factory=list)


_Item = _Slot | _Pending


class _Extractor:
    def __init__(self, text: str, table: RuleTable, tools: ToolRegistry, lexicon: MoleculeLexicon | None):
        self.text = text
        self.table = table
        self.tools = tools
        self.lexicon = lexicon

    # -- structure ---------------------------------------------------------------------------

    def visit(self, node: Tree) -> list[_Item]:
        typed = self.table.typed.get(node.data)
        if typed is not None and typed.kind.fills_argument:
            return [_Slot(typed, node)]
        if typed is not None and typed.kind is SlotKind.VAL:
            return []
        segments = [self.visit(child) for child in node.children if isinstance(child, Tree)]
        if typed is None:
            return [item for seg in segments for item in seg]
        if typed.kind is SlotKind.CALL:
            items = [item for seg in segments for item in seg]
            pending = _Pending(typed.target, [i for i in items if isinstance(i, _Slot)])
            nested = [i for i in items if isinstance(i, _Pending)]
            return [pending, *nested]
        if typed.kind is SlotKind.GROUP:
            items = [item for seg in segments for item in seg]
            shared = [i for i in items if isinstance(i, _Slot)]
            calls = [i for i in items if isinstance(i, _Pending)]
            for call in calls:
                own = {s.typed.target for s in call.slots}
                schema = self.tools.tools.get(call.tool)
                for slot in shared:
                    if slot.typed.target not in own and schema and slot.typed.target in schema.arguments:
                        call.slots.append(slot)
            return list(calls)
        # reversed: the children's segments run in reverse spoken order
        return [item for seg in reversed(segments) for item in seg]

    # -- values ------------------------------------------------------------------------------

    def node_text(self, node: Tree | Token) -> str:
        if isinstance(node, Token):
            return str(node)
        meta = node.meta
        if getattr(meta, "empty", True):
            return ""
        return self.text[meta.start_pos:meta.end_pos]

    def value_parts(self, node: Tree, *, items: bool = False) -> list[Tree | Token]:
        """Top-level ``val_`` nodes under a slot, else its regular-expression tokens.

        With ``items`` (list arguments), a ``val_`` node of a list kind is opened up into its
        own items, so ``CST3, NKG7 and PPBP`` gives three parts.
        """
        vals: list[Tree | Token] = []
        tokens: list[Tree | Token] = []
        stack: list[Tree | Token] = list(reversed(node.children))
        while stack:
            child = stack.pop()
            if isinstance(child, Token):
                if self.table.terminals.get(child.type, "") is None:
                    tokens.append(child)
                continue
            typed = self.table.typed.get(child.data)
            if typed is not None and typed.kind is SlotKind.VAL:
                kind = typed.value_kind
                if items and kind is not None and kind.is_list:
                    vals.extend(self.value_parts(child, items=True))
                else:
                    vals.append(child)
                continue
            stack.extend(reversed(child.children))
        return vals or tokens

    def slot_values(self, tool: str, slot: _Slot, done: list[dict[str, Any]]) -> list[Any]:
        """The value(s) a slot gives argument ``slot.typed.target`` of ``tool`` (several for each_)."""
        schema = self.tools.tools[tool]
        arg = slot.typed.target
        spec = schema.arguments.get(arg)
        if spec is None:
            raise ValueConversionError(f"tool {tool!r} has no argument {arg!r} (slot {slot.typed.name})")
        kind, enum = spec.kind, spec.enum
        kind_of = slot.typed.kind
        if kind_of is SlotKind.CONST:
            text = const_literal_text(slot.typed.value or "", kind in (ValueKind.INT, ValueKind.NUMBER))
            if kind.item_kind is ValueKind.STR:  # rule names are lower case: restore a known value's case
                text = self.tools.known_value(text) or text
            if kind.is_list:
                return [[convert(kind.item_kind, text, enum=enum, lexicon=self.lexicon)]]
            return [convert(kind, text, enum=enum, lexicon=self.lexicon)]
        if kind_of is SlotKind.REF:
            return [self.resolve_ref(arg, kind, done)]
        parts = self.value_parts(slot.node, items=kind.is_list or kind_of is SlotKind.EACH)
        if kind_of is SlotKind.EACH:
            texts = [self.node_text(p) for p in parts] or [self.node_text(slot.node)]
            item_kind = kind.item_kind
            values = [convert(item_kind, t, enum=enum, lexicon=self.lexicon) for t in texts]
            return [[v] for v in values] if kind.is_list else values
        if kind.is_list:
            texts = [self.node_text(p) for p in parts] or [self.node_text(slot.node)]
            return [convert(kind, "", enum=enum, lexicon=self.lexicon, items=texts)]
        if parts and isinstance(parts[0], Tree):
            text = self.node_text(parts[0])
        elif parts:  # regex tokens only: the span from the first to the last
            first, last = parts[0], parts[-1]
            text = self.text[first.start_pos:last.end_pos] if first.start_pos is not None else str(first)
        else:
            text = self.node_text(slot.node)
        return [convert(kind, text, enum=enum, lexicon=self.lexicon)]

    def resolve_ref(self, arg: str, kind: ValueKind, done: list[dict[str, Any]]) -> Any:
        for call in reversed(done):
            if arg in call["arguments"]:
                return call["arguments"][arg]
        for call in reversed(done):
            schema = self.tools.tools.get(call["name"])
            for name, value in call["arguments"].items():
                if schema and name in schema.arguments and schema.arguments[name].kind is kind:
                    return value
        raise ValueConversionError(f"nothing earlier for '{arg}' to refer to")

    def materialize(self, items: list[_Item]) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        for item in items:
            if isinstance(item, _Slot):
                raise ValueConversionError(
                    f"slot {item.typed.name} ({self.node_text(item.node)!r}) is not inside any call"
                )
            schema = self.tools.tools.get(item.tool)
            choices: list[tuple[str, list[Any]]] = []
            position: dict[str, int] = {}
            for slot in item.slots:
                target = slot.typed.target
                if target not in position:
                    position[target] = len(choices)
                    choices.append((target, self.slot_values(item.tool, slot, done)))
                    continue
                # a second slot for a list argument adds its items ("mito and ribo" -> ["mt", "ribo"]);
                # for any other argument the first slot wins
                spec = schema.arguments.get(target) if schema else None
                earlier = choices[position[target]][1]
                if spec is not None and spec.kind.is_list and slot.typed.kind is not SlotKind.EACH and len(earlier) == 1:
                    (more,) = self.slot_values(item.tool, slot, done)[:1] or [[]]
                    merged = list(earlier[0]) + [v for v in more if v not in earlier[0]]
                    choices[position[target]] = (target, [merged])
            names = [name for name, _ in choices]
            for combo in itertools.product(*(values for _, values in choices)):
                call = {"name": item.tool, "arguments": dict(zip(names, combo))}
                done.append(self.tools.normalize_call(call))
        return done


def extract_calls(
    tree: Tree,
    text: str,
    table: RuleTable,
    tools: ToolRegistry,
    lexicon: MoleculeLexicon | None = None,
) -> list[dict[str, Any]]:
    """The ordered tool calls a parse tree expresses.

    Parameters
    ----------
    tree
        A parse tree whose node names follow the typing convention.
    text
        The text the tree was parsed from (values are read from its spans).
    table
        The grammar's rule table (typing, terminals).
    tools
        The domain's tool schemas; arguments equal to their default are dropped.

    Raises
    ------
    ValueConversionError
        When a slot's text cannot become its argument's value, or a slot stands outside a call.
    """
    extractor = _Extractor(text, table, tools, lexicon)
    return extractor.materialize(extractor.visit(tree))


def calls_equal(a: list[Mapping[str, Any]], b: list[Mapping[str, Any]]) -> bool:
    """Exact equality of two call lists in the JSON form (numbers compare as numbers)."""
    import json

    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
