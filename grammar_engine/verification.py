"""Verify generated instructions by parsing them back, fast and exactly.

A generated sample is kept only when its text parses back, with the grammar's own parser, to
exactly its own calls. Parsing every sample with Lark's Earley parser as configured (the dynamic
lexer) would make verification the bottleneck: on the chem and singlecell grammars (hundreds of
keyword terminals, thousands of rules) it manages 10 to 20 short instructions per second, because
at every position it predicts nearly the whole grammar. :func:`build_verifier` picks, per grammar:

``lalr``
    The grammar claims ``//! parser: lalr`` (checked when it loads): its own LALR parser with the
    contextual lexer verifies. Exact, and fast.
``pruned-earley`` (the default for Earley grammars)
    The same Earley parser (same rules, order, priorities, matcher, tree builder) restricted, per
    instruction, to the rules that can appear in *some* complete derivation of that instruction:
    a rule with a terminal whose pattern matches nowhere in the text can never complete, and a rule
    needing a nonterminal left without rules can't either. Every complete derivation of the text in
    the full grammar uses only the remaining rules, so both parsers have the same derivations. When
    the pruned forest holds exactly one derivation, that is the parse the full parser returns too.
    When it holds several (up to 16), the sample is accepted only if every one of them gives its
    calls, whichever Lark picks; otherwise (or with more derivations) it is rejected as
    ``ambiguous``: Lark's choice among derivations can depend on the order items were added, which
    the pruned parse does not reproduce, and an instruction that reads two ways is a poor training
    example anyway. So every accepted sample is one the grammar's parser reads back to its calls;
    8 to 17 times faster than that parser on chem and singlecell. The derivations themselves come
    from :class:`~grammar_engine.chart_parser.ChartParser`, the same Earley algorithm over the same
    rules, patterns and prediction tables without Lark's forest objects (4 to 6 times faster
    again); Lark's forest answers only the rare texts the chart leaves to it.
``reference``
    :meth:`Grammar.parse` for every sample (``mode="reference"``).
``fast`` (opt-in, not exact)
    LALR with the contextual lexer, or Earley with the basic lexer, when the grammar builds with
    one and, calibrated on the recordings and a pilot of generated instructions, agrees with the
    reference wherever it accepts; the exact path handles what it rejects, and one sample in
    ``audit_every`` (chosen by a hash of the text) is checked by the exact path too. With the basic
    lexer the parse depends only on the token types, so a *skeleton* (token types + expansions) whose
    parse tree equalled the generated one is verified once, and later samples with that skeleton
    only need lexing. The skeleton cache is not used with the dynamic lexer, whose tokenization
    depends on the text itself.

Results are pure functions of the sample (caches only save time), so corpora are byte-identical
whatever the number of workers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from lark import Tree
from lark.exceptions import LarkError
from lark.grammar import Terminal
from lark.parsers import xearley

from .chart_parser import AMBIGUOUS as _CHART_AMBIGUOUS
from .chart_parser import UNKNOWN as _CHART_UNKNOWN
from .chart_parser import ChartParser
from .errors import GrammarEngineError, InvalidArgument
from .grammar import MAX_INSTRUCTION_CHARS, normalize_instruction
from .recordings import recorded_texts

if TYPE_CHECKING:
    import lark

    from .generation import Derivation
    from .grammar import Grammar

__all__ = [
    "AMBIGUOUS",
    "NO_PARSE",
    "PrunedEarley",
    "Verifier",
    "VerifierKind",
    "VerifyMode",
    "build_verifier",
    "calls_key",
    "verifier_for",
]


class VerifierKind(str, Enum):
    """The parser configurations a verifier can use."""

    LALR = "lalr"
    PRUNED_EARLEY = "pruned-earley"
    REFERENCE = "reference"
    LALR_CONTEXTUAL = "lalr-contextual"  # fast mode, calibrated
    EARLEY_BASIC = "earley-basic"  # fast mode, calibrated


class VerifyMode(str, Enum):
    """How samples are verified (the ``verify`` option of :func:`grammar_engine.sampling.sample`)."""

    AUTO = "auto"  # exact: LALR, or pruned Earley with the full parser for ambiguous forests
    FAST = "fast"  # calibrated faster parser first (not exact), exact path behind it
    REFERENCE = "reference"  # Grammar.parse for every sample
    OFF = "off"  # not verified (for measuring raw generation speed)


def calls_key(calls: list[dict[str, Any]]) -> str:
    """A canonical JSON string of a call list (numbers compare as numbers)."""
    return json.dumps(calls, sort_keys=True, separators=(",", ":"), default=str)


_AMBIGUOUS = object()
AMBIGUOUS = _AMBIGUOUS
"""Returned by :class:`PrunedEarley` when a text has more derivations than it reports."""

NO_PARSE = object()
"""Returned by :meth:`PrunedEarley.resolved_expansions` when the text has no derivation at all."""


class PrunedEarley:
    """Lark's Earley parser of a grammar, restricted per text to the rules that can complete.

    Parameters
    ----------
    parser
        A Lark instance built with ``parser="earley"`` and the dynamic lexer.

    Notes
    -----
    The restriction is computed from the text alone: terminals whose compiled pattern (as Lark
    compiles it, with the grammar's flags) ``search``es successfully somewhere in the text, then the
    rules all of whose terminals are among them and all of whose nonterminals keep a rule (a fixed
    point). The parser object is a shallow copy of Lark's with a filtered ``predictions`` table;
    nothing else changes. Lark's own tree callbacks are rebuilt without instrumentation.
    """

    def __init__(self, parser: lark.Lark) -> None:
        from lark.parsers import xearley

        frontend = parser.parser
        full = frontend.parser
        if not isinstance(full, xearley.Parser):
            raise InvalidArgument("PrunedEarley needs an Earley parser with the dynamic lexer")
        self.frontend = frontend
        self.full = full
        flags = parser.lexer_conf.g_regex_flags
        self.patterns = [(1 << i, re.compile(t.pattern.to_regexp(), flags)) for i, t in enumerate(parser.terminals)]
        bit = {t.name: 1 << i for i, t in enumerate(parser.terminals)}
        rules = parser.rules
        self.rules = rules
        self.index = {id(r): k for k, r in enumerate(rules)}
        # the bits of each rule's terminals (a set: a terminal named twice is one bit, not a carry into the next)
        self.rule_mask = [sum({bit.get(s.name, 0) for s in r.expansion if s.is_term}) for r in rules]
        origin_ids = {name: i for i, name in enumerate(sorted({r.origin.name for r in rules}))}
        self.rule_origin = [origin_ids[r.origin.name] for r in rules]
        self.rule_needs = [len({origin_ids[s.name] for s in r.expansion if not s.is_term and s.name in origin_ids})
                           for r in rules]
        self.users: dict[int, list[int]] = {}
        for k, r in enumerate(rules):
            for nt in {origin_ids[s.name] for s in r.expansion if not s.is_term and s.name in origin_ids}:
                self.users.setdefault(nt, []).append(k)
        from lark.parse_tree_builder import ParseTreeBuilder

        self.used: list[int] = []  # rule indices the last unambiguous parse reduced, post-order
        self.plain_callbacks = parser._parse_tree_builder.create_callback(None)
        self.callbacks = dict(self.plain_callbacks)
        for rule, callback in list(self.callbacks.items()):
            self.callbacks[rule] = self._recording(callback, self.index[id(rule)])
        self.ambiguous_callbacks = ParseTreeBuilder(
            rules, Tree, parser.options.propagate_positions, True, parser.options.maybe_placeholders
        ).create_callback(None)
        self.start = parser.options.start[0] if isinstance(parser.options.start, list) else parser.options.start
        # one-token lookahead for predictions: the terminals that can begin each rule
        self.lookahead = True
        self.match = full.term_matcher
        self.ignore = list(full.ignore)
        first, nullable = _first_terminals(rules)
        # a rule that can be empty, or begins with a terminal the lexer does not know, is always kept
        self.nullable = [empty or any(t.name not in bit for t in terms) for terms, empty in zip(first, nullable)]
        self.first_mask = [sum({bit.get(t.name, 0) for t in terms}) for terms in first]
        self.by_char, self.anywhere = _terminals_by_first_char(parser.terminals, bit)
        self.every = [(bit[t.name], Terminal(t.name)) for t in parser.terminals]
        # on ASCII text, a literal terminal matches where the text equals it (case-folded when
        # the grammar or the literal ignores case); the other terminals are tried by first character
        self.literals, literal_bits = _literal_tables(parser.terminals, bit, flags)
        # the same tables per lower-cased first character: only lengths some literal has there
        self.literals_by_char: dict[str, list[tuple[int, dict[str, list[tuple[str | None, int]]]]]] = {}
        for length, table in self.literals:
            for ch in {key[0] for key in table}:
                self.literals_by_char.setdefault(ch, []).append(
                    (length, {key: hits for key, hits in table.items() if key[0] == ch}))
        self.patterned_by_char = {ch: [e for e in entries if not e[0] & literal_bits]
                                  for ch, entries in self.by_char.items()}
        self._predicted: dict[Any, list[tuple[Any, int, int, bool]]] = {}
        self._chart: ChartParser | None = None

    @property
    def chart(self) -> ChartParser:
        """The lean chart parser over these tables (:mod:`grammar_engine.chart_parser`), built on first use."""
        if self._chart is None:
            self._chart = ChartParser(self)
        return self._chart

    def starting_with(self, char: str) -> list[tuple[int, Any]]:
        """(bit, terminal) of the terminals that can begin with ``char``."""
        if not char.isascii():  # case folding beyond ASCII ("ı" matches "I"): try every terminal
            return self.every
        return self.by_char.get(char, self.anywhere)

    def predicted(self, origin: Any) -> list[tuple[Any, int, int, bool]]:
        """(rule, index, first-terminal bits, nullable) of what predicting ``origin`` adds."""
        found = self._predicted.get(origin)
        if found is None:
            index = self.index
            found = [(r, index[id(r)], self.first_mask[index[id(r)]], self.nullable[index[id(r)]])
                     for r in self.full.predictions[origin]]
            self._predicted[origin] = found
        return found

    def _recording(self, callback: Any, position: int) -> Any:
        used = self.used

        def wrapped(children: list[Any]) -> Any:
            used.append(position)
            return callback(children)

        return wrapped

    def expansions(self, text: str) -> tuple[Tree, tuple[int, ...]] | object | None:
        """The tree and expansions (post-order) of the parse of ``text``.

        None when there is no parse, ``AMBIGUOUS`` when there are several derivations.
        """
        self.used.clear()
        tree = self.parse(text, limit=0)
        if tree is None or tree is _AMBIGUOUS:
            return tree
        return tree, tuple(self.used)

    def resolved_expansions(self, text: str) -> tuple[Tree, tuple[int, ...]] | object | None:
        """The tree and expansions (post-order) that the full parser gives ``text``, when knowable here.

        Lark resolves an ambiguous forest by taking, at every node, the family that sorts first by
        (empty, priority, rule order); only families that tie on that key are ordered by when the
        parser added them, which the pruned parse does not reproduce. Both forests hold the same
        derivations, so when no node on the way down ties, the pruned forest resolves to the full
        parser's tree. ``NO_PARSE`` when the text does not parse; None when a tie leaves the choice
        to Lark's insertion order.
        """
        from lark.parsers.earley_forest import ForestToParseTree

        found = self.chart.derivations(text)
        if found is None:
            return NO_PARSE
        if isinstance(found, list) and len(found) == 1:  # one derivation: no choice to make
            tree = self.chart.tree(found[0], text, self.plain_callbacks)
            return tree, self.chart.flatten(found[0])[0]
        root = self.forest(text)
        if root is None:
            return NO_PARSE
        visitor = self.full.forest_sum_visitor
        prioritizer = visitor and visitor()
        if _ambiguous(root):
            if prioritizer:
                prioritizer.visit(root)
            if not _resolves_without_ties(root):
                return None
        self.used.clear()
        tree = ForestToParseTree(Tree, self.callbacks, prioritizer, True, False).transform(root)
        return tree, tuple(self.used)

    def live_rules(self, text: str, matched: int | None = None) -> set[int]:
        """Indices of the rules that can take part in a complete derivation of ``text``.

        ``matched``: the bits of the terminals that match somewhere in the text, when known.
        """
        if matched is None:
            matched = 0
            for bit, pattern in self.patterns:
                if pattern.search(text) is not None:
                    matched |= bit
        missing = ~matched
        need = {k: self.rule_needs[k] for k, mask in enumerate(self.rule_mask) if not mask & missing}
        stack = [k for k, n in need.items() if n == 0]
        productive: set[int] = set()
        live: set[int] = set()
        users = self.users
        origin = self.rule_origin
        while stack:
            k = stack.pop()
            live.add(k)
            o = origin[k]
            if o in productive:
                continue
            productive.add(o)
            for u in users.get(o, ()):
                if u in need:
                    need[u] -= 1
                    if need[u] == 0:
                        stack.append(u)
        return live

    def parse(self, text: str, *, limit: int = 16) -> Tree | list[Tree] | object | None:
        """The parse of ``text`` by the full grammar's parser, as far as it can be known here.

        Returns the tree when the forest holds one derivation; every tree when it holds several
        but at most ``limit`` (Lark picks one of them; which may depend on details the pruned parse
        does not reproduce); ``_AMBIGUOUS`` when it holds more; None when there is no parse.
        """
        root = self.forest(text)
        return None if root is None else self.trees(root, limit=limit)

    def trees(self, root: Any, *, limit: int = 16) -> Tree | list[Tree] | object:
        """:meth:`parse`'s answer for a forest from :meth:`forest`."""
        from lark.parsers.earley_forest import ForestToParseTree

        visitor = self.full.forest_sum_visitor
        if not _ambiguous(root):
            return ForestToParseTree(Tree, self.callbacks, visitor and visitor(), True, False).transform(root)
        if limit <= 0 or _count_derivations(root, limit) > limit:
            return _AMBIGUOUS
        from lark.visitors import CollapseAmbiguities

        forest = ForestToParseTree(Tree, self.ambiguous_callbacks, visitor and visitor(), False, True).transform(root)
        return list(CollapseAmbiguities().transform(forest))

    def derivation(self, root: Any) -> tuple[tuple[int, ...], tuple[str, ...], tuple[int, ...]] | None:
        """The one derivation of an unambiguous forest: expansions (post-order), token types, starts.

        The expansions come in the order Lark's tree callbacks would run, so they compare with a
        generated :class:`~grammar_engine.generation.Derivation`. None when a node has more than
        one family (the forest is ambiguous).
        """
        index = self.index
        rules: list[int] = []
        types: list[str] = []
        starts: list[int] = []
        stack: list[Any] = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, int):  # a rule whose children are done
                rules.append(node)
                continue
            families = getattr(node, "_children", None)
            if families is None:  # a token
                token = node.token
                types.append(token.type)
                starts.append(token.start_pos)
                continue
            if len(families) != 1 or node.paths:
                return None
            (packed,) = families
            if not node.is_intermediate:
                stack.append(index[id(packed.rule)])
            if packed.right is not None:
                stack.append(packed.right)
            if packed.left is not None:
                stack.append(packed.left)
        return tuple(rules), tuple(types), tuple(starts)

    def forest(self, text: str) -> Any:
        """The pruned parser's shared packed parse forest of ``text``; None when it does not parse."""
        pruned = copy.copy(self.full)
        if self.lookahead:
            positions = _PositionPredictions(self, text)
            positions.live = self.live_rules(text, positions.anywhere())
            pruned.__class__ = _LookaheadEarley
            pruned.tables = positions
            pruned.predictions = positions.at(0)
        else:
            pruned.predictions = _Predictions(self.full.predictions, self.index, self.live_rules(text))
        pruned.Tree = None  # return the forest; the tree is built below
        frontend = copy.copy(self.frontend)
        frontend.parser = pruned
        try:
            return frontend.parse(text, self.start)
        except LarkError:
            return None


