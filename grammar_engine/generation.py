"""Build one derivation of a grammar: text, Lark parse tree and the expansions used, in one pass.

This is the engine under every sampler (:mod:`grammar_engine.sampling`). A *chooser* picks an
expansion at each nonterminal; this module does the rest:

- **Termination.** Each nonterminal gets a depth budget; an expansion whose minimum derivation
  height (:func:`grammar_engine.derivation.min_depths`) exceeds the budget left is excluded, so
  every derivation ends. The walk keeps its own stack: a grammar nested 5,000 levels deep derives
  without Python recursion.
- **The tree Lark would build.** Nodes are named by alias, template or origin; ``_name`` rules are
  inlined into their parent and ``?name`` rules with one child are replaced by it; anonymous string
  tokens and ``_NAMED`` terminals are dropped (unless the rule is ``!name``); every tree gets
  ``meta.start_pos``/``end_pos`` over the generated text. :func:`grammar_engine.parsing.extract_calls`
  therefore reads the calls off the generated tree exactly as it would off a parse.
- **Text.** Tokens are joined with one space, with no space before ``, ; : . ? ) !`` or after ``(``.
  Literal terminals are written as the grammar spells them; regular-expression terminals are rendered
  by :mod:`grammar_engine.value_sources` from the enclosing slot's schema.
- **Numbers.** A ``val_int``/``val_number`` node first draws its value (from the argument's range),
  then picks among the surface forms of that value (``10000``, ``10,000``, ``10k``, ``1e4``, ``ten
  thousand``) those its rule derives (found by parsing the form once per digit shape), so a number
  is always well formed, in range and read back as drawn.
- **Preconditions.** The facts tools ``require``, ``forbid`` and ``provide`` (see
  :mod:`grammar_engine.tools`) are tracked while deriving. An expansion that can only lead to tools
  that cannot run now is not chosen. Each completed call is read off its subtree and checked; so is
  each group (its calls share slots) and each reversed block (its calls run in another order than
  spoken) as a whole. What cannot run is drawn again (twice), then the nearest choice among tools
  is drawn again without the tool that failed (24 redraws per derivation at most); the sampler
  checks the final call list in any case.
- **Values that depend on other values.** Inside a call, the values rendered so far (and ``const_``
  values) are handed to the value sources, so a value can fit the call's other arguments (reactants
  that fit the reaction, labels of the chosen key). A call that breaks a conditional value domain, or
  a templated precondition whose fix lies in values it drew, first has those values drawn again
  (:data:`VALUE_REDRAWS` rounds), each knowing the whole call; its words, tree and the positions of
  its tokens are kept and shifted in place. Only then is the call itself drawn again.
- **Replay.** A derivation can be forced, wholly or in part, from a parse (:func:`derivation_of_parse`):
  :func:`grammar_engine.sampling.near` replays an instruction and resamples one subtree.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lark import Token, Tree
from lark.tree import Meta

from .errors import GrammarEngineError
from .gen_tables import (
    _K_CALL,
    _K_FILL,
    _K_GROUP,
    _K_REF,
    _K_REVERSED,
    _K_VAL,
    GenTables,
    gen_tables,
    shared,
)
from .parsing import extract_calls
from .replay import FREE, DNode, derivation_of_parse, fill_pieces, parse_from, piece_shape, spans_to_pieces
from .slots import SlotKind, const_literal_text
from .tools import ToolSchema, fact_alternatives, fact_placeholders, fill_fact
from .value_sources import ValueContext, ValueSources, draw_number, number_forms
from .values import ValueKind, convert

if TYPE_CHECKING:
    import lark

    from .grammar import Grammar
    from .tools import ArgumentSpec

__all__ = ["FREE", "Chooser", "DNode", "Derivation", "GenTables", "Generator", "derivation_of_parse", "gen_tables"]

#: Depth allowed beyond the start symbol's minimum height, unless a sampler says otherwise.
DEFAULT_EXTRA_DEPTH = 12

_NO_SPACE_BEFORE = frozenset(",;:.?)!")
_NO_SPACE_AFTER = frozenset("(")
#: How many times the values of a call that breaks a domain or a precondition are drawn again
#: (its words kept) before the call itself is.
VALUE_REDRAWS = 2
_UNSET = object()
_NO_VALUES: dict[str, Any] = {}

class Chooser:
    """Picks expansions for a :class:`Generator`. Subclasses set the distribution.

    The base class chooses uniformly among the allowed expansions.
    """

    def choose(self, symbol: str, candidates: Sequence[int], full: bool, parent: int, rng: random.Random) -> int:
        """Pick one of ``candidates`` (expansion indices of ``symbol``).

        ``full`` says that no expansion was excluded (by depth or preconditions); ``parent`` is the
        nearest user-written expansion above, or -1.
        """
        return candidates[int(rng.random() * len(candidates))]

    def choose_form(self, entries: Sequence[tuple[str, DNode, tuple[int, ...]]], parent: int, rng: random.Random) -> int:
        """Pick among the surface forms of a drawn number: ``(text, derivation, expansions)``."""
        return int(rng.random() * len(entries))

    def prefer(self, tool: str | None, argument: str | None) -> tuple[Any, ...]:
        """Values wanted for ``tool.argument`` (tried first by the value sources)."""
        return ()

    def note(self, exp: int, parent: int) -> None:
        """Called when expansion ``exp`` is committed under user expansion ``parent``."""

    def note_tool(self, tool: str) -> None:
        """Called when a call of ``tool`` is completed during the derivation."""

    def begin(self) -> None:
        """Called before each derivation."""

    def accept(self, sample: Any) -> None:
        """Called with each sample that passed every check."""

    def reject(self) -> None:
        """Called when a derivation was rejected."""


@dataclass
class Derivation:
    """One generated derivation (before calls are read off and verified)."""

    text: str
    tree: Tree | Token
    expansions: tuple[int, ...]  # post-order, as Lark's callbacks see them
    token_types: tuple[str, ...]
    token_starts: tuple[int, ...]
    phrasing: tuple[str, ...]  # call expansion ids, in text order


class _Failure(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


# frame fields (a list per frame, for speed)
_F_EXP, _F_I, _F_RES, _F_TOK, _F_BUDGET, _F_CTX, _F_FORCED, _F_MARKS = range(8)
# context fields (a tuple, replaced when a typed node is entered)
_C_TOOL, _C_SPEC, _C_VKIND, _C_REV, _C_UANC, _C_VALS, _C_INVAL = range(7)


class Generator:
    """Derive instructions from a grammar (see the module docstring).

    Parameters
    ----------
    grammar
        The grammar.
    max_depth
        Depth budget of a derivation (default: the start symbol's minimum height plus
        :data:`DEFAULT_EXTRA_DEPTH`). A grammar whose start needs more is given what it needs.
    sources
        Value sources (default: the registered ones, for this grammar).
    preconditions
        Steer toward call sequences whose preconditions hold, and values inside the tools'
        conditional value domains (see the module docstring).
    """

    def __init__(self, grammar: Grammar, *, max_depth: int | None = None, sources: ValueSources | None = None,
                 preconditions: bool = True) -> None:
        self.grammar = grammar
        self.t = gen_tables(grammar)
        self.sources = sources or shared(grammar, "sources", lambda: ValueSources(grammar))
        start_depth = self.t.sym_depth.get(self.t.start)
        if start_depth is None:
            from .errors import SamplingError

            raise SamplingError(f"the start symbol {self.t.start!r} derives no finite instruction")
        self.max_depth = max(max_depth if max_depth is not None else start_depth + DEFAULT_EXTRA_DEPTH, start_depth)
        self.counters: Counter[str] = Counter()
        self.preconditions = preconditions and any(t.requires or getattr(t, "forbids", ()) for t in grammar.tools)
        self.steer_values = preconditions  # draw values that fit domains and templated preconditions
        self._requires = {t.name: t.requires for t in grammar.tools}
        self._forbids = {t.name: tuple(getattr(t, "forbids", ())) for t in grammar.tools}
        self._defaults = {t.name: {k: v.default for k, v in t.arguments.items() if v.has_default} for t in grammar.tools}
        self._blocked_cache: dict[frozenset[str], int] = {}
        self._forms = shared(grammar, "forms", dict)
        self._consts: dict[tuple[Any, ...], Any] = {}
        # tools whose calls are checked against conditional value domains, and whose values can be
        # redrawn when a call breaks one of them or a templated precondition
        self._domain_tools = frozenset(t.name for t in grammar.tools if t.domains)
        self._redraw_tools = self._domain_tools | frozenset(
            t.name for t in grammar.tools if any("{" in r for r in t.requires))
        self._domain_bits = sum(1 << self.t.tool_index[name] for name in self._domain_tools)

    # -- preconditions --------------------------------------------------------------------------

    def _blocked(self, state: frozenset[str]) -> int:
        """Bit mask of tools that cannot run in ``state``: a required fact no value could make hold
        (``groups:{groupby}`` holds when some ``groups:`` fact does), or a forbidden fact that holds."""
        found = self._blocked_cache.get(state)
        if found is None:
            found = 0
            for tool, requires in self._requires.items():
                ok = True
                for requirement in requires:
                    ok = any(
                        any(f.startswith(fact.split("{", 1)[0]) for f in state) if "{" in fact else fact in state
                        for fact in fact_alternatives(requirement)
                    )
                    if not ok:
                        break
                if ok:
                    for fact in self._forbids.get(tool, ()):
                        if "{" in fact:
                            try:
                                fact = fill_fact(fact, self._defaults[tool])
                            except (KeyError, IndexError, ValueError):
                                continue
                        if fact in state:
                            ok = False
                            break
                if not ok:
                    found |= 1 << self.t.tool_index[tool]
            if len(self._blocked_cache) > 4096:
                self._blocked_cache.clear()
            self._blocked_cache[state] = found
        return found

    def _problems(self, calls: list[dict[str, Any]], before: frozenset[str], preconditions: bool,
                  domain_tools: frozenset[str]) -> bool:
        """Whether ``calls`` cannot run after the facts ``before``, or break a value domain."""
        registry = self.grammar.tools
        if preconditions and registry.sequence_problems(calls, state=before):
            return True
        return bool(domain_tools) and any(
            c.get("name") in domain_tools and registry.domain_problems(c) for c in calls)

    def _redrawable(self, tool: ToolSchema, args: dict[str, Any], drawn: dict[str, list[Any]],
                    before: frozenset[str], preconditions: bool) -> list[str]:
        """The arguments (in text order) whose drawn values a redraw could change to let a call run
        that cannot: each named by every unmet requirement and broken domain, with the problem in
        its drawn items (not in items a ``const_`` or ``ref_`` slot set). Empty when a problem
        lies elsewhere (a missing plain fact, a forbidden one, a constant)."""
        registry = self.grammar.tools
        named: set[str] | None = None
        unmet = [r for r in tool.requires if registry._unmet(r, args, before)] if preconditions else []
        if preconditions and any(fact in before for fact in registry._facts(tool.forbids, args)):
            return []
        for requirement in unmet:
            holes = fact_placeholders(requirement)
            named = holes if named is None else named & holes
        for domain in tool.domains:
            if args.get(domain.argument) is not None and domain.applies(args) is True \
                    and domain.problem(args[domain.argument]):
                named = {domain.argument} if named is None else named & {domain.argument}
        out = []
        for name in drawn:
            if not named or name not in named:
                continue
            value = args.get(name)
            kept = [v for v in value if v not in drawn[name]] if isinstance(value, list) else []
            if kept:  # items no redraw changes must meet the requirements on their own
                test = {**args, name: kept}
                if any(registry._unmet(r, test, before) for r in unmet if "{" + name + "}" in r):
                    continue
            out.append(name)
        return out

    def _calls_of(self, node: Any, parts: list[str]) -> list[dict[str, Any]] | None:
        """The calls a just-completed call or reversed node makes (None: they cannot be read alone)."""
        if not isinstance(node, Tree):
            return None
        try:
            return extract_calls(node, "".join(parts), self.grammar.table, self.grammar.tools, self.grammar.lexicon)
        except (GrammarEngineError, RecursionError):
            return None

    def _provide(self, state: frozenset[str], tool: str, values: dict[str, Any]) -> frozenset[str]:
        registry = self.grammar.tools
        schema = registry.tools[tool]
        facts = set(state)
        try:
            registry._apply(schema, registry._with_defaults(schema, values), facts)
        except (KeyError, IndexError, ValueError):
            return state
        return frozenset(facts)

    # -- values of the call being derived ------------------------------------------------------------

    def _value_of(self, spec: ArgumentSpec, text: str) -> Any:
        """The JSON value (one item, for a list argument) that rendered ``text`` gives ``spec``."""
        kind = spec.kind.item_kind
        if kind is ValueKind.STR or kind is ValueKind.PATH:
            return text.strip().strip("'\"`")
        try:
            return convert(kind, text, enum=spec.enum, lexicon=self.grammar.lexicon)
        except (GrammarEngineError, ValueError):
            return text

    def _const_value(self, spec: ArgumentSpec, value: str) -> Any:
        """The JSON value of a ``const_`` slot (an item, for a list argument), as extraction reads it."""
        key = (spec.name, spec.kind, value)
        found = self._consts.get(key, _UNSET)
        if found is _UNSET:
            kind = spec.kind.item_kind
            text = const_literal_text(value, kind in (ValueKind.INT, ValueKind.NUMBER))
            if kind is ValueKind.STR:
                text = self.grammar.tools.known_value(text) or text
            try:
                found = convert(kind, text, enum=spec.enum, lexicon=self.grammar.lexicon)
            except (GrammarEngineError, ValueError):
                found = text
            self._consts[key] = found
        return found

    @staticmethod
    def _record(values: dict[str, Any], spec: ArgumentSpec, value: Any) -> None:
        """Note a value of the call being derived: list arguments collect items, the first slot of
        any other argument wins (as extraction reads them)."""
        if spec.kind.is_list:
            items = values.setdefault(spec.name, [])
            if isinstance(items, list):
                items.append(value)
        elif spec.name not in values:
            values[spec.name] = value

    # -- numbers ----------------------------------------------------------------------------------

    def _form(self, symbol: str, text: str) -> tuple[DNode, tuple[int, ...]] | None:
        """The derivation of ``symbol`` over ``text``, or None; terminals hold piece ranges.

        Parsed once per grammar and *shape*: digits become 0 and number words their class (unit or
        scale), so ``12,500`` and ``37,100`` or ``forty seven`` and ``sixty two`` share one parse.
        Token texts are rebuilt from the words of the actual text (and checked against their
        terminals when the derivation is replayed).
        """
        pieces = text.split(" ")
        shape = (symbol, tuple(piece_shape(p) for p in pieces))
        forms = self._forms
        if shape in forms:
            return forms[shape]
        found = None
        used = parse_from(self.grammar, text, symbol)
        if used is not None:
            node = derivation_of_parse(self.t, text, used, as_spans=True)
            if node is not None and self.t.exps[node.exp].origin == symbol:
                template = spans_to_pieces(node, text)
                found = (template, used) if template is not None else None
        if len(forms) > 65536:
            forms.clear()
        forms[shape] = found
        return found

    def _plan_number(self, symbol: str, ctx: tuple, chooser: Chooser, rng: random.Random) -> DNode | None:
        kind = self.t.numeric_vals[symbol]
        spec: ArgumentSpec | None = ctx[_C_SPEC]
        if spec is not None and spec.kind not in (ValueKind.INT, ValueKind.NUMBER):
            spec = None
        preferred = [v for v in chooser.prefer(ctx[_C_TOOL], spec.name if spec else None) if isinstance(v, (int, float))]
        for attempt in range(4):
            value = float(preferred[attempt]) if attempt < len(preferred) else draw_number(spec, kind, rng)
            if kind is ValueKind.INT and not value.is_integer():
                continue
            if spec is not None and spec.validate(int(value) if value.is_integer() else value):
                continue
            entries = []
            for form in number_forms(value):
                found = self._form(symbol, form)
                if found is not None:
                    entries.append((form, found[0], found[1]))
            if entries:
                form, node, _used = entries[chooser.choose_form(entries, ctx[_C_UANC], rng)]
                return fill_pieces(node, form)
        return None

    # -- derivation ---------------------------------------------------------------------------------

    def derive(self, rng: random.Random, chooser: Chooser, *, forced: DNode | None = None,
               state: frozenset[str] | None = None) -> Derivation | str:
        """Build one derivation, or return the reason it failed (``"render"``, ``"depth"``)."""
        try:
            return self._derive(rng, chooser, forced, state)
        except _Failure as failure:
            self.counters[failure.reason] += 1
            return failure.reason

    def _derive(self, rng: random.Random, chooser: Chooser, forced: DNode | None,
                state: frozenset[str] | None) -> Derivation:
        t = self.t
        exps = t.exps
        alts = t.alts
        exp_depth = t.exp_depth
        sym_depth = t.sym_depth
        max_alt = t.max_alt_depth
        literal = t.literal
        numeric_vals = t.numeric_vals
        tool_bits = t.tool_bits
        ref_needs = t.ref_needs
        ref_symbols = t.ref_symbols
        arg_specs = t.arg_specs
        tool_args = t.tool_args
        render = self.sources.render
        choose = chooser.choose
        note = chooser.note if type(chooser).note is not Chooser.note else None
        note_tool = chooser.note_tool if type(chooser).note_tool is not Chooser.note_tool else None
        prefer = chooser.prefer if type(chooser).prefer is not Chooser.prefer else None
        parts: list[str] = []
        pos = 0
        last_char = ""
        tok_types: list[str] = []
        tok_starts: list[int] = []
        tok_ends: list[int] = []
        post: list[int] = []
        phrasing: list[str] = []
        filled: set[Any] = set()  # argument names and value kinds filled so far (for ref_ slots)
        facts = state if state is not None else frozenset(self.grammar.tools.initial_state)
        preconditions = self.preconditions
        domain_tools = self._domain_tools if self.steer_values else frozenset()
        redraw_tools = self._redraw_tools if self.steer_values else frozenset()
        steer = preconditions or bool(domain_tools)
        blocked = self._blocked(facts) if preconditions else 0
        # value tokens rendered inside calls, in text order, for redrawing a call's values:
        # [call values dict, argument spec, token index, parts index, ValueContext, Token or None]
        rendered: list[list[Any]] = []
        root_ctx = (None, None, None, None, -1, None, False)
        result: Any = None
        retries = 0  # calls redrawn because they could not run where they stood
        # per redraw point: id -> (its marks, kept alive so that the id is not reused; tries so far)
        tries: dict[int, tuple[Any, int]] = {}
        banned = 0  # tools kept away from while redrawing (until the facts change)
        registry = self.grammar.tools
        tool_choice = t.tool_choice
        domain_bits = self._domain_bits if domain_tools else 0

        def splice(edits: list[tuple[list[Any], str]], node: Tree) -> None:
            """Replace the texts of logged value tokens of the call just completed (``node``, the
            tail of the text) and shift every later token, node position and token of the tree."""
            nonlocal pos, last_char
            edits = sorted(edits, key=lambda edit: edit[0][2])
            first = edits[0][0][2]
            new_texts = {entry[2]: (entry, text) for entry, text in edits}
            starts: dict[int, int] = {}
            ends: dict[int, int] = {}
            delta = 0
            for k in range(first, len(tok_types)):
                old_start, old_end = tok_starts[k], tok_ends[k]
                new_start = old_start + delta
                edit = new_texts.get(k)
                if edit is not None:
                    entry, text = edit
                    delta += len(text) - len(parts[entry[3]])
                    parts[entry[3]] = text
                starts[old_start] = tok_starts[k] = new_start
                ends[old_end] = tok_ends[k] = old_end + delta
            pos += delta
            last_char = parts[-1][-1]
            replaced = {id(entry[5]): (entry, text) for entry, text in edits if entry[5] is not None}
            todo: list[Tree] = [node]
            while todo:
                tree = todo.pop()
                meta = tree.meta
                if not getattr(meta, "empty", True):
                    if meta.start_pos in starts:
                        meta.start_pos = starts[meta.start_pos]
                        meta.column = meta.start_pos + 1
                    if meta.end_pos in ends:
                        meta.end_pos = ends[meta.end_pos]
                        meta.end_column = meta.end_pos + 1
                children = tree.children
                for j, child in enumerate(children):
                    if isinstance(child, Tree):
                        todo.append(child)
                    elif isinstance(child, Token) and child.start_pos in starts:
                        start = starts[child.start_pos]
                        end = ends.get(child.end_pos, child.end_pos)
                        if id(child) in replaced:
                            entry, text = replaced[id(child)]
                            entry[5] = children[j] = Token(child.type, text, start, 1, start + 1, 1, end + 1, end)
                        else:
                            child.start_pos, child.column, child.end_pos, child.end_column = start, start + 1, end, end + 1

        def redraw_values(node: Any, frame: list, call: dict[str, Any], before: frozenset[str]
                          ) -> list[dict[str, Any]] | None:
            """Draw the values of the call just completed again, one argument at a time, each
            knowing the call's other arguments; the calls when some draw fits, else None (the
            text is left as it was)."""
            if not isinstance(node, Tree):
                return None
            own = frame[5][5]
            entries = [e for e in rendered if e[0] is own and e[2] >= frame[3]]
            if not entries:
                return None
            tool = registry.tools[call["name"]]
            full = registry._with_defaults(tool, call["arguments"])
            drawn: dict[str, list[Any]] = {}
            for e in entries:
                drawn.setdefault(e[1].name, []).append(self._value_of(e[1], parts[e[3]]))
            names = self._redrawable(tool, full, drawn, before, preconditions)
            if not names:
                self.counters["values_not_redrawable"] += 1
                return None
            for _ in range(VALUE_REDRAWS):
                for name in reversed(names):
                    mine = [e for e in entries if e[1].name == name]
                    known: dict[str, Any] = {k: v for k, v in full.items() if k != name}
                    edits = []
                    for entry in mine:
                        vctx = entry[4]._replace(call=known, state=before)
                        text = self.sources.render(vctx, rng)
                        old = parts[entry[3]]
                        if not text or (text[0] in _NO_SPACE_BEFORE) != (old[0] in _NO_SPACE_BEFORE) or (
                                text[-1] in _NO_SPACE_AFTER) != (old[-1] in _NO_SPACE_AFTER):
                            break
                        edits.append((entry, text))
                        if entry[1].kind.is_list:
                            known[name] = [*known.get(name, []), self._value_of(entry[1], text)]
                        else:
                            known.setdefault(name, self._value_of(entry[1], text))
                    else:
                        undo = [(entry, parts[entry[3]]) for entry, _ in edits]
                        splice(edits, node)
                        calls = self._calls_of(node, parts)
                        if calls is not None and not self._problems(calls, before, preconditions, domain_tools):
                            self.counters["values_redrawn"] += 1
                            return calls
                        splice(undo, node)
            self.counters["values_not_redrawn"] += 1
            return None

        def push(symbol: str, budget: int, ctx: tuple, node: Any) -> list:
            if node is not None:
                e = node.exp
                kids = node.kids
            else:
                kids = None
                cands = alts.get(symbol)
                if cands is None:
                    raise _Failure("unproductive")
                if budget < sym_depth[symbol]:
                    budget = sym_depth[symbol]
                planned = self._plan_number(symbol, ctx, chooser, rng) if symbol in numeric_vals else None
                if planned is not None:
                    e = planned.exp
                    kids = planned.kids
                else:
                    full = budget >= max_alt[symbol]
                    if not full:
                        cands = tuple(i for i in cands if exp_depth[i] <= budget)
                    if blocked:  # inside a reversed block: the facts from before the block
                        open_ = tuple(i for i in cands if not tool_bits[i] or tool_bits[i] & ~blocked)
                        if open_ and len(open_) != len(cands):
                            cands = open_
                            full = False
                    if symbol in ref_symbols:
                        open_ = tuple(i for i in cands if i not in ref_needs or all(
                            r in filled or (r in arg_specs and arg_specs[r].kind in filled) for r in ref_needs[i]))
                        if open_ and len(open_) != len(cands):
                            cands = open_
                            full = False
                    e = choose(symbol, cands, full, ctx[_C_UANC], rng)
            x = exps[e]
            code = x.code
            marks = None
            if code:
                if code == _K_CALL:
                    # the call's values so far, where something reads them (preconditions, domains)
                    vals = {} if preconditions or x.target in redraw_tools else None
                    ctx = (x.target, None, None, ctx[3], ctx[4], vals, False)
                    phrasing.append(x.node_id)
                elif code == _K_FILL or code == _K_REF:
                    tool = ctx[0]
                    spec = None
                    if tool is not None:
                        args = tool_args.get(tool)
                        spec = args.get(x.target) if args is not None else None
                    if spec is None:
                        spec = arg_specs.get(x.target)
                    vals = ctx[5]
                    if vals is not None and spec is not None and x.typed is not None:
                        if x.typed.kind is SlotKind.CONST:
                            self._record(vals, spec, self._const_value(spec, x.typed.value or ""))
                        elif x.typed.kind is SlotKind.EACH:
                            vals = None  # one call per item: the items are no value of the call
                    ctx = (tool, spec, spec.kind if spec is not None else None, ctx[3], ctx[4], vals, False)
                elif code == _K_VAL:
                    ctx = (ctx[0], ctx[1], x.typed.value_kind or ctx[2], ctx[3], ctx[4], ctx[5], True)
                elif code == _K_GROUP:
                    ctx = (None, None, None, ctx[3], ctx[4], None, False)
                elif code == _K_REVERSED:  # its calls are checked together, in the order they run
                    ctx = (ctx[0], ctx[1], ctx[2], [], ctx[4], ctx[5], ctx[6])
            if steer and node is None and (preconditions and (
                    code == _K_CALL or code == _K_REVERSED or code == _K_GROUP or symbol in tool_choice) or (
                    (code == _K_CALL or symbol in tool_choice) and tool_bits[e] & domain_bits)):
                # where to come back to when what this frame derives cannot run where it stands
                marks = (symbol, budget, len(parts), pos, last_char,
                         len(tok_types), len(post), len(phrasing) - (1 if code == _K_CALL else 0),
                         set(filled), facts, blocked)
            if note is not None:
                note(e, ctx[_C_UANC])
            if x.user:
                ctx = (ctx[0], ctx[1], ctx[2], ctx[3], e, ctx[5], ctx[6])
            return [e, 0, [], len(tok_types), budget - 1, ctx, kids, marks]

        stack = [push(t.start, self.max_depth, root_ctx, forced)]
        while stack:
            frame = stack[-1]
            x = exps[frame[0]]
            i = frame[1]
            if i < len(x.children):
                frame[1] = i + 1
                child = x.children[i]
                kids = frame[6]
                given = kids[i] if kids is not None else None
                if x.is_term[i]:
                    logged = None
                    if given is not None:
                        text = given
                        if literal.get(child) is None and not t.patterns[child].fullmatch(text):
                            raise _Failure("render")
                    else:
                        text = literal.get(child)
                        if text is None:
                            ctx = frame[5]
                            spec = ctx[1]
                            vals = ctx[5]
                            if spec is not None and not (ctx[6] or x.keep[i]):
                                vals = None  # a separator inside a slot ("and also"): no value of the argument
                            vctx = ValueContext(
                                child, ctx[0], spec, ctx[2], facts,
                                prefer(ctx[0], spec.name) if prefer is not None and spec is not None else (),
                                vals if vals is not None else _NO_VALUES,
                            )
                            text = render(vctx, rng)
                            if not text:
                                raise _Failure("render")
                            if vals is not None and spec is not None:
                                self._record(vals, spec, self._value_of(spec, text))
                                if ctx[0] in redraw_tools:
                                    logged = [vals, spec, len(tok_types), 0, vctx, None]
                                    rendered.append(logged)
                    if pos and not (text[0] in _NO_SPACE_BEFORE or last_char in _NO_SPACE_AFTER):
                        parts.append(" ")
                        pos += 1
                    start = pos
                    if logged is not None:
                        logged[3] = len(parts)
                    parts.append(text)
                    pos += len(text)
                    last_char = text[-1]
                    tok_types.append(child)
                    tok_starts.append(start)
                    tok_ends.append(pos)
                    token = Token(child, text, start, 1, start + 1, 1, pos + 1, pos) if x.keep[i] else None
                    if logged is not None:
                        logged[5] = token
                    frame[2].append(token)
                else:
                    stack.append(push(child, frame[4], frame[5], given))
                continue
            # all children done: build the node as Lark's tree builder would
            stack.pop()
            post.append(x.index)
            raw = frame[2]
            keep = x.keep
            expand = x.expand
            filtered: list[Any] = []
            for j, item in enumerate(raw):
                if item is None or not keep[j]:
                    continue
                if expand[j] and isinstance(item, Tree):
                    filtered.extend(item.children)
                else:
                    filtered.append(item)
            if x.expand1 and len(filtered) == 1:
                node = filtered[0]
            else:
                meta = Meta()
                first = frame[3]
                if len(tok_types) > first:
                    s, end = tok_starts[first], tok_ends[-1]
                    meta.start_pos, meta.end_pos, meta.empty = s, end, False
                    meta.line, meta.column, meta.end_line, meta.end_column = 1, s + 1, 1, end + 1
                node = Tree(x.name, filtered, meta)
            code = x.code
            if steer and (code == _K_CALL or preconditions and (code == _K_GROUP or code == _K_REVERSED and (
                    not stack or stack[-1][5][3] is None))) and frame[7] is not None:
                # A call is complete: check it can run after what came before. A group (whose calls
                # share slots written beside them) and a reversed block (whose calls run in another
                # order than spoken) are checked again as a whole, from the facts before them.
                # What cannot run is drawn again, or
                # (after two tries) the nearest choice among tools is, without the tool that failed.
                calls = self._calls_of(node, parts)
                before = facts if code == _K_CALL else frame[7][9]
                if calls is not None and self._problems(calls, before, preconditions, domain_tools) \
                        and code == _K_CALL and x.target in redraw_tools and len(calls) == 1:
                    # keep the words, draw the call's values again knowing all its arguments
                    fixed = redraw_values(node, frame, calls[0], before)
                    if fixed is not None:
                        calls = fixed
                if calls is None:
                    if code == _K_CALL and preconditions:
                        facts = self._provide(facts, x.target, frame[5][5] or {})
                        blocked = self._blocked(facts) | banned
                elif self._problems(calls, before, preconditions, domain_tools):
                    target = None
                    if frame[7] is not None and tries.get(id(frame[7]), (None, 0))[1] < 2:
                        target = (len(stack), frame[7])
                    else:
                        for k in range(len(stack) - 1, 0, -1):
                            if stack[k][7] is not None and stack[k][7][0] in tool_choice:
                                target = (k, stack[k][7])
                                break
                    if target is not None and retries < 24:
                        retries += 1
                        k, frame_marks = target
                        tries[id(frame_marks)] = (frame_marks, tries.get(id(frame_marks), (None, 0))[1] + 1)
                        if k < len(stack) and code == _K_CALL:  # climbing: avoid the tool that failed
                            banned |= t.tool_bits[x.index]
                        del stack[k:]
                        symbol, budget, n_parts, pos, last_char, n_tok, n_post, n_phr, kept, facts, _b = frame_marks
                        blocked = self._blocked(facts) | banned if preconditions else 0
                        del parts[n_parts:], tok_types[n_tok:], tok_starts[n_tok:], tok_ends[n_tok:]
                        while rendered and rendered[-1][2] >= n_tok:
                            rendered.pop()
                        del post[n_post:], phrasing[n_phr:]
                        filled.clear()
                        filled.update(kept)
                        fresh = push(symbol, budget, stack[-1][5], None)
                        if fresh[7] is not None:
                            tries[id(fresh[7])] = (fresh[7], tries[id(frame_marks)][1])
                        stack.append(fresh)
                        continue
                    facts = frozenset(registry.state_after(calls, state=before))
                    banned = 0
                    blocked = self._blocked(facts) if preconditions else 0
                else:
                    facts = frozenset(registry.state_after(calls, state=before))
                    banned = 0
                    blocked = self._blocked(facts) if preconditions else 0
            if code == _K_CALL:
                if note_tool is not None:
                    note_tool(x.target)
            elif code == _K_FILL:
                filled.add(x.target)
                spec = frame[5][1]
                if spec is not None:
                    filled.add(spec.kind)
            if stack:
                stack[-1][2].append(node)
            else:
                result = node
        return Derivation("".join(parts), result, tuple(post), tuple(tok_types), tuple(tok_starts), tuple(phrasing))


