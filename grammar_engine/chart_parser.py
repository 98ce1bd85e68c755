"""A lean Earley chart over Lark's compiled rules: every derivation of a text, without Lark's forest.

Verification parses every generated sample back. Lark's Earley parser builds a shared packed
parse forest of Python objects (items, symbol and packed nodes, tokens), and that is most of the
time a verified sample costs. :class:`ChartParser` runs the same algorithm over the same rules,
the same terminal regular expressions and the same per-position prediction tables as
:class:`~grammar_engine.verification.PrunedEarley`, with items as integer tuples, and records the
forest as plain dictionaries. It then answers what the verifier needs: no parse, more than
``limit`` derivations, or the derivations themselves (each one a nested tuple), from which the
parse tree is built with Lark's own tree callbacks, as Lark would build it.

It reproduces the scanner of Lark's Earley parser with the dynamic lexer:

- at each position, every item expecting a terminal tries that terminal's regular expression
  there (``match``, so the longest match the pattern itself prefers), and the token ends where
  the match ends;
- where an ``%ignore`` terminal matches, the items waiting for a terminal are carried, unchanged,
  past the ignored text;
- empty rules complete where they are predicted, and later items expecting their symbol there
  are advanced over them (Lark's held completions).

So both parsers hold the same derivations of a text. Where Lark would lose one by merging two
items that differ only in where their last symbol ended (an item carried past ignored text meets
the same item scanned there), where a recursive start symbol is carried past trailing ignored
text, or where the text spans lines, the chart says it cannot tell (:data:`UNKNOWN`), and the
caller asks Lark.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lark import Token

if TYPE_CHECKING:
    from .verification import PrunedEarley

__all__ = ["AMBIGUOUS", "UNKNOWN", "ChartParser", "Derivation"]

AMBIGUOUS = object()
"""The text has more derivations than the limit (or infinitely many, through a cycle)."""

UNKNOWN = object()
"""The chart cannot tell the same answer as Lark for this text: ask Lark."""

Derivation = Any
"""A derivation: ``(rule_index, children)`` with children derivations or token keys ``(~terminal, start, end)``."""


class ChartParser:
    """Earley recognition with derivation counting over a :class:`PrunedEarley`'s tables.

    Parameters
    ----------
    owner
        The pruned parser whose rules, terminals, prediction masks and tree callbacks are used.
    """

    def __init__(self, owner: PrunedEarley) -> None:
        self.owner = owner
        rules = owner.rules
        regexps = owner.match.__self__.regexps  # Lark's EarleyRegexpMatcher: the very patterns it scans with
        terminals = sorted({s.name for r in rules for s in r.expansion if s.is_term} | {t.name for t in owner.ignore})
        self.terminal_names = terminals
        term_id = {name: i for i, name in enumerate(terminals)}
        self.term_match: list[Callable[..., Any] | None] = [
            regexps[name].match if name in regexps else None for name in terminals]
        self.ignore_match = [regexps[t.name].match for t in owner.ignore]
        nt_names = sorted({r.origin.name for r in rules})
        nt_id = {name: i for i, name in enumerate(nt_names)}
        self.start = nt_id.get(owner.start, -1)
        # a symbol: a nonterminal id (>= 0) or ~terminal id (< 0)
        self.syms: list[tuple[int, ...]] = [
            tuple(~term_id[s.name] if s.is_term else nt_id.get(s.name, len(nt_names)) for s in r.expansion)
            for r in rules]
        self.origin = [nt_id[r.origin.name] for r in rules]
        self.lens = [len(e) for e in self.syms]
        self.first_is_terminal = [bool(e) and e[0] < 0 for e in self.syms]
        # what predicting a nonterminal adds, indexed by the terminals its rules can begin with:
        # a rule that can be empty always, any other one where one of its first terminals matches
        self.always: list[list[int]] = [[] for _ in nt_names]
        self.by_first: list[dict[int, list[int]]] = [{} for _ in nt_names]
        for k, r in enumerate(rules):
            nt = nt_id[r.origin.name]
            if owner.nullable[k]:
                self.always[nt].append(k)
                continue
            for bit in bit_positions(owner.first_mask[k]):
                self.by_first[nt].setdefault(bit, []).append(k)
        self.rule_objects = rules
        # rules naming a nonterminal that has no rule never complete; a terminal Lark cannot match neither
        self.supported = all(m is not None for m in self.term_match)
        # Lark's items compare rules by origin and expansion: two such rules would share its items
        self.supported &= len({(r.origin.name, tuple(s.name for s in r.expansion)) for r in rules}) == len(rules)

    # -- recognition ------------------------------------------------------------------------------

    def chart(self, text: str) -> dict[Any, list[Any]] | object | None:
        """The forest of ``text``: node -> its families; None without a parse, UNKNOWN when unsure.

        Node keys: ``(nonterminal, start, end)`` for a symbol (families: rule indices),
        ``(rule, dot, origin, end)`` for a rule's first ``dot`` symbols (families: ``(left, right)``,
        ``left`` the node of the first ``dot - 1`` or None, ``right`` a symbol or token key).
        """
        from .verification import _PositionPredictions

        if not self.supported or not text or "\n" in text:
            return UNKNOWN
        n = len(text)
        syms, origin_of, always, by_first = self.syms, self.origin, self.always, self.by_first
        lens, first_is_terminal = self.lens, self.first_is_terminal
        term_match, ignore_match = self.term_match, self.ignore_match
        positions = _PositionPredictions(self.owner, text)
        mask_at = positions.mask
        families: dict[Any, list[Any]] = {}
        # per position: items waiting on a nonterminal, and items waiting on a terminal with the
        # end of their node (an item carried past ignored text keeps its node)
        waiting: dict[int, dict[int, list[tuple[int, int, int]]]] = {}
        scans: dict[int, dict[tuple[int, int, int], int]] = {}
        arrived: dict[int, list[tuple[int, int, int]]] = {0: []}
        # the start symbol's rules, predicted at 0
        start = self.start
        if start < 0:
            return None
        irregular = False
        root_ends: set[int] = set()

        def add_family(node: Any, family: Any) -> None:
            found = families.get(node)
            if found is None:
                families[node] = [family]
            elif family not in found:
                found.append(family)

        i = 0
        while i <= n:
            items = arrived.pop(i, None)
            to_scan = scans.pop(i, None)
            if items is None and to_scan is None:
                i += 1
                continue
            column: set[tuple[int, int, int]] = set()
            wait: dict[int, list[tuple[int, int, int]]] = {}
            waiting[i] = wait
            held: set[int] = set()  # nonterminals completed empty here
            predicted: set[int] = set()
            if to_scan is None:
                to_scan = {}
            work: list[tuple[int, int, int]] = []
            bits: list[int] | None = None
            if i == 0:
                predicted.add(start)
                bits = bit_positions(mask_at(0))
                work.extend((k, 0, 0) for k in always[start])
                for bit in bits:
                    work.extend((k, 0, 0) for k in by_first[start].get(bit, ()))
                work = list(dict.fromkeys(work))  # a rule can begin with several terminals found here
            for item in items or ():
                if item not in column:
                    column.add(item)
                    work.append(item)
            column.update(work)
            while work:
                item = work.pop()
                k, dot, origin = item
                rule = syms[k]
                if dot == lens[k]:  # completion
                    nt = origin_of[k]
                    node = (nt, origin, i)
                    found = families.get(node)
                    if found is not None:  # completed before: its waiters were advanced then
                        if k not in found:
                            found.append(k)
                        continue
                    families[node] = [k]
                    if nt == start and origin == 0:
                        root_ends.add(i)
                    if origin == i:
                        held.add(nt)
                    for k2, d2, o2 in (waiting[origin].get(nt, ()) if origin != i else list(wait.get(nt, ()))):
                        new = (k2, d2 + 1, o2)
                        family = ((k2, d2, o2, origin) if d2 else None, node)
                        found = families.get(key := (k2, d2 + 1, o2, i))
                        if found is None:
                            families[key] = [family]
                        elif family not in found:
                            found.append(family)
                        if d2 + 1 < lens[k2] and syms[k2][d2 + 1] < 0:
                            irregular |= self._to_scan(to_scan, new, i)
                        elif new not in column:
                            column.add(new)
                            work.append(new)
                    continue
                sym = rule[dot]
                if sym < 0:  # a terminal (items arriving here by a scan already sit in to_scan)
                    irregular |= self._to_scan(to_scan, item, i)
                    continue
                wait.setdefault(sym, []).append(item)
                if sym in held:  # the symbol completed empty here already
                    new = (k, dot + 1, origin)
                    add_family((k, dot + 1, origin, i), ((k, dot, origin, i) if dot else None, (sym, i, i)))
                    if dot + 1 < len(rule) and rule[dot + 1] < 0:
                        irregular |= self._to_scan(to_scan, new, i)
                    elif new not in column:
                        column.add(new)
                        work.append(new)
                if sym not in predicted:
                    predicted.add(sym)
                    if bits is None:
                        bits = bit_positions(mask_at(i))
                    rules_here = always[sym]
                    firsts = by_first[sym]
                    if firsts:
                        for bit in bits:
                            got = firsts.get(bit)
                            if got:
                                rules_here = rules_here + got
                    for k2 in rules_here:
                        new = (k2, 0, i)
                        if first_is_terminal[k2]:  # predicted here: no other node can wait with it
                            if new not in to_scan:
                                to_scan[new] = i
                        elif new not in column:
                            column.add(new)
                            work.append(new)
            if to_scan and i < n:
                ends: dict[int, int] = {}
                for (k, dot, origin), node_end in to_scan.items():
                    term = ~syms[k][dot]
                    end = ends.get(term)
                    if end is None:
                        m = term_match[term](text, i)
                        end = ends[term] = m.end() if m else 0
                    if not end:
                        continue
                    new = (k, dot + 1, origin)
                    family = ((k, dot, origin, node_end) if dot else None, (~term, i, end))
                    found = families.get(key := (k, dot + 1, origin, end))
                    if found is None:
                        families[key] = [family]
                    elif family not in found:
                        found.append(family)
                    if dot + 1 < lens[k] and syms[k][dot + 1] < 0:
                        irregular |= self._carry(scans, end, new, end)
                    else:
                        arrived.setdefault(end, []).append(new)
                for match in ignore_match:
                    m = match(text, i)
                    if m and m.end() > i:
                        for item, node_end in to_scan.items():
                            irregular |= self._carry(scans, m.end(), item, node_end)
            i += 1
        if irregular:
            return UNKNOWN
        root = self._root(text, root_ends, bool(waiting[0].get(start)))
        if root is None or root is UNKNOWN:
            return root
        families[None] = [root]  # the key of the root's node
        return families

    def _root(self, text: str, ends: set[int], recursive_start: bool) -> Any:
        """The start symbol's node that spans the text, counting Lark's carrying of it past ignored text.

        Lark carries a completed start symbol past ignored text, so a parse may end before trailing
        ignored text. When the start symbol also occurs inside itself, the carried item would
        complete more items, which the chart does not model: UNKNOWN.
        """
        n = len(text)
        found = {n} if n in ends else set()
        for end in ends:
            if end == n:
                continue
            reached, stack = {end}, [end]
            while stack:
                j = stack.pop()
                for match in self.ignore_match:
                    m = match(text, j)
                    if m and m.end() > j and m.end() not in reached:
                        reached.add(m.end())
                        stack.append(m.end())
            if len(reached) > 1 and recursive_start:
                return UNKNOWN
            if n in reached:
                found.add(end)
        if not found:
            return None
        if len(found) > 1:  # Lark would stop on several start items
            return UNKNOWN
        (end,) = found
        return (self.start, 0, end)

    @staticmethod
    def _to_scan(to_scan: dict[tuple[int, int, int], int], item: tuple[int, int, int], end: int) -> bool:
        """Add an item waiting for a terminal; True when Lark would merge it with a different one."""
        found = to_scan.get(item)
        if found is None:
            to_scan[item] = end
            return False
        return found != end

    @staticmethod
    def _carry(scans: dict[int, dict[tuple[int, int, int], int]], at: int, item: tuple[int, int, int],
               node_end: int) -> bool:
        """Add a waiting item at ``at``; True when Lark would merge it with a different one there."""
        bucket = scans.setdefault(at, {})
        found = bucket.get(item)
        if found is None:
            bucket[item] = node_end
            return False
        return found != node_end

    # -- derivations -------------------------------------------------------------------------------

    def derivations(self, text: str, *, limit: int = 16) -> list[Derivation] | object | None:
        """Every derivation of ``text`` (at most ``limit``); None without a parse, AMBIGUOUS past it.

        UNKNOWN when the chart cannot answer as Lark would (see the module docstring), or a text
        nests too deeply for Python's stack.
        """
        try:
            forest = self.chart(text)
            if forest is None or forest is UNKNOWN:
                return forest
            assert isinstance(forest, dict)
            (root,) = forest[None]
            if _count(forest, root, limit, self.syms) > limit:
                return AMBIGUOUS
            return _enumerate(forest, root, self.syms)
        except RecursionError:
            return UNKNOWN

    def trees(self, text: str, callbacks: dict[Any, Callable[[list[Any]], Any]], *,
              limit: int = 16) -> list[Any] | object | None:
        """The parse tree of every derivation of ``text`` (:meth:`derivations`' other answers as they are)."""
        found = self.derivations(text, limit=limit)
        if not isinstance(found, list):
            return found
        try:
            return [self.tree(one, text, callbacks) for one in found]
        except RecursionError:
            return UNKNOWN

    def flatten(self, derivation: Derivation) -> tuple[tuple[int, ...], tuple[str, ...], tuple[int, ...]]:
        """Rules in post-order (as Lark's callbacks run), token types and token starts."""
        rules: list[int] = []
        types: list[str] = []
        starts: list[int] = []
        names = self.terminal_names
        stack: list[Any] = [derivation]
        while stack:
            node = stack.pop()
            if isinstance(node, int):
                rules.append(node)
                continue
            if len(node) == 3:  # a token
                types.append(names[~node[0]])
                starts.append(node[1])
                continue
            rule, children = node
            stack.append(rule)
            stack.extend(reversed(children))
        return tuple(rules), tuple(types), tuple(starts)

    def tree(self, derivation: Derivation, text: str, callbacks: dict[Any, Callable[[list[Any]], Any]]) -> Any:
        """The parse tree of one derivation, built with Lark's tree callbacks (as its forest would be)."""
        names, rules = self.terminal_names, self.rule_objects
        done: list[Any] = []
        stack: list[Any] = [(derivation, False)]
        while stack:
            node, expanded = stack.pop()
            if len(node) == 3:
                t, s, e = node
                done.append(Token(names[~t], text[s:e], s, 1, s + 1, 1, e + 1, e))
                continue
            rule, children = node
            if expanded:
                args = done[len(done) - len(children):] if children else []
                del done[len(done) - len(children):]
                done.append(callbacks[rules[rule]](args))
                continue
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(children))
        (tree,) = done
        return tree