def _pattern_first_chars(regexp: str, flags: int) -> set[str] | None:
    """The characters a match of ``regexp`` can begin with (None: any, or unknown)."""
    try:
        import re._parser as sre_parse  # type: ignore[import-not-found]
        from re import _constants as sre_constants  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_constants  # type: ignore[no-redef]
        import sre_parse  # type: ignore[no-redef]
    c = sre_constants

    def items_first(items: Any) -> tuple[set[str] | None, bool]:
        chars: set[str] = set()
        for op, arg in items:
            first, empty = item_first(op, arg)
            if first is None:
                return None, False
            chars |= first
            if not empty:
                return chars, False
        return chars, True

    def item_first(op: Any, arg: Any) -> tuple[set[str] | None, bool]:
        if op is c.LITERAL:
            return {chr(arg)}, False
        if op is c.IN:
            chars: set[str] = set()
            for kind, value in arg:
                if kind is c.LITERAL:
                    chars.add(chr(value))
                elif kind is c.RANGE and value[1] - value[0] < 512:
                    chars.update(chr(x) for x in range(value[0], value[1] + 1))
                elif kind is c.CATEGORY and value is c.CATEGORY_DIGIT:
                    chars.update("0123456789")
                elif kind is c.CATEGORY and value is c.CATEGORY_SPACE:
                    chars.update(" \t\n\r\f\v")
                else:
                    return None, False
            return chars, False
        if op is c.BRANCH:
            chars, empty = set(), False
            for branch in arg[1]:
                first, branch_empty = items_first(branch)
                if first is None:
                    return None, False
                chars |= first
                empty |= branch_empty
            return chars, empty
        if op is c.SUBPATTERN:
            return items_first(arg[-1])
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            first, empty = items_first(arg[2])
            return first, empty or arg[0] == 0
        if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            return set(), True  # zero width
        return None, False

    try:
        first, empty = items_first(sre_parse.parse(regexp, flags))
    except Exception:  # noqa: BLE001 - an unreadable pattern can begin anywhere
        return None
    if first is None or empty:
        return None
    return first | {ch.lower() for ch in first} | {ch.upper() for ch in first}


