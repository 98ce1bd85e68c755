"""The coverage-guided strategy: generation that prefers what has not been produced yet.

:class:`CoverageChooser` steers toward the targets of :mod:`grammar_engine.coverage`: at each
nonterminal, an uncovered expansion or 2-path first, then the expansion under which the most
uncovered targets remain (counted per child, through children that cannot lead back to the same
rule, so a hub rule is not preferred for reaching everything), an uncovered tool pair after the
previous call, uncovered enum values and range edges for the slot values (through the value
sources' ``prefer``). A repetition (``x: x item``) is taken while it still reaches uncovered
targets, at most ``max_repeat`` times in a row; past ``max_size`` expansions in one derivation,
or once nothing it steers toward is left, the fallback strategy (``weighted`` by default) chooses.
Coverage is committed only when a sample is accepted; a target among the new ones of three
rejected derivations is no longer steered toward in that broad way.

Broad steering gains less and less per sample: the last targets sit in corners that a large
derivation seldom reaches, or reaches only in texts that read two ways. So once the accepted
samples bring fewer than ``focus_below`` new expansion targets each (a moving average over about
20 samples), the chooser *focuses*: it takes the uncovered expansion targets one at a time, in a
fixed order, and steers each derivation by the shortest route to the one in focus (fewest
expansion steps down the rule graph; the fallback chooses everywhere else, so the derivation stays
small). Where the route runs through a call whose preconditions do not hold yet, a call that
provides what it requires is drawn instead, so that the session's next instruction can take the
route (with ``session_length`` above 1; sessions that start from the recorded start, the
default, seldom block a route). A target is given up after ``focus_tries`` derivations in focus
on it (accepted or not) that do not cover it (:meth:`CoverageChooser.given_up_expansions`).
Broad steering then goes on for the 2-paths, tool pairs and values, until it brings fewer new
2-paths per sample than a focused derivation would (:data:`PATH_FOCUS_SHARE` of
``focus_below``); the 2-paths left are then taken one at a time the same way: the shortest
route to the parent expansion, then below it the shortest route to the child through helper
expansions (:meth:`CoverageChooser.given_up_paths`); a 2-path whose parent or child was given up
uncovered is skipped. Once :data:`REST_PATIENCE` samples in a row after that cover no tool pair or
value, every target counts as covered or given up (:attr:`CoverageChooser.exhausted`) and the
stream can stop (``until_covered``).

Registered as ``sample(..., strategy="coverage")``; options ``fallback``, ``targets`` (kinds to
steer toward), ``max_repeat``, ``max_size``, ``focus_below``, ``focus_tries``,
``until_covered``. Its samples are longer than the weighted sampler's while targets remain, by
design.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx

from .chart_parser import bit_positions
from .coverage import TargetKind, coverage_targets, sample_targets
from .errors import InvalidArgument
from .gen_tables import gen_tables
from .generation import Chooser, DNode
from .sampling import Sample, SamplingStrategy, _strategy_factory, register_strategy

if TYPE_CHECKING:
    from .grammar import Grammar

__all__ = ["FOCUS_BELOW", "FOCUS_TRIES", "MAX_REPEAT", "MAX_SIZE", "REST_PATIENCE", "CoverageChooser"]

#: Focus once accepted samples bring fewer new expansion targets each than this (moving average).
FOCUS_BELOW = 1.0
#: Derivations in focus on one target, without covering it, before it is given up.
FOCUS_TRIES = 8
#: The 2-paths go into focus once broad steering brings fewer than ``focus_below`` times this many
#: new ones per sample: a focused derivation covers one at best, and about half a 2-path per sample
#: on average (failed tries included), so broad steering is worth keeping while it does better.
PATH_FOCUS_SHARE = 0.5
#: Accepted samples before the moving average may start the focus phase.
FOCUS_WARMUP = 20
#: Rejected derivations in a row after which the fallback alone draws, until a sample is accepted.
FOCUS_PAUSE = 16
#: Samples without a new tool pair or value, after the focus phase, before those are given up.
REST_PATIENCE = 100
#: Times one target may be steered toward before it is given up (outside the focus phase).
MAX_REPEAT = 8
#: Most user expansions in one steered derivation.
MAX_SIZE = 48


class CoverageChooser(Chooser):
    """Choose what covers new targets (see the module docstring); ``fallback`` chooses otherwise."""

    def __init__(self, grammar: Grammar, fallback: Chooser, *, max_repeat: int = MAX_REPEAT, max_size: int = MAX_SIZE,
                 kinds: Iterable[TargetKind | str] | None = None, focus_below: float = FOCUS_BELOW,
                 focus_tries: int = FOCUS_TRIES) -> None:
        self.grammar = grammar
        self.fallback = fallback
        self.max_repeat = max_repeat
        self.max_size = max_size
        self.focus_below = focus_below
        self.focus_tries = focus_tries
        t = gen_tables(grammar)
        self.t = t
        targets = coverage_targets(grammar)
        self.targets = targets
        wanted = {TargetKind(k) for k in kinds} if kinds is not None else set(TargetKind)
        self.kinds = wanted
        static = _static_tables(grammar, TargetKind.PATH2 in wanted)
        self.path_ids = static["path_ids"]
        self.own_paths = static["own_paths"]
        self.user_bits = user_bits = static["user_bits"]
        self.sym_reach, self.sym_preach = static["sym_reach"], static["sym_preach"]
        self.recursive, self.outward = static["recursive"], static["outward"]
        self.parents_of = static["parents_of"]
        self._requires, self._provides = static["requires"], static["provides"]
        self.unc_exp = sum(user_bits) if TargetKind.EXPANSION in wanted else 0
        self.unc_path = (1 << len(self.path_ids)) - 1
        self.left_exp = self.unc_exp  # uncovered, whether broad steering dropped it or not
        self.left_path = self.unc_path
        self.given_up_exp = 0
        self.given_up_path = 0
        self.phase = "broad"  # then "focus" on the expansions left, then "rest"
        self.focus = 0  # the bit of the expansion target in focus, 0 when none
        self.focus_path = 0  # the bit of the 2-path in focus, 0 when none
        self._focus_queue: list[int] = []
        self._path_queue: list[int] | None = None  # 2-path targets, queued once the expansions are done
        self._focus_failures = 0
        self._route: dict[int, int] = {}  # expansion -> steps from it down to the target in focus
        self._route_below: dict[int, int] = {}  # for a 2-path: steps from below its parent down to its child
        self._path_target = (-1, -1)
        self._paths: dict[int, tuple[int, int]] = {}  # 2-path bit position -> (parent, child)
        self._gain = float("inf")  # moving average of new expansion targets per accepted sample
        self._path_gain = float("inf")  # the same for 2-paths, from the end of the expansions' focus
        self._accepted = 0
        self._rest_since = 0  # the last accepted sample, in the rest phase, that covered something new
        self._rest_entered = 0  # the accepted samples when the rest phase began
        self._rejected_in_row = 0
        self._exhausted = False
        tools = list(grammar.tools.tools)
        self.tool_index = t.tool_index
        self.tools = tools
        pair_targets = targets.by_kind[TargetKind.TOOL_PAIR] if TargetKind.TOOL_PAIR in wanted else frozenset()
        self.unc_pair = {a: 0 for a in tools}
        for a, b in pair_targets:
            self.unc_pair[a] |= 1 << t.tool_index[b]
        self.unc_values: dict[tuple[str, str], list[Any]] = {}
        if TargetKind.ENUM_VALUE in wanted:
            for tool, arg, value in sorted(targets.by_kind[TargetKind.ENUM_VALUE], key=repr):
                self.unc_values.setdefault((tool, arg), []).append(value)
        if TargetKind.RANGE_EDGE in wanted:
            for tool, arg, edge in sorted(targets.by_kind[TargetKind.RANGE_EDGE]):
                spec = grammar.tools[tool].arguments[arg]
                self.unc_values.setdefault((tool, arg), []).append(spec.minimum if edge == "min" else spec.maximum)
        self._strikes: dict[str, tuple[int, int]] = {}
        self.begin()

    # -- bookkeeping -------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether nothing this chooser steers toward is left uncovered."""
        return not (self.unc_exp or self.unc_path or any(self.unc_pair.values()) or self.unc_values)

    @property
    def exhausted(self) -> bool:
        """Whether every target counts as covered or given up: the expansions and 2-paths after their
        focus, the other kinds after :data:`REST_PATIENCE` accepted samples in a row that cover none
        of them (once true, it stays true)."""
        if not self._exhausted and self.phase == "rest" and self._paths_in_focus:
            self._exhausted = self.done or self._accepted - self._rest_since >= REST_PATIENCE
        return self._exhausted

    @property
    def _paths_in_focus(self) -> bool:
        """Whether the 2-paths are past broad steering: their focus has begun, or there are none."""
        return self._path_queue is not None or not self.path_ids

    def given_up_expansions(self) -> frozenset[int]:
        """The expansion targets given up so far (a sample may have covered some since, by the way)."""
        mask = self.given_up_exp
        return frozenset(e for e, bit in enumerate(self.user_bits) if bit & mask)

    def given_up_paths(self) -> frozenset[tuple[int, int]]:
        """The 2-path targets (parent, child expansion) given up in focus so far."""
        mask = self.given_up_path
        return frozenset(p for p, i in self.path_ids.items() if (mask >> i) & 1)

    def progress(self) -> dict[str, Any]:
        """A JSON-ready account of the chooser: its phase, the expansion and 2-path targets it gave up."""
        return {"phase": self.phase, "given_up_expansions": self.given_up_exp.bit_count(),
                "given_up_paths": self.given_up_path.bit_count(), "exhausted": self.exhausted}

    def begin(self) -> None:
        """Start a derivation: forget what the last (unaccepted) one covered tentatively."""
        self.cur_exp = 0
        self.cur_path = 0
        self.last_tool: str | None = None
        self.chain: tuple[str, int] = ("", 0)
        self.size = 0
        # after a run of rejections, one plain derivation (the fallback's), so that the stream goes on
        self._plain = self._rejected_in_row >= FOCUS_PAUSE

    def accept(self, sample: Sample) -> None:
        """Commit what an accepted sample covers."""
        found = sample_targets(self.grammar, sample)
        before, paths_before = self.left_exp, self.left_path
        rest_before = self._rest_left() if self.phase == "rest" else 0
        for e in found[TargetKind.EXPANSION]:
            self.unc_exp &= ~self.user_bits[e]
            self.left_exp &= ~self.user_bits[e]
        for p in found[TargetKind.PATH2]:
            i = self.path_ids.get(p)
            if i is not None:
                self.unc_path &= ~(1 << i)
                self.left_path &= ~(1 << i)
        for a, b in found[TargetKind.TOOL_PAIR]:
            if a in self.unc_pair and b in self.tool_index:
                self.unc_pair[a] &= ~(1 << self.tool_index[b])
        for tool, arg, value in found[TargetKind.ENUM_VALUE]:
            self._drop_value(tool, arg, value)
        for tool, arg, edge in found[TargetKind.RANGE_EDGE]:
            spec = self.grammar.tools[tool].arguments[arg]
            self._drop_value(tool, arg, spec.minimum if edge == "min" else spec.maximum)
        gained = (before & ~self.left_exp).bit_count()
        self._gain = _moving_average(self._gain, gained)
        if self.phase == "rest":
            self._path_gain = _moving_average(self._path_gain, (paths_before & ~self.left_path).bit_count())
        self._accepted += 1
        self._rejected_in_row = 0
        if self.phase == "rest" and self._rest_left() != rest_before and not self.exhausted:
            self._rest_since = self._accepted
        self._after_derivation()
        self.begin()

    def reject(self) -> None:
        """Drop what a rejected derivation covered tentatively.

        A target that was among the new ones of three rejected derivations is given up (no longer
        steered toward; it still counts if a sample covers it): some targets can only be reached
        by instructions that cannot be valid (a sign-off that normalization strips, a call whose
        preconditions the grammar cannot set up around it).
        """
        self._rejected_in_row += 1
        if self.phase != "focus":
            for name in ("exp", "path"):
                fresh = getattr(self, f"cur_{name}") & getattr(self, f"unc_{name}")
                first, second = self._strikes.get(name, (0, 0))
                give_up = second & fresh
                self._strikes[name] = (first | fresh, second | (first & fresh))
                if give_up:
                    setattr(self, f"unc_{name}", getattr(self, f"unc_{name}") & ~give_up)
        self._after_derivation()
        self.begin()

    def _after_derivation(self) -> None:
        """Move from one phase to the next, and to the next target in focus (see the module docstring)."""
        if self.phase == "broad":
            stalled = self._accepted >= FOCUS_WARMUP and self._gain < self.focus_below
            if not (stalled or not self.unc_exp):
                return
            self.phase = "focus"
            self._focus_queue = bit_positions(self.left_exp)[::-1]  # expansion targets, popped lowest first
            self.unc_exp = 0
        elif self.phase == "rest":
            # broad steering for the 2-paths until it stalls too; then they are taken one at a time
            if self._paths_in_focus:
                return
            stalled = (self._accepted - self._rest_entered >= FOCUS_WARMUP
                       and self._path_gain < self.focus_below * PATH_FOCUS_SHARE)
            if not (stalled or not self.left_path):
                return
            self.phase = "focus"
            out = self.given_up_exp & self.left_exp  # skip the 2-paths whose parent or child was given up
            self._path_queue = [i for (p, c), i in sorted(self.path_ids.items(), key=lambda item: -item[1])
                                if (self.left_path >> i) & 1 and not (self.user_bits[p] | self.user_bits[c]) & out]
            self._paths = {i: p for p, i in self.path_ids.items()}
            self.unc_path = 0  # no broad steering toward 2-paths any more: they are in focus or given up
        elif self.phase != "focus":
            return
        if self.focus and not self.left_exp & self.focus:
            self.focus = 0  # covered
        elif self.focus_path and not self.left_path & self.focus_path:
            self.focus_path = 0
        elif (self.focus or self.focus_path) and not self._plain:
            self._focus_failures += 1
            if self._focus_failures >= self.focus_tries:
                self.given_up_exp |= self.focus
                self.given_up_path |= self.focus_path
                self.focus = self.focus_path = 0
        while not self.focus and not self.focus_path and self._focus_queue:
            e = self._focus_queue.pop()
            if self.left_exp & self.user_bits[e]:
                self.focus = self.user_bits[e]
                self._focus_failures = 0
                self._route = _routes_to(self.t, self.parents_of, e)
        while not self.focus and not self.focus_path and self._path_queue:
            i = self._path_queue.pop()
            if (self.left_path >> i) & 1:
                p, c = self._paths[i]
                self.focus_path = 1 << i
                self._focus_failures = 0
                self._path_target = (p, c)
                self._route = _routes_to(self.t, self.parents_of, p)
                self._route_below = _routes_to(self.t, self.parents_of, c)
        if not self.focus and not self.focus_path:
            self.phase = "rest"
            self._rest_since = self._rest_entered = self._accepted

    def _rest_left(self) -> int:
        """How many 2-paths (none after their focus), tool pairs and values are left to steer toward."""
        return (self.unc_path.bit_count() + sum(m.bit_count() for m in self.unc_pair.values())
                + sum(len(v) for v in self.unc_values.values()))

    def _drop_value(self, tool: str, arg: str, value: Any) -> None:
        values = self.unc_values.get((tool, arg))
        if values is None:
            return
        kept = [v for v in values if not (v == value and isinstance(v, bool) == isinstance(value, bool))]
        if kept:
            self.unc_values[(tool, arg)] = kept
        else:
            del self.unc_values[(tool, arg)]

    # -- the Chooser interface --------------------------------------------------------------------------

    def note(self, exp: int, parent: int) -> None:
        self.size += 1
        self.cur_exp |= self.user_bits[exp]
        if parent >= 0 and self.path_ids:
            i = self.path_ids.get((parent, exp))
            if i is not None:
                self.cur_path |= 1 << i

    def note_tool(self, tool: str) -> None:
        self.last_tool = tool

    def prefer(self, tool: str | None, argument: str | None) -> tuple[Any, ...]:
        if tool is None or argument is None:
            return ()
        return tuple(self.unc_values.get((tool, argument), ()))

    def choose(self, symbol: str, candidates: Sequence[int], full: bool, parent: int, rng: random.Random) -> int:
        if self._plain:  # after a run of rejections: the fallback alone, so that the stream goes on
            return self.fallback.choose(symbol, candidates, full, parent, rng)
        if self.focus:
            if self.cur_exp & self.focus:
                return self.fallback.choose(symbol, candidates, full, parent, rng)
            return self._choose_focused(symbol, candidates, full, parent, rng, self._route)
        if self.focus_path:
            p, c = self._path_target
            if self.cur_path & self.focus_path:
                return self.fallback.choose(symbol, candidates, full, parent, rng)
            if parent == p:  # below the parent: to the child, through expansions that are not user ones
                return self._choose_focused(symbol, candidates, full, parent, rng, self._route_below, child=c)
            return self._choose_focused(symbol, candidates, full, parent, rng, self._route)
        unc_exp = self.unc_exp & ~self.cur_exp
        unc_path = self.unc_path & ~self.cur_path
        pair = self.unc_pair.get(self.last_tool, 0) if self.last_tool is not None else 0
        if not (unc_exp or unc_path or pair):
            return self.fallback.choose(symbol, candidates, full, parent, rng)
        t = self.t
        recursive = self.recursive
        if self.size >= self.max_size:  # big enough: the rest is drawn as the fallback would
            return self.fallback.choose(symbol, candidates, full, parent, rng)
        chain_symbol, chain_len = self.chain
        may_repeat = self.size < self.max_size and not (chain_symbol == symbol and chain_len >= self.max_repeat)
        best: list[int] = []
        best_key: tuple[int, int, int, int] = (0, 0, 0, 0)
        sym_reach, sym_preach, user_bits = self.sym_reach, self.sym_preach, self.user_bits
        for e in candidates:
            x = t.exps[e]
            primary = 2 if user_bits[e] & unc_exp else 0
            if parent >= 0 and x.user and self.path_ids:
                i = self.path_ids.get((parent, e))
                if i is not None and (unc_path >> i) & 1:
                    primary += 1
            if pair and t.tool_bits[e] & pair:
                primary += 1
            # targets reachable below, counted per child (two children reaching a target can cover
            # two of them), through children that cannot lead back here (no nesting for reach)
            reach_exp = 0
            reach_path = (self.own_paths[e] & unc_path).bit_count()
            for child in self.outward[e]:
                reach_exp += (sym_reach.get(child, 0) & unc_exp).bit_count()
                reach_path += (sym_preach.get(child, 0) & unc_path).bit_count()
            bonus = 1 if symbol in x.children and may_repeat and (reach_exp or reach_path) else 0
            key = (primary, reach_exp, reach_path, bonus)
            if key > best_key:
                best_key, best = key, [e]
            elif key == best_key and key != (0, 0, 0, 0):
                best.append(e)
        if not best:
            return self.fallback.choose(symbol, candidates, full, parent, rng)
        choice = best[0] if len(best) == 1 else best[int(rng.random() * len(best))]
        repeats = symbol in t.exps[choice].children
        self.chain = (symbol, chain_len + 1 if chain_symbol == symbol and repeats else (1 if repeats else 0))
        return choice

    def _choose_focused(self, symbol: str, candidates: Sequence[int], full: bool, parent: int,
                        rng: random.Random, route: dict[int, int], *, child: int = -1) -> int:
        """The next step of ``route`` (steps down to its target, from :func:`_routes_to`); the
        fallback's choice once it is off the route. With ``child`` (below the parent of a 2-path in
        focus), only ``child`` itself and helper expansions may be taken, so that the parent stays
        the child's parent."""
        exps = self.t.exps
        best: list[int] = []
        best_steps = 0
        for e in candidates:
            steps = route.get(e)
            if steps is None or (child >= 0 and e != child and exps[e].user):
                continue
            if not best or steps < best_steps:
                best_steps, best = steps, [e]
            elif steps == best_steps:
                best.append(e)
        if not best and not full:
            # the route runs through alternatives left out here, whose tools cannot run yet: a call
            # that provides what they require sets the session up for the next try
            best = self._providers(symbol, candidates, route)
        if not best:
            return self.fallback.choose(symbol, candidates, full, parent, rng)
        return best[0] if len(best) == 1 else best[int(rng.random() * len(best))]

    def _providers(self, symbol: str, candidates: Sequence[int], route: dict[int, int]) -> list[int]:
        """Among ``candidates``, those whose calls provide a fact that the tools on ``route``, left
        out of ``candidates``, require (compared up to the first placeholder)."""
        t = self.t
        offered = set(candidates)
        lost = 0
        for e in t.alts.get(symbol, ()):
            if e in route and e not in offered:
                lost |= t.tool_bits[e]
        needed = {stem for i in bit_positions(lost) for stem in self._requires[i]}
        if not needed:
            return []
        return [e for e in candidates
                if any(f.startswith(stem) for i in bit_positions(t.tool_bits[e]) for f in self._provides[i]
                       for stem in needed)]

    def choose_form(self, entries: Sequence[tuple[str, DNode, tuple[int, ...]]], parent: int, rng: random.Random) -> int:
        unc = 0 if self._plain else (self.focus or self.unc_exp) & ~self.cur_exp
        if unc:
            scores = [sum(1 for e in used if self.user_bits[e] & unc) for _text, _node, used in entries]
            top = max(scores)
            if top > 0:
                best = [k for k, s in enumerate(scores) if s == top]
                return best[int(rng.random() * len(best))]
        return self.fallback.choose_form(entries, parent, rng)


