"""Load a tool-typed Lark grammar and its domain folder; the :class:`Grammar` object.

A domain is a folder::

    grammars/<domain>/
        grammar.lark       the grammar (may %import pieces from grammars/shared)
        tools.json         the tool schemas (see grammar_engine.tools)
        recorded.jsonl     recorded instructions, {"id", "instruction", "calls"?} per line

Loading reads text only: Lark compiles the grammar into tables, and nothing in a grammar file is
ever executed. Directives live in comments that Lark ignores::

    //! parser: lalr      claim the grammar is LALR(1) with the contextual lexer (checked)
    //! parser: earley    the default: Earley with the dynamic lexer
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lark
from lark.exceptions import GrammarError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.visitors import CollapseAmbiguities

from .derivation import Expansion, RuleTable, derivation_graph
from .errors import (
    GrammarEngineError,
    GrammarLoadError,
    InstructionParseError,
    InvalidArgument,
    Location,
    ToolBindingError,
    ValueConversionError,
)
from .parsing import Decomposition, extract_calls
from .tools import ToolRegistry
from .values import MoleculeLexicon, default_lexicon, shared_grammar_dir

if TYPE_CHECKING:
    import networkx as nx

    from .checks import CheckReport
    from .coverage import CoverageReport
    from .sampling import Sample

__all__ = ["Grammar", "load", "normalize_instruction"]

#: Longest instruction ``parse`` accepts; longer text is rejected, keeping parse time bounded.
MAX_INSTRUCTION_CHARS = 2000

_DIRECTIVE_RE = re.compile(r"^\s*//!\s*(\w+)\s*:\s*(\S+)", re.M)
_POS_RE = re.compile(r"at line (\d+),? column (\d+)")
_FILE_RE = re.compile(r" in (\S+?\.lark)")
_UNDEFINED_RE = re.compile(r"(?:Rule|Terminal) '?(\w+)'? used but not defined \(in rule (\w+)\)")
_DEFINED_TWICE_RE = re.compile(r"Rule '(\w+)' defined more than once")


def normalize_instruction(text: str) -> str:
    """Collapse whitespace and drop trailing sentence punctuation; case is left to the grammar.

    Literals match in any case (the grammar is compiled case-insensitively) while values keep the
    case they were written in, since gene names and paths are case-sensitive.

    >>> normalize_instruction("  Run  PCA\\n with 50 comps. ")
    'Run PCA with 50 comps'
    """
    return " ".join(text.split()).rstrip(".!?;, ").strip()


_WORD_RE = re.compile(r"\S+")


_NO_READING = object()  # Grammar._parse_pruned: the text has no parse


def _over_limit(text: str) -> bool:
    """Whether ``text`` normalizes to more than MAX_INSTRUCTION_CHARS, found without copying it:
    the scan stops as soon as the words seen are too long (a long run of trailing punctuation,
    which normalizing would drop, counts too)."""
    if len(text) <= MAX_INSTRUCTION_CHARS:
        return False
    total = -1
    for match in _WORD_RE.finditer(text):
        total += match.end() - match.start() + 1
        if total > MAX_INSTRUCTION_CHARS:
            return True
    return False


def _location_in_text(text: str, index: int, file: str) -> Location:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return Location(file, line, column)


@dataclass(frozen=True)
class SourceFile:
    """One grammar file that was read (the main file or an imported one)."""

    path: str
    text: str

    def definitions(self, name: str) -> list[Location]:
        """Every place ``name`` is defined (``name:`` at the start of a line, with ?/! and priority)."""
        pattern = rf"^[ \t]*[?!]?{re.escape(name)}(?:\.-?\d+)?\s*(?:{{[^}}]*}})?\s*:"
        return [_location_in_text(self.text, m.start() + len(m.group(0)) - len(m.group(0).lstrip()), self.path)
                for m in re.finditer(pattern, self.text, re.M)]

    def definition(self, name: str) -> Location | None:
        """Where ``name`` is first defined, or None."""
        found = self.definitions(name)
        return found[0] if found else None

    def defined_rules(self) -> list[str]:
        """Names of the rules this file defines (templates excluded), in file order."""
        names = re.findall(r"^[ \t]*[?!]?([a-z_][a-z0-9_]*)(?:\.-?\d+)?\s*:", self.text, re.M)
        return list(dict.fromkeys(names))

    def usage(self, name: str) -> Location | None:
        """The first place ``name`` is used as a symbol (not defined, not in a string or comment)."""
        for match in re.finditer(rf"(?<![\w\"'/]){re.escape(name)}(?![\w\"'])", self.text):
            line_start = self.text.rfind("\n", 0, match.start()) + 1
            prefix = self.text[line_start:match.start()]
            if "//" in prefix or prefix.count('"') % 2:
                continue
            rest = self.text[match.end():match.end() + 40]
            if not prefix.strip(" \t?!") and re.match(r"\s*(?:\.-?\d+)?\s*:", rest):
                continue  # this is the definition
            return _location_in_text(self.text, match.start(), self.path)
        return None


class Grammar:
    """A tool-typed grammar bound to its tool schemas.

    Build one with :func:`load` (a domain folder or a ``.lark`` file) or :meth:`from_text`.
    """

    def __init__(
        self,
        text: str,
        tools: ToolRegistry,
        *,
        source: str = "<grammar>",
        domain_dir: Path | None = None,
        import_paths: Iterable[Path] = (),
        lexicon: MoleculeLexicon | None = None,
        parser: str | None = None,
    ) -> None:
        self.text = text
        self.tools = tools
        self.source = source
        self.domain_dir = domain_dir
        self.domain = tools.domain if tools.domain != "<tools>" else (domain_dir.name if domain_dir else "grammar")
        self.lexicon = lexicon or default_lexicon()
        self.directives = {m[1].lower(): m[2].lower() for m in _DIRECTIVE_RE.finditer(text)}
        self.parser_kind = (parser or self.directives.get("parser", "earley")).lower()
        if self.parser_kind not in ("earley", "lalr"):
            raise GrammarLoadError(
                f"unknown parser {self.parser_kind!r}", Location(source, 1, 1),
                hint="write '//! parser: earley' or '//! parser: lalr'",
            )
        self._import_paths = [Path(p) for p in import_paths] + [shared_grammar_dir()]
        self.files: list[SourceFile] = [SourceFile(source, text)]
        self._lark = self._build(self.parser_kind)
        self.table = self._rule_table(self._lark)
        self._rule_index = {id(rule): i for i, rule in enumerate(self._lark.rules)}
        self._used: list[int] = []
        self._instrument(self._lark)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, tools: ToolRegistry | dict[str, Any], **kwargs: Any) -> Grammar:
        """A grammar from Lark text and tool schemas (a registry or a ``tools.json``-shaped dict)."""
        registry = tools if isinstance(tools, ToolRegistry) else _registry(lambda: ToolRegistry.from_dict(tools), "<tools>")
        return cls(text, registry, **kwargs)

    def _loader(self, base_path: str | None, grammar_path: str) -> tuple[str, str]:
        """Resolve ``%import`` against the domain folder and the shared folder, recording files."""
        for folder in ([Path(base_path).parent] if base_path and base_path != "<string>" else []) + self._import_paths:
            candidate = folder / grammar_path
            if candidate.is_file():
                text = candidate.read_text(encoding="utf-8")
                if all(f.path != str(candidate) for f in self.files):
                    self.files.append(SourceFile(str(candidate), text))
                return str(candidate), text
        raise OSError(f"cannot find {grammar_path}")

    def _build(self, parser: str, **extra: Any) -> lark.Lark:
        options: dict[str, Any] = dict(
            start="start",
            parser=parser,
            propagate_positions=True,
            g_regex_flags=re.IGNORECASE,
            import_paths=[self._loader],
            source_path=self.source,
            maybe_placeholders=False,
        )
        if parser == "lalr":
            options["lexer"] = "contextual"
        options.update(extra)
        try:
            return lark.Lark(self.text, **options)
        except GrammarError as exc:
            raise self._grammar_error(str(exc), parser) from None
        except OSError as exc:
            missing = Path(exc.filename).name if getattr(exc, "filename", None) else str(exc).split("find ")[-1]
            stem = missing.removesuffix(".lark")
            match = re.search(rf"%import\s+{re.escape(stem)}\b", self.text) or re.search(r"%import\s+[\w.]+", self.text)
            loc = _location_in_text(self.text, match.start(), self.source) if match else Location(self.source, 1, 1)
            raise GrammarLoadError(
                f"cannot import {missing!r}: no such grammar file", loc,
                hint="imports resolve against the grammar's folder and grammars/shared; "
                "use '%import common.NAME' for Lark's common terminals",
            ) from None
        except (UnexpectedInput, lark.exceptions.LarkError) as exc:
            raise self._grammar_error(str(exc), parser) from None
        except (AttributeError, TypeError, KeyError, IndexError, ValueError, AssertionError, RecursionError) as exc:
            # Lark itself crashes on a few malformed grammars ("%declare rule_name"): still report
            # it as a load error in the grammar file, never as an internal exception.
            declare = re.search(r"^[ \t]*%declare[ \t]*(?:[A-Z_][A-Z0-9_]*[ \t]+)*_*[a-z]", self.text, re.M)
            if declare:
                raise GrammarLoadError(
                    "'%declare' names a rule; it declares terminals only",
                    _location_in_text(self.text, declare.start(), self.source),
                    hint="write '%declare NAME' with an UPPER-case terminal name",
                ) from None
            raise GrammarLoadError(f"Lark cannot compile this grammar ({type(exc).__name__}: {exc})",
                                   Location(self.source, 1, 1)) from None

    def _grammar_error(self, message: str, parser: str) -> GrammarLoadError:
        first = message.strip().splitlines()[0]
        file_match = _FILE_RE.search(message)
        source = next((f for f in self.files if file_match and f.path == file_match[1]), self.files[0])
        pos = _POS_RE.search(message)
        if pos:
            return GrammarLoadError(
                f"syntax error: {first.split(', at line')[0].split(' at line')[0]}",
                Location(source.path, int(pos[1]), int(pos[2])),
                hint="a rule is 'name: alternative | alternative'; strings are in double quotes, "
                "regular expressions in /slashes/",
            )
        undefined = _UNDEFINED_RE.search(message)
        if undefined:
            name = undefined[1]
            loc = next((f.usage(name) for f in self.files if f.usage(name)), None) or Location(source.path)
            defined = [n for f in self.files for n in re.findall(r"^[ \t]*[?!]?(\w+)\s*:", f.text, re.M)]
            from difflib import get_close_matches

            close = get_close_matches(name, defined, n=1)
            return GrammarLoadError(
                f"undefined symbol {name!r} (used in rule {undefined[2]!r})", loc,
                hint=f"did you mean {close[0]!r}?" if close else f"define '{name}: ...' or %import it",
            )
        twice = _DEFINED_TWICE_RE.search(message)
        if twice:
            locs = [m for f in self.files for m in f.definitions(twice[1])]
            return GrammarLoadError(
                f"rule {twice[1]!r} is defined more than once", locs[-1] if locs else Location(source.path),
                hint="join the definitions with '|' or rename one (a variant suffix: name__variant)",
            )
        if parser == "lalr" and ("conflict" in message.lower() or "collision" in message.lower()):
            return GrammarLoadError(
                f"the grammar claims '//! parser: lalr' but is not LALR(1): {first}",
                Location(self.source, 1, 1),
                hint="remove the '//! parser: lalr' line to use Earley, or resolve the conflict",
            )
        return GrammarLoadError(first, Location(source.path, 1, 1))

    @staticmethod
    def _rule_table(parser: lark.Lark) -> RuleTable:
        expansions = []
        for index, rule in enumerate(parser.rules):
            expansions.append(
                Expansion(
                    index=index,
                    origin=str(rule.origin.name),
                    children=tuple(str(sym.name) for sym in rule.expansion),
                    alias=str(rule.alias) if rule.alias else None,
                    order=rule.order,
                    inline_single=bool(rule.options.expand1),
                )
            )
        # Lark numbers alternatives per origin; aliases and templates can repeat (origin, order).
        seen: dict[tuple[str, int], int] = {}
        fixed = []
        for exp in expansions:
            key = (exp.origin, exp.order)
            if key in seen:
                order = max(o for (n, o) in seen if n == exp.origin) + 1
                exp = Expansion(exp.index, exp.origin, exp.children, exp.alias, order, exp.inline_single)
                key = (exp.origin, order)
            seen[key] = exp.index
            fixed.append(exp)
        terminals: dict[str, str | None] = {}
        patterns: dict[str, str] = {}
        for term in parser.terminals:
            pattern = term.pattern
            terminals[term.name] = pattern.value if pattern.type == "str" else None
            patterns[term.name] = pattern.to_regexp()
        return RuleTable(fixed, terminals, patterns)

    def _instrument(self, parser: lark.Lark) -> None:
        """Record which compiled expansions each parse uses (wrapping Lark's tree callbacks)."""
        callbacks = parser._callbacks
        used = self._used
        index_of = self._rule_index
        for rule, callback in list(callbacks.items()):
            position = index_of.get(id(rule))
            if position is None:
                continue

            def wrapped(children: list[Any], _cb: Any = callback, _pos: int = position) -> Any:
                used.append(_pos)
                return _cb(children)

            callbacks[rule] = wrapped

    # -- parsing ---------------------------------------------------------------------------------

    def _parse_error(self, exc: UnexpectedInput, text: str) -> InstructionParseError:
        expected: set[str] = set()
        if isinstance(exc, UnexpectedCharacters):
            expected = set(exc.allowed or ())
            found = text[exc.pos_in_stream:exc.pos_in_stream + 20].split(" ")[0]
            message = f"unexpected text {found!r}"
        elif isinstance(exc, UnexpectedEOF):
            expected = set(exc.expected or ())
            message = "the instruction ends too early"
        elif isinstance(exc, UnexpectedToken):
            expected = set(exc.accepts or exc.expected or ())
            message = f"unexpected {exc.token!s:.40}"
        else:
            message = "not in the grammar"
        rendered = sorted(
            f'"{self.table.terminals[name]}"' if self.table.terminals.get(name) else name.split("__")[-1]
            for name in expected if not name.startswith("__")
        )
        line, column = getattr(exc, "line", 1), getattr(exc, "column", 1)
        if isinstance(exc, UnexpectedEOF) or not isinstance(line, int) or not isinstance(column, int) \
                or line < 1 or column < 1:
            # Earley's UnexpectedEOF carries line -1, column -1: the position is the end of the text
            last = text.rsplit("\n", 1)[-1]
            line, column = text.count("\n") + 1, len(last) + 1
            context = f"{last[-40:]}\n{' ' * len(last[-40:])}^\n"
        else:
            context = exc.get_context(text) if hasattr(exc, "pos_in_stream") else ""
        return InstructionParseError(
            message, text=text, line=line, column=column, expected=rendered, context=context,
        )

    def parse(self, text: str) -> Decomposition:
        """Parse one instruction into its tree and its ordered tool calls.

        Parameters
        ----------
        text
            The instruction; whitespace is collapsed and trailing punctuation dropped.

        Raises
        ------
        InstructionParseError
            With the line, column, expected terminals and a caret excerpt when the text is not in
            the grammar's language, or when a slot's text cannot become its argument's value.
        """
        if not isinstance(text, str):
            raise InvalidArgument(f"parse() takes a str instruction, got {type(text).__name__}")
        if _over_limit(text):  # before normalizing: splitting megabytes of words costs time and memory
            raise InstructionParseError(
                f"instruction is over {MAX_INSTRUCTION_CHARS} characters long (limit {MAX_INSTRUCTION_CHARS})",
                text=text[:80], hint="split it into several instructions",
            )
        norm = normalize_instruction(text)
        if not norm:
            raise InstructionParseError("empty instruction", text=text)
        if len(norm) > MAX_INSTRUCTION_CHARS:
            raise InstructionParseError(
                f"instruction is {len(norm)} characters long (limit {MAX_INSTRUCTION_CHARS})", text=norm[:80],
                hint="split it into several instructions",
            )
        found = self._parse_pruned(norm)
        return found if found is not None else self._parse_full(norm)

    def try_parse(self, text: str) -> Decomposition | None:
        """:meth:`parse`, or None where it would raise: no reading, a value that does not convert, a
        call its schema rejects, an empty or over-long text.

        Cheaper than catching :meth:`parse`'s error on an Earley grammar: a text the pruned parser
        proves has no reading is answered at once, without the full parser that ``parse`` runs to
        locate its error.
        """
        if not isinstance(text, str) or _over_limit(text):
            return None
        norm = normalize_instruction(text)
        if not norm or len(norm) > MAX_INSTRUCTION_CHARS:
            return None
        try:
            found = self._parse_pruned(norm, quiet=True)
            if found is _NO_READING:
                return None
            return found if found is not None else self._parse_full(norm)
        except GrammarEngineError:
            return None

    def _parse_pruned(self, norm: str, *, quiet: bool = False) -> Any:
        """The pruned parser's :class:`Decomposition` of ``norm``; None where the full parser must answer.

        With ``quiet``, ``_NO_READING`` when the pruned parser proves there is no parse (``parse``
        asks the full parser then, for the position of its error).
        """
        pruned = self._pruned_parser
        if pruned is None:
            return None
        from .verification import NO_PARSE

        try:
            found = pruned.resolved_expansions(norm)
        except RecursionError:
            return None
        if found is NO_PARSE:
            return _NO_READING if quiet else None
        if found is None:
            return None
        tree, used = found
        return self.decompose_tree(tree, norm, used)

    def _parse_full(self, norm: str) -> Decomposition:
        """:meth:`parse` of a normalized text by Lark's parser over the whole grammar."""
        self._used.clear()
        try:
            tree = self._lark.parse(norm)
        except UnexpectedInput as exc:
            raise self._parse_error(exc, norm) from None
        used = tuple(self._used)
        return self.decompose_tree(tree, norm, used)

    @cached_property
    def _pruned_parser(self) -> Any:
        """The per-text pruned Earley parser that answers :meth:`parse` when it finds one derivation.

        It has exactly the derivations of the full parser (see
        :class:`~grammar_engine.verification.PrunedEarley`), so when it finds one, that is the tree
        the full parser builds, at a fraction of the cost; several derivations resolve as Lark
        resolves them (priority, then rule order) unless two tie on that key. Texts with no parse
        (for the error message) or a tie (Lark's insertion order decides) go to the full parser.
        None for LALR grammars, whose parser is fast already.
        """
        if self.parser_kind != "earley":
            return None
        from .verification import PrunedEarley

        try:
            return PrunedEarley(self._lark)
        except InvalidArgument:
            return None

    def decompose_tree(self, tree: lark.Tree, text: str, used: tuple[int, ...] = ()) -> Decomposition:
        """Extract the calls of an already-built tree over ``text``."""
        try:
            calls = extract_calls(tree, text, self.table, self.tools, self.lexicon)
        except ValueConversionError as exc:
            raise InstructionParseError(f"a value cannot be read: {exc.message}", text=text, hint=exc.hint) from None
        problems = [p for call in calls for p in self.tools.validate_call(call)]
        if problems:
            raise InstructionParseError(
                "the calls do not fit the tool schemas: " + "; ".join(problems), text=text,
                hint="the grammar derives a call its schema rejects: run 'grammar-engine check'",
            )
        return Decomposition(text, tree, calls, used)

    def parse_all(self, text: str, limit: int = 16) -> list[Decomposition]:
        """Every parse of ``text`` (up to ``limit``), for finding ambiguity; [] when none."""
        if not isinstance(text, str):
            raise InvalidArgument(f"parse_all() takes a str instruction, got {type(text).__name__}")
        if _over_limit(text):
            return []
        norm = normalize_instruction(text)
        if not norm or len(norm) > MAX_INSTRUCTION_CHARS:
            return []  # as parse() rejects it: an ambiguous forest over unbounded text is unbounded work
        found = self._chart_parses(norm, limit)
        if found is not None:
            return found
        try:
            forest = self._ambiguous_parser.parse(norm)
        except UnexpectedInput:
            return []
        out = []
        for tree in itertools.islice(CollapseAmbiguities().transform(forest), limit):
            try:
                out.append(self.decompose_tree(tree, norm))
            except InstructionParseError:
                continue
        return out

    def _chart_parses(self, norm: str, limit: int) -> list[Decomposition] | None:
        """:meth:`parse_all` by the chart parser when it holds at most ``limit`` derivations, else None."""
        pruned = self._pruned_parser
        if pruned is None:
            return None
        trees = pruned.chart.trees(norm, pruned.plain_callbacks, limit=limit)
        if trees is None:
            return []
        if not isinstance(trees, list):  # more than the limit, or only Lark can tell
            return None
        out = []
        for tree in trees:
            try:
                out.append(self.decompose_tree(tree, norm))
            except (InstructionParseError, RecursionError):
                continue
        return out

    @cached_property
    def _ambiguous_parser(self) -> lark.Lark:
        return self._build("earley", ambiguity="explicit")

    # -- generation ------------------------------------------------------------------------------

    def sample(self, n: int | None = None, *, strategy: str = "weighted", seed: int | None = 0,
               **options: Any) -> Iterator[Sample]:
        """A lazy stream of ``n`` verified samples (instruction, calls, tree); endless when None.

        ``strategy`` is ``"weighted"`` (learned from the recordings), ``"coverage"`` or ``"uniform"``;
        see :func:`grammar_engine.sampling.sample` for the options.
        """
        from .sampling import sample

        return sample(self, n, strategy=strategy, seed=seed, **options)

    def near(self, instruction: str, n: int, *, seed: int | None = 0, **options: Any) -> list[Sample]:
        """``n`` verified variants of ``instruction`` that resample one subtree each."""
        from .sampling import near

        return near(self, instruction, n, seed=seed, **options)

    def coverage(self, samples: Iterable[Any], **options: Any) -> CoverageReport:
        """Coverage of any iterable of samples (or instructions) over the graph's targets."""
        from .coverage import measure

        return measure(self, samples, **options)

    # -- structure -------------------------------------------------------------------------------

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The derivation graph (built once; see :mod:`grammar_engine.derivation`)."""
        return derivation_graph(self.table, ((t.name, t.arguments) for t in self.tools))

    def expansion(self, index: int) -> Expansion:
        """The compiled expansion with this index."""
        return self.table.expansions[index]

    def location_of(self, name: str) -> Location:
        """Where a rule is defined (file, line, column), or the grammar file when unknown."""
        for source in self.files:
            loc = source.definition(name)
            if loc:
                return loc
        return Location(self.source, 1, 1)

    def check(self, recorded: Iterable[dict[str, Any]] | None = None) -> CheckReport:
        """Run every static check (and parse ``recorded`` instructions when given)."""
        from .checks import check_grammar

        return check_grammar(self, recorded)

    @property
    def recorded_path(self) -> Path | None:
        """``recorded.jsonl`` of the domain folder, if there is one."""
        if self.domain_dir is None:
            return None
        path = self.domain_dir / "recorded.jsonl"
        return path if path.is_file() else None

    @property
    def unseen_path(self) -> Path | None:
        """``unseen.jsonl`` of the domain folder, if there is one.

        Instructions with gold calls written against the tool contract alone, without the grammar
        or the recordings in view: an evaluation set that no grammar rule and no sampler weight
        was fitted to.
        """
        if self.domain_dir is None:
            return None
        path = self.domain_dir / "unseen.jsonl"
        return path if path.is_file() else None

    def __repr__(self) -> str:
        return f"<Grammar {self.domain!r}: {len(self.tools)} tools, {len(self.table.expansions)} expansions>"


def _registry(build: Any, source: str) -> ToolRegistry:
    """Build a tool registry; a shape the registry's own checks miss still ends in ToolBindingError."""
    try:
        return build()
    except GrammarEngineError:
        raise
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        raise ToolBindingError(f"malformed tool schemas ({type(exc).__name__}: {exc})", Location(source, 1, 1),
                               hint="each tool is {\"name\": str, \"parameters\": {JSON Schema object}, "
                               "\"requires\": [str], \"provides\": [str]}; 'state' is a list of str") from None


def load(path: str | Path, *, parser: str | None = None) -> Grammar:
    """Load a domain folder (or a ``.lark`` file whose folder holds ``tools.json``).

    Parameters
    ----------
    path
        ``grammars/<domain>`` or a path to its ``.lark`` file.
    parser
        Override the grammar's ``//! parser:`` directive (``"earley"`` or ``"lalr"``).

    Raises
    ------
    GrammarLoadError
        With file, line and column, for syntax errors, undefined symbols and missing files.
    ToolBindingError
        When ``tools.json`` is malformed.
    """
    path = Path(path)
    if path.is_dir():
        domain_dir = path
        candidates = [domain_dir / "grammar.lark"] if (domain_dir / "grammar.lark").is_file() else sorted(domain_dir.glob("*.lark"))
        if len(candidates) != 1:
            raise GrammarLoadError(
                "expected one grammar file" if not candidates else f"several grammar files: {[c.name for c in candidates]}",
                Location(str(domain_dir)), hint="a domain folder holds grammar.lark, tools.json and recorded.jsonl",
            )
        grammar_file = candidates[0]
    elif path.is_file():
        grammar_file, domain_dir = path, path.parent
    else:
        raise GrammarLoadError("no such grammar file or domain folder", Location(str(path)),
                               hint="pass grammars/<domain> or a .lark file")
    try:
        text = grammar_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GrammarLoadError(f"not UTF-8 text ({exc.reason})", Location(str(grammar_file))) from None
    tools = _registry(lambda: ToolRegistry.from_file(domain_dir / "tools.json"), str(domain_dir / "tools.json"))
    lexicon_file = domain_dir / "molecules.tsv"
    lexicon = MoleculeLexicon.from_file(lexicon_file) if lexicon_file.is_file() else None
    return Grammar(text, tools, source=str(grammar_file), domain_dir=domain_dir,
                   import_paths=[domain_dir], lexicon=lexicon, parser=parser)