def _terminals_by_first_char(terminals: list[Any], bit: dict[str, int]
                             ) -> tuple[dict[str, list[tuple[int, Any]]], list[tuple[int, Any]]]:
    """Terminals indexed by the characters they can begin with, and those that can begin anywhere."""
    anywhere: list[tuple[int, Any]] = []
    by_char: dict[str, list[tuple[int, Any]]] = {}
    for t in terminals:
        entry = (bit[t.name], Terminal(t.name))
        chars = _pattern_first_chars(t.pattern.to_regexp(), 0)  # to_regexp carries the terminal's flags
        if chars is None or not all(ch.isascii() for ch in chars):
            anywhere.append(entry)
            continue
        for ch in chars:
            by_char.setdefault(ch, []).append(entry)
    for ch, entries in by_char.items():
        entries.extend(anywhere)
    return by_char, anywhere


def _literal_tables(terminals: list[Any], bit: dict[str, int], flags: int
                    ) -> tuple[list[tuple[int, dict[str, list[tuple[str | None, int]]]]], int]:
    """Literal terminals by length: lower-cased text -> (exact text or None if case-free, bit)."""
    from lark.lexer import PatternStr

    by_length: dict[int, dict[str, list[tuple[str | None, int]]]] = {}
    literal_bits = 0
    for t in terminals:
        pattern = t.pattern
        if not isinstance(pattern, PatternStr) or not pattern.value or not pattern.value.isascii():
            continue
        if set(pattern.flags) - {"i"}:
            continue
        ignore_case = "i" in pattern.flags or bool(flags & re.IGNORECASE)
        value = pattern.value
        by_length.setdefault(len(value), {}).setdefault(value.lower(), []).append(
            (None if ignore_case else value, bit[t.name]))
        literal_bits |= bit[t.name]
    return sorted(by_length.items()), literal_bits