def _moving_average(average: float, value: int) -> float:
    """The exponential moving average (about 20 samples) after ``value``; ``inf`` means none yet."""
    return float(value) if average == float("inf") else 0.95 * average + 0.05 * value


def _routes_to(t: Any, parents_of: dict[str, list[int]], target: int) -> dict[int, int]:
    """For every expansion from which ``target`` can be derived: the fewest expansion steps down to it
    (a breadth-first search up the rule graph, from the target to the start)."""
    steps = {target: 0}
    frontier = [target]
    reached: set[str] = set()
    while frontier:
        following = []
        for e in frontier:
            symbol = t.exps[e].origin
            if symbol in reached:
                continue
            reached.add(symbol)
            for up in parents_of.get(symbol, ()):
                if up not in steps:
                    steps[up] = steps[e] + 1
                    following.append(up)
        frontier = following
    return steps


_STATIC: weakref.WeakKeyDictionary[Any, dict[bool, dict[str, Any]]] = weakref.WeakKeyDictionary()


def _static_tables(grammar: Grammar, with_paths: bool) -> dict[str, Any]:
    """The per-grammar bit masks of the coverage strategy (built once, shared by every chooser)."""
    slot = _STATIC.setdefault(grammar, {})
    if with_paths in slot:
        return slot[with_paths]
    t = gen_tables(grammar)
    targets = coverage_targets(grammar)
    # bit masks: expansions by index, 2-paths by position in sorted order
    path_ids = {p: i for i, p in enumerate(sorted(targets.by_kind[TargetKind.PATH2]))} if with_paths else {}
    n = len(t.exps)
    own_paths = [0] * n
    for (p, _c), i in path_ids.items():
        own_paths[p] |= 1 << i
    user_bits = [(1 << e) if t.exps[e].user and e in targets.user else 0 for e in range(n)]
    _reach, sym_reach = _propagate(t, user_bits)
    _preach, sym_preach = _propagate(t, own_paths)
    parents_of: dict[str, list[int]] = {}  # nonterminal -> the expansions with it among their children
    for e, x in enumerate(t.exps):
        for child, term in zip(x.children, x.is_term):
            if not term and child in t.alts and e in t.exp_depth:
                parents_of.setdefault(child, []).append(e)
    recursive, outward = _recursive_expansions(t)
    # per tool index: the facts it requires (up to the first placeholder) and provides
    by_index = sorted(t.tool_index.items(), key=lambda item: item[1])
    requires = [frozenset(alt.strip().split("{")[0] for r in grammar.tools[name].requires for alt in r.split("|"))
                for name, _ in by_index]
    provides = [tuple(grammar.tools[name].provides) for name, _ in by_index]
    slot[with_paths] = {"path_ids": path_ids, "own_paths": own_paths, "user_bits": user_bits, "sym_reach": sym_reach,
                        "sym_preach": sym_preach, "recursive": recursive, "outward": outward,
                        "parents_of": parents_of, "requires": requires, "provides": provides}
    return slot[with_paths]