def bit_positions(mask: int) -> list[int]:
    """The positions of the set bits of ``mask``, lowest first."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _count(forest: dict[Any, list[Any]], root: Any, limit: int, syms: list[tuple[int, ...]]) -> int:
    """Derivations under ``root``, up to ``limit + 1`` (a cycle counts as too many)."""
    cap = limit + 1
    counts: dict[Any, int] = {}
    on_path: set[Any] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            on_path.discard(node)
            total = 0
            for family in forest.get(node, ()):
                if isinstance(family, int):  # a symbol node's rule (an empty one derives once)
                    total += counts.get((family, len(syms[family]), node[1], node[2]), 0) if syms[family] else 1
                else:
                    left, right = family
                    product = counts.get(left, 0) if left is not None else 1
                    product *= counts.get(right, 1) if right[0] < 0 and len(right) == 3 else counts.get(right, 0)
                    total += product
            counts[node] = min(total, cap)
            continue
        if node in counts:
            continue
        if node in on_path:
            return cap
        on_path.add(node)
        stack.append((node, True))
        for family in forest.get(node, ()):
            if isinstance(family, int):
                child = (family, len(syms[family]), node[1], node[2])
                if syms[family] and child not in counts:
                    stack.append((child, False))
                continue
            left, right = family
            if left is not None and left not in counts:
                stack.append((left, False))
            if not (len(right) == 3 and right[0] < 0) and right not in counts:
                stack.append((right, False))
    return counts.get(root, cap)


def _enumerate(forest: dict[Any, list[Any]], root: Any, syms: list[tuple[int, ...]]) -> list[Derivation]:
    """All derivations under ``root`` (their number already known to be small and finite)."""
    memo: dict[Any, list[Any]] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if node in memo:
            continue
        families = forest.get(node, ())
        if len(node) == 3 and node[0] < 0:  # a token
            memo[node] = [node]
            continue
        if not done:
            stack.append((node, True))
            for family in families:
                if isinstance(family, int):
                    if syms[family]:
                        stack.append(((family, len(syms[family]), node[1], node[2]), False))
                else:
                    left, right = family
                    if left is not None:
                        stack.append((left, False))
                    stack.append((right, False))
            continue
        out: list[Any] = []
        if len(node) == 3:  # a symbol: one entry per rule and derivation of its children
            for rule in families:
                for children in memo[(rule, len(syms[rule]), node[1], node[2])] if syms[rule] else [()]:
                    out.append((rule, children))
        else:  # a rule prefix: tuples of child derivations
            for left, right in families:
                lefts = memo[left] if left is not None else [()]
                for prefix in lefts:
                    for child in memo[right]:
                        out.append(prefix + (child,))
        memo[node] = out
    return memo[root]