def _first_terminals(rules: list[Any]) -> tuple[list[tuple[Any, ...]], list[bool]]:
    """Per rule, the terminals that can begin it, and whether it can derive the empty string."""
    nullable_nt: set[Any] = set()
    changed = True
    while changed:  # nullable nonterminals: a fixed point
        changed = False
        for r in rules:
            if r.origin not in nullable_nt and all(not s.is_term and s in nullable_nt for s in r.expansion):
                nullable_nt.add(r.origin)
                changed = True
    first_nt: dict[Any, set[Any]] = {}
    changed = True
    while changed:  # FIRST sets of nonterminals: a fixed point
        changed = False
        for r in rules:
            into = first_nt.setdefault(r.origin, set())
            before = len(into)
            for s in r.expansion:
                if s.is_term:
                    into.add(s)
                    break
                into |= first_nt.get(s, set())
                if s not in nullable_nt:
                    break
            changed |= len(into) != before
    first: list[tuple[Any, ...]] = []
    nullable: list[bool] = []
    for r in rules:
        terms: set[Any] = set()
        empty = True
        for s in r.expansion:
            if s.is_term:
                terms.add(s)
                empty = False
                break
            terms |= first_nt.get(s, set())
            if s not in nullable_nt:
                empty = False
                break
        first.append(tuple(sorted(terms, key=lambda t: t.name)))
        nullable.append(empty)
    return first, nullable