def _recursive_expansions(t: Any) -> tuple[list[bool], list[tuple[str, ...]]]:
    """Per expansion: whether a child can derive its nonterminal again, and the children that cannot."""
    graph = nx.DiGraph()
    for symbol, exps in t.alts.items():
        graph.add_node(symbol)
        for e in exps:
            for child, term in zip(t.exps[e].children, t.exps[e].is_term):
                if not term and child in t.alts:
                    graph.add_edge(symbol, child)
    component: dict[str, int] = {}
    for k, members in enumerate(nx.strongly_connected_components(graph)):
        for m in members:
            component[m] = k
    recursive = [False] * len(t.exps)
    outward: list[tuple[str, ...]] = [()] * len(t.exps)
    for symbol, exps in t.alts.items():
        for e in exps:
            kids = [c for c, term in zip(t.exps[e].children, t.exps[e].is_term) if not term and c in t.alts]
            inward = [c for c in kids if component[c] == component[symbol]]
            recursive[e] = bool(inward)
            outward[e] = tuple(dict.fromkeys(c for c in kids if component[c] != component[symbol]))
    return recursive, outward


def _propagate(t: Any, own: list[int]) -> tuple[list[int], dict[str, int]]:
    """OR ``own`` bits upward: per expansion and per symbol, the bits of everything derivable below.

    Symbols are processed children first (strongly connected components of the rule graph in
    reverse topological order), iterating to a fixed point inside each component.
    """
    graph = nx.DiGraph()
    for symbol, exps in t.alts.items():
        graph.add_node(symbol)
        for e in exps:
            for child, term in zip(t.exps[e].children, t.exps[e].is_term):
                if not term and child in t.alts:
                    graph.add_edge(symbol, child)
    per_exp = list(own)
    per_sym: dict[str, int] = {}
    condensed = nx.condensation(graph)
    for comp in reversed(list(nx.topological_sort(condensed))):
        members = condensed.nodes[comp]["members"]
        changed = True
        while changed:
            changed = False
            for symbol in members:
                acc = per_sym.get(symbol, 0)
                for e in t.alts[symbol]:
                    bits = own[e]
                    for child, term in zip(t.exps[e].children, t.exps[e].is_term):
                        if not term:
                            bits |= per_sym.get(child, 0)
                    per_exp[e] = bits
                    acc |= bits
                if acc != per_sym.get(symbol, 0):
                    per_sym[symbol] = acc
                    changed = len(members) > 1
    return per_exp, per_sym


