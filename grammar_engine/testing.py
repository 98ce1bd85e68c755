"""Soundness checks for grammar authors: ready property tests, and a pytest plugin that runs them.

A grammar is *sound* when what it generates is what it reads:

=================  =================================================================================
check              property
=================  =================================================================================
``parses_back``    every sample's instruction parses back to exactly the sample's own calls
``unambiguous``    no sampled instruction has two parses with different calls
``schemas``        every sample's calls fit the tool schemas
``expressible``    every tool, and every argument of it, is said by some instruction
``runs``           every sample's calls run on the domain's executor (when it is installed)
=================  =================================================================================

Use them from a test file, per sample inside your own ``@given`` tests::

    from hypothesis import given
    from grammar_engine.strategies import instructions
    from grammar_engine.testing import assert_parses_back

    @given(instructions(GRAMMAR))
    def test_parses_back(sample):
        assert_parses_back(GRAMMAR, sample)

as whole properties (``check_parses_back(GRAMMAR)``), as a ready test class
(``TestMyGrammar = soundness_tests("grammars/mine")``), or through the pytest plugin:
``pytest -p grammar_engine.testing --grammar-soundness grammars/mine`` collects each domain's
``grammar.lark`` and runs every check on it (the plugin is this module).

A failure raises :class:`SoundnessError` (an ``AssertionError``) whose message shows the shrunk
instruction, the calls on both sides, the rule at fault (the ``call_``/``arg_`` expansion whose
slot produced the differing value, with its file and line) and the trees. Hypothesis's database
and settings apply as usual: pass ``settings=`` or load a profile.

Nothing here imports hypothesis or pytest until a check runs, so the plugin costs nothing in a
test session that does not use it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lark import Token, Tree

from .errors import GrammarEngineError, InstructionParseError, InvalidArgument, ValueConversionError
from .grammar import Grammar, load, normalize_instruction
from .parsing import Decomposition, _Extractor, _Pending
from .slots import SlotKind

if TYPE_CHECKING:
    from hypothesis import settings as Settings

    from .sampling import Sample

__all__ = [
    "CHECKS",
    "SoundnessError",
    "assert_parses_back",
    "assert_runs",
    "assert_schema_valid",
    "assert_unambiguous",
    "check_expressible",
    "check_parses_back",
    "check_runs",
    "check_schemas",
    "check_unambiguous",
    "expressible_problems",
    "soundness_tests",
]


class SoundnessError(AssertionError):
    """A soundness check failed. The message says where; the attributes hold the pieces.

    Attributes
    ----------
    check
        The check that failed (``parses_back``, ``unambiguous``, ``schemas``, ``expressible``,
        ``runs``).
    instruction
        The (shrunk) instruction, or "" for grammar-wide checks.
    expected, got
        The sample's own calls and what the check found instead (None when not applicable).
    fault
        The rule at fault, in words (empty when none can be named).
    sample
        The sample that failed, when there is one.
    """

    def __init__(self, check: str, message: str, *, instruction: str = "", expected: Any = None,
                 got: Any = None, fault: str = "", sample: Any = None) -> None:
        self.check = check
        self.instruction = instruction
        self.expected = expected
        self.got = got
        self.fault = fault
        self.sample = sample
        super().__init__(message)


# -- where a call's arguments come from ----------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """The slot that gave one argument of one call, and the call rule around it."""

    slot: str  # the slot's node name (arg_/const_/each_/ref_ ...)
    text: str  # the text under the slot
    start: int
    call: str  # the enclosing call_ node's name, or "" (a slot shared by a group_)
    expansion: int | None  # index of the call node's expansion, when known


def _typed(grammar: Grammar, node: Any) -> Any:
    return grammar.table.typed.get(node.data) if isinstance(node, Tree) else None


def _post_order(tree: Tree) -> list[Tree]:
    out: list[Tree] = []
    stack: list[tuple[Tree, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        if done:
            out.append(node)
            continue
        stack.append((node, True))
        for child in reversed(node.children):
            if isinstance(child, Tree):
                stack.append((child, False))
    return out


def _node_text(text: str, node: Tree | Token) -> tuple[str, int]:
    if isinstance(node, Token):
        return str(node), node.start_pos or 0
    meta = node.meta
    if getattr(meta, "empty", True):
        return "", 0
    return text[meta.start_pos:meta.end_pos], meta.start_pos


def _call_sources(grammar: Grammar, tree: Tree, text: str, expansions: tuple[int, ...] = ()) -> list[tuple[str, dict[str, _Source]]]:
    """Per call (in call order): its tool and, per argument, the slot that filled it.

    Mirrors :func:`grammar_engine.parsing.extract_calls` (same walk, same order), so call ``i``
    here is call ``i`` of the extracted list.
    """
    table = grammar.table
    parents: dict[int, Tree] = {}
    for node in tree.iter_subtrees_topdown():
        for child in node.children:
            if isinstance(child, Tree):
                parents[id(child)] = node
    # expansions are post-order, as Lark's callbacks fire: pair the call ones with the call nodes
    call_nodes = [n for n in _post_order(tree) if (t := _typed(grammar, n)) is not None and t.kind is SlotKind.CALL]
    call_exps = [e for e in expansions if e < len(table.expansions)
                 and (t := table.typed_of(table.expansions[e])) is not None and t.kind is SlotKind.CALL]
    exp_of = {id(n): e for n, e in zip(call_nodes, call_exps)} if len(call_nodes) == len(call_exps) else {}
    extractor = _Extractor(text, table, grammar.tools, grammar.lexicon)
    pendings = [item for item in extractor.visit(tree) if isinstance(item, _Pending)]
    unused = [n for n in tree.iter_subtrees_topdown() if (t := _typed(grammar, n)) is not None and t.kind is SlotKind.CALL]
    out: list[tuple[str, dict[str, _Source]]] = []
    count = 0
    for j, pending in enumerate(pendings):
        try:
            total = len(extractor.materialize(pendings[:j + 1]))  # each_ slots make several calls
        except (ValueConversionError, KeyError):
            break
        call_node = None
        for slot in pending.slots:
            node: Tree | None = parents.get(id(slot.node))
            while node is not None and not ((t := _typed(grammar, node)) is not None and t.kind is SlotKind.CALL):
                node = parents.get(id(node))
            if node is not None:
                call_node = node
                break
        if call_node is None:
            call_node = next((n for n in unused if grammar.table.typed[n.data].target == pending.tool), None)
        if call_node is not None and call_node in unused:
            unused.remove(call_node)
        sources: dict[str, _Source] = {}
        for slot in pending.slots:
            if slot.typed.target in sources:
                continue
            slot_text, start = _node_text(text, slot.node)
            inside = call_node is not None and _inside(parents, slot.node, call_node)
            sources[slot.typed.target] = _Source(
                slot.typed.name, slot_text, start, call_node.data if inside and call_node is not None else "",
                exp_of.get(id(call_node)) if call_node is not None else None,
            )
        for _ in range(total - count):
            out.append((pending.tool, sources))
        count = total
    return out


def _inside(parents: Mapping[int, Tree], node: Tree, ancestor: Tree) -> bool:
    current: Tree | None = node
    while current is not None:
        if current is ancestor:
            return True
        current = parents.get(id(current))
    return False


def _describe_expansion(grammar: Grammar, index: int) -> str:
    exp = grammar.table.expansions[index]
    return f"{exp.node_id} `{exp.label}` ({grammar.location_of(exp.origin)})"


def _describe_source(grammar: Grammar, source: _Source | None, arg: str) -> str:
    if source is None:
        return f"no slot fills {arg!r}"
    where = f"{source.slot} over {source.text!r} (chars {source.start}-{source.start + len(source.text)})"
    if source.expansion is not None:
        where += f", in {_describe_expansion(grammar, source.expansion)}"
    elif source.call:
        where += f", in {source.call} ({grammar.location_of(source.call)})"
    else:
        where += f", shared by a group ({grammar.location_of(source.slot)})"
    return where


def _differences(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """The first call that differs and the arguments that differ in it (``[]``: the tool differs)."""
    for i in range(max(len(expected), len(got))):
        a = expected[i] if i < len(expected) else None
        b = got[i] if i < len(got) else None
        if a == b:
            continue
        if a is None or b is None or a["name"] != b["name"]:
            return i, []
        args_a, args_b = a.get("arguments", {}), b.get("arguments", {})
        return i, sorted(k for k in set(args_a) | set(args_b) if args_a.get(k, _MISSING) != args_b.get(k, _MISSING))
    return -1, []


_MISSING = object()


def _fault(grammar: Grammar, text: str, left: tuple[str, Tree, tuple[int, ...], list[dict[str, Any]]],
           right: tuple[str, Tree, tuple[int, ...], list[dict[str, Any]]]) -> tuple[str, list[str]]:
    """Name the rule at fault between two readings of ``text``: (one line, detail lines)."""
    index, args = _differences(left[3], right[3])
    if index < 0:
        return "", []
    lines = []
    sides = []
    for label, tree, expansions, _calls in (left, right):
        try:
            sources = _call_sources(grammar, tree, text, expansions)
        except (GrammarEngineError, RecursionError, KeyError):
            sources = []
        sides.append((label, sources[index] if index < len(sources) else None))
    headline = ""
    if not args:
        tools = [(s[1][0] if s[1] else "?") for s in sides]
        headline = f"call {index + 1} is {tools[0]} in the {sides[0][0]} but {tools[1]} in the {sides[1][0]}"
        return headline, lines
    for arg in args:
        for label, found in sides:
            tool = found[0] if found else "?"
            src = found[1].get(arg) if found else None
            value = (left[3] if label == left[0] else right[3])
            call = value[index] if index < len(value) else {}
            shown = call.get("arguments", {}).get(arg, "(not given)") if call else "(no call)"
            lines.append(f"{label}: {tool}.{arg} = {json.dumps(shown, default=str)} from {_describe_source(grammar, src, arg)}")
    first_src = sides[0][1][1].get(args[0]) if sides[0][1] else None
    if first_src is not None:
        rule = _describe_expansion(grammar, first_src.expansion) if first_src.expansion is not None else (first_src.call or "a group_ rule")
        headline = f"{first_src.slot} in {rule} fills {args[0]!r} of call {index + 1}"
    else:
        other = sides[1][1][1].get(args[0]) if sides[1][1] else None
        rule = other.slot if other is not None else "?"
        headline = f"{args[0]!r} of call {index + 1} is filled only in the {sides[1][0]} (by {rule})"
    return headline, lines


def _own_expansions(grammar: Grammar, used: Iterable[int], other: Iterable[int]) -> list[str]:
    """User-written expansions in ``used`` that ``other`` does not use."""
    missing = sorted(set(used) - set(other))
    return [_describe_expansion(grammar, e) for e in missing
            if e < len(grammar.table.expansions) and not grammar.table.expansions[e].origin.startswith("__")]


def _indent(text: str, pad: str = "    ") -> str:
    return "\n".join(pad + line for line in text.rstrip("\n").splitlines())


def _calls_json(calls: Any) -> str:
    return json.dumps(calls, ensure_ascii=False, default=str)


def _token_fault(grammar: Grammar, sample: Sample, exc: InstructionParseError) -> str:
    """The generated token the parse error falls in (from the sample's token list), in words."""
    types = getattr(sample, "token_types", ())
    starts = getattr(sample, "token_starts", ())
    text = sample.instruction
    if not exc.expected and not exc.context:  # not a syntax error: the reading's values fail
        return (f"the parser's reading of this text cannot be turned into calls ({exc.message}): "
                f"it reads the text with other rules than the sample's (compare the two trees)")
    if not types or exc.line != 1:
        return str(exc).splitlines()[0]
    pos = exc.column - 1
    k = max((i for i, start in enumerate(starts) if start <= pos), default=0)
    end = starts[k + 1] if k + 1 < len(starts) else len(text)
    token = text[starts[k]:end].rstrip()
    name = types[k]
    literal = grammar.table.terminals.get(name)
    pattern = grammar.table.patterns.get(name, "")
    pattern = pattern if len(pattern) <= 60 else pattern[:57] + "..."
    kind = f"the literal {literal!r}" if literal else f"terminal {name} /{pattern}/"
    defined = any(f.definition(name) for f in grammar.files)
    where = grammar.location_of(name) if defined else "written inline"
    offset = f"{pos - starts[k]} characters into" if pos > starts[k] else "at"
    return (f"the parse stops {offset} the generated token {token!r} (chars {starts[k]}-{starts[k] + len(token)}), "
            f"{kind} ({where}): the parser does not read that token back whole")


def _reading_tree(grammar: Grammar, text: str, exc: InstructionParseError) -> list[str]:
    """The parser's tree, when the text parses but its reading cannot become calls."""
    if exc.expected or exc.context:
        return []
    try:
        tree = grammar._lark.parse(text)
    except Exception:  # noqa: BLE001 - only an illustration; the error above stands
        return []
    return ["  parse tree:", _indent(tree.pretty(), "    ")]


# -- parse cache (shrinking asks for the same text many times) ------------------------------------------

_PARSES: weakref.WeakKeyDictionary[Grammar, OrderedDict[str, Decomposition | InstructionParseError]] = weakref.WeakKeyDictionary()


def _parse(grammar: Grammar, text: str) -> Decomposition:
    cache = _PARSES.setdefault(grammar, OrderedDict())
    found = cache.get(text)
    if found is None:
        try:
            found = grammar.parse(text)
        except InstructionParseError as exc:
            found = exc
        cache[text] = found
        if len(cache) > 512:
            cache.popitem(last=False)
    else:
        cache.move_to_end(text)
    if isinstance(found, InstructionParseError):
        raise found
    return found


# -- per-sample assertions ------------------------------------------------------------------------------


def assert_parses_back(grammar: Grammar, sample: Sample) -> Decomposition:
    """Assert that ``sample.instruction`` parses back to exactly ``sample.calls``.

    Returns the parse. Raises :class:`SoundnessError` naming the rule at fault: the slot whose
    value differs, the call expansion around it on each side, and the expansions the sample's
    derivation used that the parse did not (an expansion duplicating another's words but filling
    a different argument shows up there).
    """
    text = sample.instruction
    try:
        parsed = _parse(grammar, text)
    except InstructionParseError as exc:
        message = "\n".join([
            "a generated instruction does not parse",
            f"  instruction: {text!r}",
            f"  its calls:   {_calls_json(sample.calls)}",
            "  parse error:",
            _indent(str(exc), "    "),
            f"  rule at fault: {_token_fault(grammar, sample, exc)}",
            "  sample tree:",
            _indent(sample.tree.pretty(), "    "),
            *_reading_tree(grammar, text, exc),
        ])
        raise SoundnessError("parses_back", message, instruction=text, expected=sample.calls, got=None,
                             fault=_token_fault(grammar, sample, exc), sample=sample) from None
    if parsed.calls == sample.calls:
        return parsed
    headline, details = _fault(grammar, text, ("sample", sample.tree, sample.expansions, sample.calls),
                               ("parse", parsed.tree, parsed.expansions, parsed.calls))
    only_sample = _own_expansions(grammar, sample.expansions, parsed.expansions)
    only_parse = _own_expansions(grammar, parsed.expansions, sample.expansions)
    lines = [
        "a generated instruction parses back to different calls",
        f"  instruction:  {text!r}",
        f"  sample calls: {_calls_json(sample.calls)}",
        f"  parse calls:  {_calls_json(parsed.calls)}",
        f"  rule at fault: {headline}" if headline else "  rule at fault: (not found)",
        *("    " + d for d in details),
    ]
    if only_sample:
        lines += ["  expansions the sample used and the parse did not:", *("    " + e for e in only_sample)]
    if only_parse:
        lines += ["  expansions the parse used and the sample did not:", *("    " + e for e in only_parse)]
    lines += ["  sample tree:", _indent(sample.tree.pretty()), "  parse tree:", _indent(parsed.tree.pretty())]
    raise SoundnessError("parses_back", "\n".join(lines), instruction=text, expected=sample.calls,
                         got=parsed.calls, fault=headline, sample=sample)


def assert_unambiguous(grammar: Grammar, sample: Sample | str, *, limit: int = 8) -> None:
    """Assert that no two parses of the instruction (up to ``limit``) give different calls."""
    text = sample if isinstance(sample, str) else sample.instruction
    text = normalize_instruction(text)
    readings = grammar.parse_all(text, limit=limit)
    seen: dict[str, Decomposition] = {}
    for reading in readings:
        seen.setdefault(_calls_json(reading.calls), reading)
    if len(seen) < 2:
        return
    first, second = list(seen.values())[:2]
    headline, details = _fault(grammar, text, ("reading 1", first.tree, (), first.calls),
                               ("reading 2", second.tree, (), second.calls))
    lines = [
        f"an instruction has {len(seen)} parses with different calls",
        f"  instruction: {text!r}",
        *(f"  reading {k + 1}:   {key}" for k, key in enumerate(seen)),
        f"  rule at fault: {headline}" if headline else "  rule at fault: (not found)",
        *("    " + d for d in details),
        "  reading 1 tree:", _indent(first.tree.pretty()),
        "  reading 2 tree:", _indent(second.tree.pretty()),
    ]
    raise SoundnessError("unambiguous", "\n".join(lines), instruction=text, expected=first.calls,
                         got=second.calls, fault=headline, sample=None if isinstance(sample, str) else sample)


def assert_schema_valid(grammar: Grammar, sample: Sample) -> None:
    """Assert that every call of the sample fits its tool's schema; names the slot at fault."""
    for index, call in enumerate(sample.calls):
        problems = grammar.tools.validate_call(call)
        if not problems:
            continue
        try:
            sources = _call_sources(grammar, sample.tree, sample.instruction, sample.expansions)
        except (GrammarEngineError, RecursionError, KeyError):
            sources = []
        found = sources[index][1] if index < len(sources) else {}
        culprits = [(arg, src) for arg, src in found.items() if arg in " ".join(problems)]
        fault = _describe_source(grammar, culprits[0][1], culprits[0][0]) if culprits else ""
        lines = [
            f"call {index + 1} of a generated instruction does not fit the {call.get('name')} schema",
            f"  instruction: {sample.instruction!r}",
            f"  calls:       {_calls_json(sample.calls)}",
            *(f"  problem: {p}" for p in problems),
            f"  rule at fault: {fault}" if fault else "  rule at fault: (not found)",
            "  sample tree:", _indent(sample.tree.pretty()),
        ]
        raise SoundnessError("schemas", "\n".join(lines), instruction=sample.instruction, expected=sample.calls,
                             got=problems, fault=fault, sample=sample)


def assert_runs(grammar: Grammar, sample: Sample, workdir: str | Path | None = None, *, strict: bool = False) -> bool:
    """Run the sample's calls on the domain's executor; False (nothing run) when there is none.

    Raises :class:`SoundnessError` when a call crashes the executor (a library exception behind
    the :class:`~grammar_engine.executors.ExecutionError`), naming the call and the slot behind
    each of its arguments. A refusal the executor reports itself ("esterification needs a
    carboxylic acid") is the domain saying no to these values, not a grammar fault, and passes
    unless ``strict``.
    """
    from . import executors

    domain = grammar.tools.domain
    if domain not in executors.available_domains() or not executors.is_available(domain):
        return False
    with tempfile.TemporaryDirectory(prefix="grammar-engine-runs-") as tmp:
        try:
            executors.run_calls(domain, sample.calls, workdir or tmp)
        except executors.ExecutionError as exc:
            crashed = exc.__cause__ is not None and not isinstance(exc.__cause__, executors.ExecutionError)
            if not crashed and not strict:
                return True
            index = exc.index if exc.index is not None else 0
            try:
                sources = _call_sources(grammar, sample.tree, sample.instruction, sample.expansions)
            except (GrammarEngineError, RecursionError, KeyError):
                sources = []
            found = sources[index][1] if index < len(sources) else {}
            lines = [
                f"the calls of a generated instruction do not run on the {domain} executor",
                f"  instruction: {sample.instruction!r}",
                f"  calls:       {_calls_json(sample.calls)}",
                f"  error: {exc}",
                *(f"  {arg} from {_describe_source(grammar, src, arg)}" for arg, src in found.items()),
                "  sample tree:", _indent(sample.tree.pretty()),
            ]
            raise SoundnessError("runs", "\n".join(lines), instruction=sample.instruction, expected=sample.calls,
                                 got=str(exc), fault=str(exc).splitlines()[0], sample=sample) from None
    return True


# -- whole properties ------------------------------------------------------------------------------------


def _hypothesis() -> Any:
    try:
        import hypothesis
    except ImportError:  # pragma: no cover - exercised only without the dev extra
        raise ImportError("grammar_engine.testing needs hypothesis: pip install 'grammar-engine[dev]'") from None
    return hypothesis


def _keyed_database(database: Any, key: bytes) -> Any:
    """``database`` with every key prefixed, so each grammar and check keeps its own examples."""
    from hypothesis.database import ExampleDatabase

    if database is None:
        return None

    class _Keyed(ExampleDatabase):
        def save(self, k: bytes, value: bytes) -> None:
            database.save(key + k, value)

        def fetch(self, k: bytes) -> Iterable[bytes]:
            return database.fetch(key + k)

        def delete(self, k: bytes, value: bytes) -> None:
            database.delete(key + k, value)

        def move(self, src: bytes, dest: bytes, value: bytes) -> None:
            database.move(key + src, key + dest, value)

        def __repr__(self) -> str:
            return f"keyed({database!r})"

    return _Keyed()


def _settings(grammar: Grammar, check: str, settings: Settings | None, options: Mapping[str, Any]) -> Settings:
    hypothesis = _hypothesis()
    base = settings if settings is not None else hypothesis.settings()
    digest = hashlib.sha256(f"{grammar.source}|{check}|{sorted(options.items())!r}".encode()).digest()[:12]
    # one failure, the simplest, whatever the profile says: a SoundnessError, not an ExceptionGroup
    return hypothesis.settings(base, database=_keyed_database(base.database, digest), report_multiple_bugs=False,
                               suppress_health_check=[*base.suppress_health_check,
                                                      hypothesis.HealthCheck.too_slow,
                                                      hypothesis.HealthCheck.filter_too_much])


def _run(grammar: Grammar, check: str, body: Callable[[Any], None], settings: Settings | None,
         strategy_options: Mapping[str, Any]) -> None:
    hypothesis = _hypothesis()
    from .strategies import instructions

    strategy = instructions(grammar, **strategy_options)

    def prop(sample: Any) -> None:
        body(sample)

    prop.__name__ = prop.__qualname__ = re.sub(r"\W", "_", f"{check}_{grammar.domain}")
    test = hypothesis.settings(_settings(grammar, check, settings, strategy_options))(hypothesis.given(strategy)(prop))
    test()


def check_parses_back(grammar: Grammar | str | Path, *, settings: Settings | None = None, **options: Any) -> None:
    """Property: every sample parses back to its own calls (see :func:`assert_parses_back`).

    ``options`` go to :func:`grammar_engine.strategies.instructions` (``tools``, ``max_depth``,
    ``values``...); ``settings`` is a hypothesis ``settings`` object (default: the current profile).
    """
    grammar = _grammar(grammar)
    _run(grammar, "parses_back", lambda s: assert_parses_back(grammar, s), settings, options)


def check_unambiguous(grammar: Grammar | str | Path, *, settings: Settings | None = None, limit: int = 8,
                      **options: Any) -> None:
    """Property: no sampled instruction has two parses with different calls."""
    grammar = _grammar(grammar)
    _run(grammar, "unambiguous", lambda s: assert_unambiguous(grammar, s, limit=limit), settings, options)


def check_schemas(grammar: Grammar | str | Path, *, settings: Settings | None = None, **options: Any) -> None:
    """Property: every sample's calls fit the tool schemas (samples are drawn unfiltered)."""
    grammar = _grammar(grammar)
    options = {"valid": False, **options}
    _run(grammar, "schemas", lambda s: assert_schema_valid(grammar, s), settings, options)


def check_runs(grammar: Grammar | str | Path, *, settings: Settings | None = None, strict: bool = False,
               **options: Any) -> bool:
    """Property: no sample's calls crash the executor (see :func:`assert_runs`). False (nothing
    run) when the domain has no executor installed here."""
    from . import executors

    grammar = _grammar(grammar)
    domain = grammar.tools.domain
    if domain not in executors.available_domains() or not executors.is_available(domain):
        return False
    _run(grammar, "runs", lambda s: assert_runs(grammar, s, strict=strict), settings, options)
    return True


def _filled(grammar: Grammar, sample: Any) -> set[tuple[str, str]]:
    """(tool, argument) pairs some slot of the sample's tree fills (defaults included)."""
    try:
        sources = _call_sources(grammar, sample.tree, sample.instruction, sample.expansions)
    except (GrammarEngineError, RecursionError, KeyError):
        return set()
    return {(tool, arg) for tool, found in sources for arg in found} | {(tool, "") for tool, _ in sources}


def expressible_problems(grammar: Grammar | str | Path, *, settings: Settings | None = None,
                         **options: Any) -> list[str]:
    """Tools and arguments no instruction of the grammar says, with the reason.

    First statically (no reachable ``call_`` rule for the tool; no reachable slot filling the
    argument, from the derivation graph), then by search: for each pair not yet seen, hypothesis
    looks for a sample restricted to that tool whose tree fills the argument.
    """
    hypothesis = _hypothesis()
    from .derivation import reachable_symbols
    from .strategies import instructions

    grammar = _grammar(grammar)
    graph = grammar.graph
    reachable = reachable_symbols(grammar.table)
    problems: list[str] = []
    wanted: list[tuple[str, str]] = []
    for tool in grammar.tools:
        callers = [n for n in graph.predecessors(f"tool:{tool.name}") if n in reachable or n not in grammar.table.by_origin]
        if not callers:
            problems.append(f"tool {tool.name!r}: no call_{tool.name} rule is reachable from start")
            continue
        wanted.append((tool.name, ""))
        for arg in tool.arguments:
            fillers = [n for n in graph.predecessors(f"argument:{tool.name}.{arg}")]
            if not fillers:
                problems.append(f"argument {tool.name}.{arg}: no slot rule fills it "
                                f"(write arg_{arg}, const_{arg}__<value>, each_{arg} or ref_{arg} inside a call_{tool.name} rule)")
                continue
            wanted.append((tool.name, arg))
    base = settings if settings is not None else hypothesis.settings()
    search = hypothesis.settings(base, database=None, phases=[hypothesis.Phase.generate],
                                 suppress_health_check=list(hypothesis.HealthCheck))
    for tool, arg in wanted:
        strategy = instructions(grammar, tools=[tool], **options)
        try:
            hypothesis.find(strategy, lambda s, pair=(tool, arg): pair in _filled(grammar, s), settings=search)
        except (hypothesis.errors.NoSuchExample, hypothesis.errors.Unsatisfiable):
            what = f"tool {tool!r}" if not arg else f"argument {tool}.{arg}"
            problems.append(f"{what}: no instruction found in {search.max_examples} examples "
                            f"(its rules may need more depth than max_depth allows)")
    return problems


def check_expressible(grammar: Grammar | str | Path, *, settings: Settings | None = None, **options: Any) -> None:
    """Assert that every tool and argument is expressible (see :func:`expressible_problems`)."""
    grammar = _grammar(grammar)
    problems = expressible_problems(grammar, settings=settings, **options)
    if problems:
        raise SoundnessError("expressible", f"{len(problems)} tools or arguments of {grammar.source} cannot be said:\n"
                             + "\n".join("  " + p for p in problems), fault=problems[0])


_GRAMMARS: dict[str, Grammar] = {}


def _grammar(grammar: Grammar | str | Path) -> Grammar:
    if isinstance(grammar, Grammar):
        return grammar
    if not isinstance(grammar, (str, Path)):
        raise InvalidArgument(f"grammar must be a Grammar or a domain folder, got {grammar!r}")
    key = str(Path(grammar).resolve())
    if key not in _GRAMMARS:
        _GRAMMARS[key] = load(grammar)
    return _GRAMMARS[key]


#: The checks by name, as the plugin and :func:`soundness_tests` run them.
CHECKS: dict[str, Callable[..., Any]] = {
    "parses_back": check_parses_back,
    "unambiguous": check_unambiguous,
    "schemas": check_schemas,
    "expressible": check_expressible,
    "runs": check_runs,
}


def _check_names(checks: Iterable[str] | None) -> list[str]:
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [c for c in names if c not in CHECKS]
    if unknown:
        raise InvalidArgument(f"unknown soundness checks {unknown}; valid: {list(CHECKS)}")
    return names


def soundness_tests(grammar: Grammar | str | Path, *, checks: Iterable[str] | None = None,
                    settings: Settings | None = None, **options: Any) -> type:
    """A test class, one ``test_<check>`` method per check, for pytest to collect.

    >>> TestExample = soundness_tests("grammars/example", checks=["parses_back"])  # doctest: +SKIP

    The grammar is loaded when the first test runs. ``options`` go to
    :func:`grammar_engine.strategies.instructions`.
    """
    names = _check_names(checks)
    label = grammar.source if isinstance(grammar, Grammar) else str(grammar)

    def make(check: str) -> Callable[[Any], None]:
        def test(self: Any) -> None:
            ran = CHECKS[check](_grammar(grammar), settings=settings, **options)
            if ran is False:
                import pytest

                pytest.skip(f"no executor for {label} is installed here")

        test.__name__ = f"test_{check}"
        test.__doc__ = f"Soundness of {label}: {check}."
        return test

    namespace = {f"test_{check}": make(check) for check in names}
    namespace["__doc__"] = f"Soundness checks of {label}."
    return type(f"TestSoundness_{Path(label).name}", (), namespace)


# -- the pytest plugin -----------------------------------------------------------------------------------

try:
    import pytest as _pytest
except ImportError:  # pragma: no cover - the helpers work without pytest
    _pytest = None  # type: ignore[assignment]


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("grammar-engine", "grammar soundness checks")
    group.addoption("--grammar-soundness", action="store_true", default=False,
                    help="collect each domain's grammar.lark and run the soundness checks on it")
    group.addoption("--grammar-examples", type=int, default=None, metavar="N",
                    help="max_examples per soundness check (default: the hypothesis profile's)")
    group.addoption("--grammar-checks", default=None, metavar="NAMES",
                    help=f"comma-separated checks to run (default: all of {','.join(CHECKS)})")
    parser.addini("grammar_soundness", "collect grammar.lark files as soundness tests", type="bool", default=False)
    parser.addini("grammar_soundness_max_depth", "max_depth of the sampled instructions", default="")


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    if file_path.name != "grammar.lark" or not (file_path.parent / "tools.json").is_file():
        return None
    config = parent.config
    if not (config.getoption("grammar_soundness", False) or config.getini("grammar_soundness")):
        return None
    return GrammarFile.from_parent(parent, path=file_path)


if _pytest is not None:

    class GrammarFile(_pytest.File):
        """A domain's ``grammar.lark``, collected as one test per soundness check."""

        def collect(self) -> Iterator[Any]:
            raw = self.config.getoption("grammar_checks", None)
            names = _check_names(raw.split(",") if raw else None)
            for check in names:
                yield SoundnessItem.from_parent(self, name=check, check=check)

    class SoundnessItem(_pytest.Item):
        """One soundness check of one grammar."""

        def __init__(self, *, check: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.check = check

        def runtest(self) -> None:
            hypothesis = _hypothesis()
            examples = self.config.getoption("grammar_examples", None)
            settings = hypothesis.settings(max_examples=examples) if examples else None
            options: dict[str, Any] = {}
            depth = self.config.getini("grammar_soundness_max_depth")
            if depth:
                options["max_depth"] = int(depth)
            ran = CHECKS[self.check](_grammar(self.path.parent), settings=settings, **options)
            if ran is False:
                _pytest.skip(f"no executor for {self.path.parent.name} is installed here")

        def repr_failure(self, excinfo: Any, style: Any = None) -> str:
            error = excinfo.value
            if isinstance(error, SoundnessError):
                notes = "\n".join(getattr(error, "__notes__", ()))
                return str(error) + (f"\n{notes}" if notes else "")
            if isinstance(error, GrammarEngineError):
                return str(error)
            return super().repr_failure(excinfo)

        def reportinfo(self) -> tuple[Path, int, str]:
            return self.path, 0, f"{self.path.parent.name}: soundness check {self.check}"