class _PositionPredictions:
    """Per text position, Earley's prediction table restricted to live rules that can start there.

    A rule predicted at position ``i`` scans its first token at ``i`` or after text the grammar
    ignores (whitespace), so unless it can derive the empty string, one of its first terminals
    must match there. Rules failing that can take part in no derivation: dropping them keeps
    every derivation, and with it the forest, while the parser predicts a handful of rules per
    position instead of most of the grammar.
    """

    def __init__(self, owner: PrunedEarley, text: str) -> None:
        self.owner, self.text = owner, text
        self.live: set[int] = set()
        self.tables: dict[int, _PositionTable] = {}
        self.masks: dict[int, int] = {}
        self.char_masks: dict[int, int] = {}
        self.ascii = text.isascii()
        self.lowered = text.lower()

    def at(self, i: int) -> _PositionTable:
        table = self.tables.get(i)
        if table is None:
            table = self.tables[i] = _PositionTable(self, self.mask(i))
        return table

    def mask(self, i: int) -> int:
        """Bits of the terminals that match at ``i`` or after ignored text starting at ``i``."""
        found = self.masks.get(i)
        if found is None:
            owner, text = self.owner, self.text
            match, ignore = owner.match, owner.ignore
            found = 0
            seen, stack = {i}, [i]
            while stack:
                j = stack.pop()
                found |= self.mask_here(j)
                for term in ignore:  # Lark's scanner carries expectations past ignored text
                    m = match(term, text, j)
                    if m and m.end() > j and m.end() not in seen:
                        seen.add(m.end())
                        stack.append(m.end())
            self.masks[i] = found
        return found

    def anywhere(self) -> int:
        """Bits of the terminals that match somewhere in the text."""
        found = 0
        for j in range(len(self.text)):
            found |= self.mask_here(j)
        return found

    def mask_here(self, j: int) -> int:
        """Bits of the terminals that match at exactly ``j``."""
        found = self.char_masks.get(j)
        if found is None:
            found = 0
            text = self.text
            if j < len(text):
                owner = self.owner
                match = owner.match
                if self.ascii:  # literal keywords: a dictionary lookup per length
                    lowered = self.lowered
                    for length, table in owner.literals_by_char.get(lowered[j], ()):
                        hit = table.get(lowered[j:j + length])
                        if hit is not None:
                            for exact, bit in hit:
                                if exact is None or text.startswith(exact, j):
                                    found |= bit
                    candidates = owner.patterned_by_char.get(text[j], owner.anywhere)
                else:
                    candidates = owner.starting_with(text[j])
                for bit, term in candidates:
                    if match(term, text, j) is not None:
                        found |= bit
            self.char_masks[j] = found
        return found


class _PositionTable(dict):  # type: ignore[type-arg]
    """The prediction table of one position, filtered lazily per nonterminal."""

    def __init__(self, positions: _PositionPredictions, mask: int) -> None:
        super().__init__()
        self.positions, self.mask = positions, mask

    def __missing__(self, key: Any) -> list[Any]:
        live, mask = self.positions.live, self.mask
        value = [r for r, k, first, empty in self.positions.owner.predicted(key)
                 if k in live and (empty or first & mask)]
        self[key] = value
        return value


class _LookaheadEarley(xearley.Parser):  # type: ignore[misc]
    """Lark's Earley parser with the dynamic lexer, predicting from a per-position table."""

    tables: _PositionPredictions

    def predict_and_complete(self, i: int, to_scan: Any, columns: Any, transitives: Any, node_cache: Any) -> Any:
        self.predictions = self.tables.at(i)
        return super().predict_and_complete(i, to_scan, columns, transitives, node_cache)


class _Predictions(dict):  # type: ignore[type-arg]
    """Earley's prediction table restricted to live rules, filtered lazily per nonterminal."""

    def __init__(self, full: dict[Any, list[Any]], index: dict[int, int], live: set[int]) -> None:
        super().__init__()
        self.full, self.index, self.live = full, index, live

    def __missing__(self, key: Any) -> list[Any]:
        index, live = self.index, self.live
        value = [r for r in self.full[key] if index[id(r)] in live]
        self[key] = value
        return value