def _coverage_factory(grammar: Grammar, *, fallback: str = SamplingStrategy.WEIGHTED.value, targets: Any = None,
                      max_repeat: int = MAX_REPEAT, max_size: int = MAX_SIZE, focus_below: float = FOCUS_BELOW,
                      focus_tries: int = FOCUS_TRIES, **options: Any) -> Chooser:
    if fallback == SamplingStrategy.COVERAGE.value:
        raise InvalidArgument("the coverage strategy cannot fall back on itself; use 'weighted' or 'uniform'")
    if isinstance(focus_below, bool) or not isinstance(focus_below, (int, float)) or focus_below < 0:
        raise InvalidArgument(f"focus_below must be a number >= 0, got {focus_below!r}")
    if isinstance(focus_tries, bool) or not isinstance(focus_tries, int) or focus_tries < 1:
        raise InvalidArgument(f"focus_tries must be a whole number >= 1, got {focus_tries!r}")
    base = _strategy_factory(fallback)(grammar, **options)
    return CoverageChooser(grammar, base, max_repeat=max_repeat, max_size=max_size, kinds=targets,
                           focus_below=float(focus_below), focus_tries=focus_tries)


register_strategy(SamplingStrategy.COVERAGE, _coverage_factory, options={
    "targets": None, "fallback": SamplingStrategy.WEIGHTED.value, "max_repeat": MAX_REPEAT, "max_size": MAX_SIZE,
    "focus_below": FOCUS_BELOW, "focus_tries": FOCUS_TRIES, "until_covered": False})