def _resolves_without_ties(root: Any) -> bool:
    """Whether resolving the forest picks, at every node it reaches, a family no other one ties with."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen or not hasattr(node, "_children"):
            continue
        seen.add(id(node))
        families = node.children  # sorted as Lark sorts them (loads transitive paths first)
        if not families:
            continue
        if len(families) > 1 and families[0].sort_key == families[1].sort_key:
            return False
        chosen = families[0]
        for child in (chosen.left, chosen.right):
            if child is not None:
                stack.append(child)
    return True


def _ambiguous(root: Any) -> bool:
    """Whether any symbol node reachable from ``root`` has more than one derivation."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        families = node._children
        if len(families) > 1 or node.paths:
            return True
        for packed in families:
            for child in (packed.left, packed.right):
                if child is not None and hasattr(child, "_children"):
                    stack.append(child)
    return False


def _count_derivations(root: Any, limit: int) -> int:
    """Derivations in the forest under ``root``, counted up to just past ``limit`` (cycles: past it)."""
    counts: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 0
            for packed in node._children:
                product = 1
                for child in (packed.left, packed.right):
                    if child is not None and hasattr(child, "_children"):
                        product *= counts.get(id(child), limit + 1)
                total += min(product, limit + 1)
            counts[key] = min(total, limit + 1)
            continue
        if key in counts:
            continue
        if key in on_path:
            return limit + 1
        on_path.add(key)
        stack.append((node, True))
        for packed in node._children:
            for child in (packed.left, packed.right):
                if child is not None and hasattr(child, "_children") and id(child) not in counts:
                    stack.append((child, False))
    return counts.get(id(root), limit + 1)


@dataclass
class Verifier:
    """Parse-back verification of generated samples (see the module docstring).

    Attributes
    ----------
    kind
        The configuration used first.
    exact
        True when every accepted sample was accepted by the grammar's own parser or by a
        configuration proved to give the same result.
    counts
        How many samples each path handled (``lalr``, ``pruned``, ``ambiguous``, ``reference``,
        ``fast``, ``skeleton``, ``fallback``, ``audit``, ``audit_disagreed``).
    calibration
        What calibration found per candidate (fast mode).
    """

    grammar: Grammar
    kind: VerifierKind = VerifierKind.REFERENCE
    exact: bool = True
    audit_every: int = 32
    counts: dict[str, int] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    max_cache: int = 1 << 16
    fast_parser: lark.Lark | None = None
    keyed: bool = False
    pruned: PrunedEarley | None = None
    trust_derivations: bool = True
    use_chart: bool = True
    _skeletons: set[bytes] = field(default_factory=set)

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (for manifests and benchmark reports)."""
        out: dict[str, Any] = {"kind": self.kind.value, "reference": self.grammar.parser_kind, "exact": self.exact}
        if self.fast_parser is not None:
            out.update(skeleton_cache=self.keyed, audit_every=self.audit_every, calibration=self.calibration)
        return out

    # -- the exact path ---------------------------------------------------------------------------

    def _calls(self, tree: Any, text: str) -> list[dict[str, Any]] | None:
        try:
            return self.grammar.decompose_tree(tree, text).calls
        except (GrammarEngineError, RecursionError):
            return None

    def _reference(self, text: str) -> list[dict[str, Any]] | None:
        try:
            if self.pruned is not None:  # tried already: straight to the full parser
                return self.grammar._parse_full(normalize_instruction(text)).calls
            return self.grammar.parse(text).calls
        except (GrammarEngineError, LarkError, RecursionError):
            return None

    def exact_calls(self, text: str) -> list[dict[str, Any]] | None:
        """The calls the grammar's own parser gives ``text`` (None when it does not parse)."""
        if self.kind is VerifierKind.LALR:
            self._count("lalr")
            try:
                tree = self.grammar._lark.parse(text)
            except (LarkError, RecursionError):
                return None
            return self._calls(tree, text)
        if self.pruned is not None:
            readings = self._chart_readings(text) if self.use_chart else _CHART_UNKNOWN
            if readings is not _CHART_UNKNOWN:
                if readings is None:
                    self._count("pruned")
                    return None
                if readings is not _CHART_AMBIGUOUS:
                    assert isinstance(readings, list)
                    if len({calls_key(c) if c is not None else None for c in readings}) == 1:
                        self._count("pruned" if len(readings) == 1 else "pruned_ambiguous")
                        return readings[0]
                self._count("ambiguous")
                self._count("reference")
                return self._reference(text)
            try:
                tree = self.pruned.parse(text)
            except RecursionError:
                tree = _AMBIGUOUS
            if tree is None:
                self._count("pruned")
                return None
            if isinstance(tree, list):
                # several derivations: if they all give the same calls, Lark's choice does not matter
                readings = {calls_key(c) if c is not None else None for c in (self._calls(t, text) for t in tree)}
                if len(readings) == 1:
                    self._count("pruned_ambiguous")
                    only = self._calls(tree[0], text)
                    return only
            elif tree is not _AMBIGUOUS:
                self._count("pruned")
                return self._calls(tree, text)
            self._count("ambiguous")
        self._count("reference")
        return self._reference(text)

    # -- checking samples ---------------------------------------------------------------------------

    def check(self, derivation: Derivation, calls: list[dict[str, Any]]) -> str:
        """``""`` when ``derivation.text`` parses back to exactly ``calls``, else why not.

        ``"verify"``: the text does not parse, or parses to other calls. ``"ambiguous"`` (pruned
        Earley only): the text has several derivations that do not all give these calls, so
        whether the grammar's parser reads it back as generated depends on its tie-breaking; such
        an instruction is rejected rather than handed to the full parser (sound, and far faster).
        """
        text = derivation.text
        want = calls_key(calls)
        if self.fast_parser is None:
            if self.pruned is not None and self.kind is VerifierKind.PRUNED_EARLEY:
                return self._check_pruned(text, want, derivation if self.trust_derivations else None)
            got = self.exact_calls(text)
            return "" if got is not None and calls_key(got) == want else "verify"
        key = self._skeleton_key(derivation) if self.keyed else None
        if key is not None and key in self._skeletons:
            self._count("skeleton")
            return "" if self._audit(text, want) else "verify"
        self._count("fast")
        try:
            tree = self.fast_parser.parse(text)
            got = self._calls(tree, text)
        except (LarkError, RecursionError):
            tree, got = None, None
        if got is not None and calls_key(got) == want:
            if key is not None and _same_tree(tree, derivation.tree):
                if len(self._skeletons) >= self.max_cache:
                    self._skeletons.clear()
                self._skeletons.add(key)
            return "" if self._audit(text, want) else "verify"
        self._count("fallback")
        got = self.exact_calls(text)
        return "" if got is not None and calls_key(got) == want else "verify"

    def _chart_readings(self, text: str) -> list[list[dict[str, Any]] | None] | object | None:
        """The calls of every derivation of ``text`` by the chart parser (None: no parse).

        ``_CHART_AMBIGUOUS`` past 16 derivations, ``_CHART_UNKNOWN`` where only Lark can answer.
        """
        assert self.pruned is not None
        trees = self.pruned.chart.trees(text, self.pruned.plain_callbacks)
        return [self._calls(tree, text) for tree in trees] if isinstance(trees, list) else trees

    def _check_pruned(self, text: str, want: str, derivation: Derivation | None = None) -> str:
        assert self.pruned is not None
        found = self.pruned.chart.derivations(text) if self.use_chart else _CHART_UNKNOWN
        if found is not _CHART_UNKNOWN:
            return self._check_chart(found, text, want, derivation)
        try:
            root = self.pruned.forest(text)
        except RecursionError:
            return "verify"
        if root is None:
            self._count("pruned")
            return "verify"
        if derivation is not None:
            # one derivation in the forest, and it is the generated one: the parser's tree is the
            # generated tree (same rules, same tokens at the same places), so are its calls
            found = self.pruned.derivation(root)
            if found is not None and found == (derivation.expansions, derivation.token_types,
                                               derivation.token_starts):
                self._count("pruned")
                self._count("pruned_generated")
                return ""
        try:
            tree = self.pruned.trees(root)
        except RecursionError:
            return "verify"
        if isinstance(tree, list):
            self._count("pruned_ambiguous")
            for one in tree:
                got = self._calls(one, text)
                if got is None or calls_key(got) != want:
                    return "ambiguous"
            return ""
        if tree is _AMBIGUOUS:
            self._count("ambiguous")
            return "ambiguous"
        self._count("pruned")
        got = self._calls(tree, text)
        return "" if got is not None and calls_key(got) == want else "verify"

    def _check_chart(self, found: Any, text: str, want: str, derivation: Derivation | None) -> str:
        """:meth:`_check_pruned`'s decision from the chart parser's derivations (same rules, same answers)."""
        assert self.pruned is not None
        chart = self.pruned.chart
        if found is None:
            self._count("pruned")
            return "verify"
        if found is _CHART_AMBIGUOUS:
            self._count("ambiguous")
            return "ambiguous"
        assert isinstance(found, list)
        if len(found) == 1:
            self._count("pruned")
            if derivation is not None and chart.flatten(found[0]) == (
                    derivation.expansions, derivation.token_types, derivation.token_starts):
                # the one derivation is the generated one: the parser's tree is the generated tree
                self._count("pruned_generated")
                return ""
        else:
            self._count("pruned_ambiguous")
        for one in found:
            try:
                got = self._calls(chart.tree(one, text, self.pruned.plain_callbacks), text)
            except RecursionError:
                return "verify"
            if got is None or calls_key(got) != want:
                return "ambiguous" if len(found) > 1 else "verify"
        return ""

    def _audit(self, text: str, want: str) -> bool:
        if self.audit_every <= 0:
            return True
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        if int.from_bytes(digest, "little") % self.audit_every:
            return True
        self._count("audit")
        got = self.exact_calls(text)
        ok = got is not None and calls_key(got) == want
        if not ok:
            self._count("audit_disagreed")
        return ok

    def _skeleton_key(self, derivation: Derivation) -> bytes | None:
        assert self.fast_parser is not None
        try:
            tokens = list(self.fast_parser.lex(derivation.text))
        except LarkError:
            return None
        types = tuple(tok.type for tok in tokens)
        if types != derivation.token_types or tuple(tok.start_pos for tok in tokens) != derivation.token_starts:
            return None
        return hashlib.blake2b(repr((types, derivation.expansions)).encode(), digest_size=16).digest()


def _same_tree(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except RecursionError:
        return False


def build_verifier(
    grammar: Grammar,
    *,
    mode: VerifyMode | str = VerifyMode.AUTO,
    pilot: Iterable[str] = (),
    min_accept: float = 0.5,
    audit_every: int = 32,
) -> Verifier:
    """Choose (and in fast mode calibrate) the verifier for ``grammar``; see the module docstring.

    Parameters
    ----------
    grammar
        The grammar whose samples are verified.
    mode
        ``"auto"`` (default, exact), ``"fast"``, ``"reference"``; ``"off"`` is handled by the caller.
    pilot
        Fast mode: instructions to calibrate on, besides the domain's recordings (a few hundred
        generated ones).
    min_accept
        Fast mode: smallest share of the pilot the fast parser must accept to be worth trying first.
    audit_every
        Fast mode: check one fast-verified sample in this many on the exact path too (0: never).
    """
    try:
        mode = VerifyMode(mode)
    except ValueError:
        raise InvalidArgument(f"verify must be one of {[m.value for m in VerifyMode]}, got {mode!r}") from None
    verifier = Verifier(grammar, audit_every=audit_every)
    if mode is VerifyMode.REFERENCE or mode is VerifyMode.OFF:
        return verifier
    if grammar.parser_kind == "lalr":
        verifier.kind = VerifierKind.LALR
        return verifier
    verifier.pruned = grammar._pruned_parser  # the one Grammar.parse uses: its tables are built once per grammar
    if verifier.pruned is not None:
        verifier.kind = VerifierKind.PRUNED_EARLEY
    if mode is VerifyMode.FAST:
        _calibrate(verifier, pilot, min_accept)
    return verifier


def _calibrate(verifier: Verifier, pilot: Iterable[str], min_accept: float) -> None:
    grammar = verifier.grammar
    texts = list(dict.fromkeys([*(normalize_instruction(t) for t in _recorded_texts(grammar)), *pilot]))
    if not texts:
        return
    exact = {}
    for text in texts:
        calls = verifier.exact_calls(text)
        exact[text] = calls_key(calls) if calls is not None else None
    verifier.counts.clear()
    candidates = ((VerifierKind.LALR_CONTEXTUAL, "lalr", {}), (VerifierKind.EARLEY_BASIC, "earley", {"lexer": "basic"}))
    for kind, parser_name, options in candidates:
        try:
            parser = grammar._build(parser_name, **options)
        except Exception:  # noqa: BLE001 - the grammar does not admit this configuration
            verifier.calibration[kind.value] = {"builds": False}
            continue
        accepted = disagreed = 0
        for text in texts:
            try:
                got = verifier._calls(parser.parse(text), text)
            except (LarkError, RecursionError):
                got = None
            if got is None:
                continue
            if exact[text] == calls_key(got):
                accepted += 1
            else:
                disagreed += 1
        share = accepted / len(texts)
        verifier.calibration[kind.value] = {"builds": True, "pilot": len(texts), "accepted": accepted,
                                            "disagreed": disagreed, "share": round(share, 3)}
        if disagreed == 0 and share >= min_accept:
            verifier.fast_parser, verifier.kind, verifier.exact = parser, kind, False
            verifier.keyed = kind is VerifierKind.EARLEY_BASIC
            return


def _recorded_texts(grammar: Grammar) -> list[str]:
    return [] if grammar.recorded_path is None else recorded_texts(grammar.recorded_path)


_VERIFIERS: weakref.WeakKeyDictionary[Any, dict[str, Verifier]] = weakref.WeakKeyDictionary()


def verifier_for(grammar: Grammar, mode: str = "auto", *, audit_every: int = 32) -> Verifier:
    """The verifier of ``grammar`` (cached per grammar and mode).

    In fast mode it is calibrated on the domain's recordings and a fixed pilot of 300 uniformly
    generated instructions (seed fixed, so the choice does not depend on the caller's seed).
    """
    cache = _VERIFIERS.setdefault(grammar, {})
    key = f"{mode}:{audit_every}"
    if key not in cache:
        pilot: list[str] = []
        if VerifyMode(mode) is VerifyMode.FAST and grammar.parser_kind != "lalr":
            from .generation import Chooser, Derivation, Generator

            gen = Generator(grammar)
            rng = random.Random(0x5EED)
            chooser = Chooser()
            for _ in range(300):
                d = gen.derive(rng, chooser)
                if isinstance(d, Derivation) and len(d.text) <= MAX_INSTRUCTION_CHARS:
                    pilot.append(d.text)
        cache[key] = build_verifier(grammar, mode=mode, pilot=pilot, audit_every=audit_every)
    return cache[key]
