"""Value sources: the text a regular-expression terminal takes when a sampler renders it.

A sampler meets a regular-expression terminal (``NAME``, ``DIGITS``, ``MOLECULE_NAME``) and asks
this module for its text. The text depends on where the terminal stands: inside the slot of an
argument whose schema has an enum, a numeric range or a molecule format, or under a ``val_<kind>``
node. Each :class:`ValueSourceKind` names one way of answering; the sources are tried in
:data:`DEFAULT_ORDER` and the first one that returns text wins:

==============  ==================================================================================
source          renders
==============  ==================================================================================
domain          a value of the argument's conditional value domain (``"domains"`` in
                ``tools.json``) that fits the values the call already has (reactants that fit
                the reaction); when a condition is not decided yet, one of the domains it may
                still meet (the generator redraws the values if the guess proves wrong)
precondition    a value that makes the call's templated preconditions hold, given the call's other
                values (``obs:{groupby}``: an obs key some earlier call provided;
                ``label:{key}:{values}``: a label of the chosen key), preferring values the
                terminal's listed source also offers and values the list does not hold yet
enum            one of the argument's enum values, spelled in a form the terminal admits
                (``seurat_v3``, ``seurat v3``, ``seurat-v3``)
numeric         a number in the argument's ``[minimum, maximum]`` (edges included), spelled in a
                form the terminal admits: ``10000``, ``10,000``, ``10k``, ``1e4``, ``0.5``, ``fifty``
molecule        a name from the molecule lexicon, or a SMILES (``tools.json`` ``values["SMILES"]``
                or the lexicon's) for a SMILES terminal
listed          ``tools.json`` ``values[TERMINAL]`` (the terminal's full or unqualified name)
regex           a string drawn from the terminal's regular expression (keywords avoided)
==============  ==================================================================================

A source returns ``None`` when it does not apply; every rendered text is then checked against
the terminal's compiled pattern (case-insensitively, as the grammar is compiled), and a text that
does not match is counted and the next source is asked. Plug in another source with
:func:`register_value_source`.

All randomness comes from the ``random.Random`` the sampler passes in.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import InvalidArgument
from .values import ValueKind, normalize_enum_text, parse_number

try:  # Python 3.11+: the regular-expression parser without a deprecation warning
    import re._parser as _sre_parse  # type: ignore[import-not-found]
    from re import _constants as _sre_c  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

if TYPE_CHECKING:
    from .grammar import Grammar
    from .tools import ArgumentSpec

__all__ = [
    "DEFAULT_ORDER",
    "RegexGenerator",
    "ValueContext",
    "ValueSourceKind",
    "ValueSources",
    "number_forms",
    "number_to_words",
    "register_value_source",
]


class ValueSourceKind(str, Enum):
    """The built-in value sources, in the order they are tried."""

    DOMAIN = "domain"
    PRECONDITION = "precondition"
    ENUM = "enum"
    NUMERIC = "numeric"
    MOLECULE = "molecule"
    LISTED = "listed"
    REGEX = "regex"


DEFAULT_ORDER: tuple[str, ...] = tuple(kind.value for kind in ValueSourceKind)


class ValueContext(NamedTuple):
    """Where a terminal stands when it is rendered.

    Attributes
    ----------
    terminal
        The terminal's name (as Lark compiled it, e.g. ``numbers__DIGITS``).
    tool
        The tool of the enclosing call, when there is one.
    argument
        The schema of the enclosing slot's argument, when known.
    value_kind
        The kind of the enclosing ``val_<kind>`` node, else the argument's kind.
    state
        Precondition facts true before the enclosing call.
    prefer
        Values a guide (the coverage generator) wants for this argument, tried first.
    call
        The values the enclosing call has so far, by argument (a list argument as the list of
        its items so far, this argument's included); read-only.
    """

    terminal: str
    tool: str | None = None
    argument: ArgumentSpec | None = None
    value_kind: ValueKind | None = None
    state: frozenset[str] = frozenset()
    prefer: tuple[Any, ...] = ()
    call: Mapping[str, Any] = MappingProxyType({})


ValueSource = Callable[[ValueContext, random.Random], "str | None"]
"""A renderer: the text for a terminal in a context, or None when it does not apply."""

SourceFactory = Callable[["ValueSources"], ValueSource]
"""Builds a renderer for one grammar (it can read ``sources.grammar``, ``sources.patterns``)."""

_FACTORIES: dict[str, SourceFactory] = {}


def register_value_source(kind: ValueSourceKind | str, factory: SourceFactory, *, replace: bool = False) -> None:
    """Register a value source factory under ``kind``.

    Parameters
    ----------
    kind
        A :class:`ValueSourceKind` or a new name; new names are tried before ``regex`` when a
        :class:`ValueSources` is built with the default order.
    factory
        Called once per grammar with the :class:`ValueSources`; returns the renderer.
    replace
        Allow replacing an existing registration (otherwise a duplicate raises).

    Raises
    ------
    InvalidArgument
        When ``kind`` is already registered and ``replace`` is False.
    """
    key = kind.value if isinstance(kind, ValueSourceKind) else str(kind)
    if key in _FACTORIES and not replace:
        raise InvalidArgument(
            f"value source {key!r} is already registered; pass replace=True to override it"
        )
    _FACTORIES[key] = factory


# -- numbers ---------------------------------------------------------------------------------------

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_to_words(value: int) -> str | None:
    """English words for a whole number below a billion, in the form ``parse_number`` reads.

    >>> number_to_words(10000), number_to_words(250), number_to_words(47)
    ('ten thousand', 'two hundred and fifty', 'forty seven')
    """
    if not isinstance(value, int) or value < 0 or value >= 1_000_000_000:
        return None
    if value < 20:
        return _ONES[value]

    def below_thousand(n: int) -> list[str]:
        words: list[str] = []
        if n >= 100:
            words += [_ONES[n // 100], "hundred"]
            n %= 100
            if n:
                words.append("and")
        if n >= 20:
            words.append(_TENS[n // 10])
            n %= 10
            if n:
                words.append(_ONES[n])
        elif n:
            words.append(_ONES[n])
        return words

    words: list[str] = []
    for scale, name in ((1_000_000, "million"), (1_000, "thousand")):
        if value >= scale:
            words += below_thousand(value // scale) + [name]
            value %= scale
    words += below_thousand(value)
    return " ".join(words)


def _plain(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def number_forms(value: float) -> list[str]:
    """Every surface form of a number that :func:`~grammar_engine.values.parse_number` reads back.

    >>> number_forms(10000)
    ['10000', '10,000', '10k', '1e4', 'ten thousand']
    >>> number_forms(0.5)
    ['0.5']
    """
    forms = [_plain(value)]
    if float(value).is_integer():
        n = int(value)
        if n >= 1000:
            forms.append(f"{n:,}")
        if n >= 1000 and n % 100 == 0:
            forms.append(f"{_plain(n / 1000)}k")
        if n >= 1_000_000 and n % 100_000 == 0:
            forms.append(f"{_plain(n / 1_000_000)}m")
        if n >= 100:
            exponent = int(math.log10(n))
            mantissa = n / 10**exponent
            if mantissa.is_integer():
                forms.append(f"{int(mantissa)}e{exponent}")
        words = number_to_words(n)
        if words is not None and words.count(" ") < 4:  # "ten thousand", not nine-word numbers
            forms.append(words)
    return [f for f in forms if _reads_as(f, value)]


def _reads_as(text: str, value: float) -> bool:
    try:
        return float(parse_number(text)) == float(value)
    except Exception:  # noqa: BLE001 - a form that does not read back is simply not offered
        return False


def _nice(value: float, rng: random.Random) -> float:
    """Round to one or two significant digits (recorded numbers are usually round)."""
    if value <= 0:
        return value
    digits = rng.choice((1, 2))
    scale = 10.0 ** (int(math.floor(math.log10(value))) - digits + 1)
    if scale == 0.0:  # subnormal values: no rounding step exists in float range
        return value
    rounded = round(value / scale) * scale
    return rounded if math.isfinite(rounded) else value  # rounding up past the largest float


def draw_number(spec: ArgumentSpec | None, kind: ValueKind | None, rng: random.Random) -> float:
    """A number for an argument: an edge of its range now and then, else a round-ish value inside.

    The distribution: with probability 0.1 the minimum or maximum (when declared); otherwise
    log-uniform between the bounds (``[0, 10**4]`` for a number with no bounds, ``[1, 10**5]`` for a
    whole number), rounded to one or two significant digits half of the time, and, for a
    non-integer argument whose range is narrower than 20, given one or two decimals half of the time.
    """
    integer = kind is ValueKind.INT or (spec is not None and spec.kind is ValueKind.INT)
    lo = spec.minimum if spec is not None else None
    hi = spec.maximum if spec is not None else None
    edges = [e for e in (lo, hi) if e is not None]
    if edges and rng.random() < 0.1:
        return float(rng.choice(edges))
    low = float(lo) if lo is not None else (1.0 if integer else 0.0)
    high = float(hi) if hi is not None else max(low * 10, 1e5 if integer else 1e4)
    if high <= low:
        return low
    if low > 0 and high / low > 20:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if integer:
        value = float(round(_nice(value, rng) if rng.random() < 0.5 else value))
    elif high - low < 20 and rng.random() < 0.5:
        value = round(value, rng.choice((1, 2)))
    else:
        value = float(round(_nice(value, rng) if rng.random() < 0.5 else value))
    return min(max(value, low if lo is not None else value), high if hi is not None else value)


def enum_forms(value: str) -> list[str]:
    """Spellings of an enum value that fold back to it (``seurat_v3``, ``seurat v3``, ...)."""
    forms = [value]
    for sep in (" ", "-", "_", ""):
        alt = re.sub(r"[_\- ]+", sep, value)
        if alt not in forms and normalize_enum_text(alt) == normalize_enum_text(value):
            forms.append(alt)
    return forms


# -- regular expressions ----------------------------------------------------------------------------

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_-."
_CATEGORY_CHARS = {
    _sre_c.CATEGORY_DIGIT: "0123456789",
    _sre_c.CATEGORY_WORD: "abcdefghijklmnopqrstuvwxyz0123456789_",
    _sre_c.CATEGORY_SPACE: " ",
    _sre_c.CATEGORY_NOT_DIGIT: "abcdefghijklmnopqrstuvwxyz_-.",
    _sre_c.CATEGORY_NOT_WORD: " -.,/",
    _sre_c.CATEGORY_NOT_SPACE: "abcdefghijklmnopqrstuvwxyz0123456789_-.",
}


class _Infinite(Exception):
    pass


class RegexGenerator:
    """Draw strings from a regular expression, seeded from the caller's ``random.Random``.

    Repetitions without an upper bound draw at most ``extra`` more than their minimum; lookarounds
    produce nothing (the caller checks the result against the compiled pattern). The walk over the
    pattern's syntax tree is recursive, bounded by the nesting of the pattern itself.
    """

    def __init__(self, pattern: str, *, extra: int = 6) -> None:
        self.pattern = pattern
        self.extra = extra
        self._tree = _sre_parse.parse(pattern)

    def finite(self, limit: int = 512) -> list[str] | None:
        """Every string of the pattern when it is a finite set of at most ``limit``, else None.

        Lookarounds and anchors contribute the empty string here; the caller filters the result
        with the compiled pattern.
        """
        try:
            found = self._finite(self._tree, limit)
        except _Infinite:
            return None
        return sorted(found)

    def _finite(self, tree: Any, limit: int) -> set[str]:
        out = {""}
        for op, arg in tree:
            if op is _sre_c.LITERAL:
                part = {chr(arg)}
            elif op is _sre_c.IN:
                if any(o is _sre_c.NEGATE for o, _ in arg):
                    raise _Infinite
                part = set(self._chars(arg))
            elif op is _sre_c.BRANCH:
                part = set()
                for branch in arg[1]:
                    part |= self._finite(branch, limit)
            elif op is _sre_c.SUBPATTERN:
                part = self._finite(arg[3], limit)
            elif op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT) or op.name == "POSSESSIVE_REPEAT":
                low, high, sub = arg
                if high > low + 8:
                    raise _Infinite
                unit = self._finite(sub, limit)
                part = set()
                current = {""}
                for count in range(high + 1):
                    if count >= low:
                        part |= current
                    if count < high:
                        current = {a + b for a in current for b in unit}
                        if len(current) > limit:
                            raise _Infinite
            elif op.name == "ATOMIC_GROUP":
                part = self._finite(arg, limit)
            elif op in (_sre_c.AT, _sre_c.ASSERT, _sre_c.ASSERT_NOT):
                continue
            else:
                raise _Infinite
            out = {a + b for a in out for b in part}
            if len(out) > limit:
                raise _Infinite
        return out

    def draw(self, rng: random.Random) -> str:
        """One string (not yet checked against the pattern)."""
        out: list[str] = []
        groups: dict[int, str] = {}
        self._emit(self._tree, rng, out, groups)
        return "".join(out)

    def _chars(self, items: Any) -> str:
        negate = False
        chars: list[str] = []
        for op, arg in items:
            if op is _sre_c.NEGATE:
                negate = True
            elif op is _sre_c.LITERAL:
                chars.append(chr(arg))
            elif op is _sre_c.RANGE:
                lo, hi = arg
                chars.extend(chr(c) for c in range(lo, min(hi, lo + 95) + 1))
            elif op is _sre_c.CATEGORY:
                chars.extend(_CATEGORY_CHARS.get(arg, ""))
        if negate:
            excluded = set(chars)
            return "".join(c for c in _ALPHABET if c not in excluded) or "x"
        return "".join(chars) or "x"

    def _emit(self, tree: Any, rng: random.Random, out: list[str], groups: dict[int, str]) -> None:
        for op, arg in tree:
            if op is _sre_c.LITERAL:
                out.append(chr(arg))
            elif op is _sre_c.NOT_LITERAL:
                out.append(rng.choice([c for c in _ALPHABET if c != chr(arg)]))
            elif op is _sre_c.ANY:
                out.append(rng.choice(_ALPHABET))
            elif op is _sre_c.IN:
                out.append(rng.choice(self._chars(arg)))
            elif op is _sre_c.BRANCH:
                self._emit(rng.choice(arg[1]), rng, out, groups)
            elif op is _sre_c.SUBPATTERN:
                group, _add, _del, sub = arg
                start = len(out)
                self._emit(sub, rng, out, groups)
                if group is not None:
                    groups[group] = "".join(out[start:])
            elif op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT) or op.name == "POSSESSIVE_REPEAT":
                low, high, sub = arg
                high = min(high, low + self.extra)
                for _ in range(rng.randint(low, high)):
                    self._emit(sub, rng, out, groups)
            elif op.name == "ATOMIC_GROUP":
                self._emit(arg, rng, out, groups)
            elif op is _sre_c.GROUPREF:
                out.append(groups.get(arg, ""))
            # AT (anchors), ASSERT and ASSERT_NOT (lookarounds) produce nothing


# -- the per-grammar set of sources ------------------------------------------------------------------


@dataclass
class ValueSources:
    """The value sources bound to one grammar, with the compiled terminal patterns.

    Parameters
    ----------
    grammar
        The grammar whose terminals are rendered.
    order
        Names of the sources to try, first to last (default: every registered source, custom
        ones before ``regex``).

    Attributes
    ----------
    failures
        How many rendered texts did not match their terminal (each is retried with the next source).
    """

    grammar: Grammar
    order: tuple[str, ...] = ()
    patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)
    keywords: frozenset[str] = frozenset()
    failures: int = 0
    _sources: list[tuple[str, ValueSource]] = field(default_factory=list)
    _regex: dict[str, tuple[RegexGenerator | None, list[str] | None, list[str]]] = field(default_factory=dict)
    _plain_sources: list[tuple[str, ValueSource]] = field(default_factory=list)
    _by_context: dict[tuple[Any, ...], list[tuple[str, ValueSource]]] = field(default_factory=dict)
    _matching: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        table = self.grammar.table
        self.patterns = {name: re.compile(p, re.IGNORECASE) for name, p in table.patterns.items()}
        self.keywords = frozenset(t.lower() for t in table.terminals.values() if t)
        if not self.order:
            builtin = [k for k in DEFAULT_ORDER if k != ValueSourceKind.REGEX.value]
            custom = [k for k in _FACTORIES if k not in DEFAULT_ORDER]
            self.order = tuple(builtin + custom + [ValueSourceKind.REGEX.value])
        unknown = [k for k in self.order if k not in _FACTORIES]
        if unknown:
            raise InvalidArgument(f"unknown value sources {unknown}; registered: {sorted(_FACTORIES)}")
        self._sources = [(k, _FACTORIES[k](self)) for k in self.order]
        # outside any slot, the schema-driven sources have nothing to go on
        slot_only = {ValueSourceKind.DOMAIN.value, ValueSourceKind.PRECONDITION.value, ValueSourceKind.ENUM.value,
                     ValueSourceKind.NUMERIC.value}
        self._plain_sources = [(k, f) for k, f in self._sources if k not in slot_only]

    # helpers shared by the sources ----------------------------------------------------------------

    def matches(self, terminal: str, text: str) -> bool:
        """Whether ``text`` is a whole token of ``terminal``."""
        pattern = self.patterns.get(terminal)
        return pattern is not None and pattern.fullmatch(text) is not None

    def matching(self, key: str, terminal: str, candidates: Iterable[str]) -> list[str]:
        """The candidates that are whole tokens of ``terminal`` (cached under ``key``)."""
        cache_key = (key, terminal)
        found = self._matching.get(cache_key)
        if found is None:
            found = [c for c in candidates if self.matches(terminal, c)]
            self._matching[cache_key] = found
        return found

    def regex_text(self, terminal: str, rng: random.Random, *, avoid_keywords: bool = True) -> str | None:
        """A string drawn from the terminal's pattern (None if the pattern cannot be drawn from).

        A pattern with a small finite language (``"then" | ", then" | "and"``) is enumerated once
        and drawn from uniformly; otherwise strings are drawn by :class:`RegexGenerator`. With
        ``avoid_keywords``, strings that are also literal keywords of the grammar are avoided when
        the pattern allows anything else (a gene called "and" would not parse back).
        """
        entry = self._regex.get(terminal)
        if entry is None:
            entry = self._regex_entry(terminal)
            self._regex[terminal] = entry
        gen, everything, plain = entry
        if everything is not None:
            pool = plain if avoid_keywords and plain else everything
            return pool[int(rng.random() * len(pool))] if pool else None
        if gen is None:
            return None
        text = None
        for _ in range(8):
            text = gen.draw(rng)
            if self.matches(terminal, text) and not (avoid_keywords and text.lower() in self.keywords):
                return text
        return text if text is not None and self.matches(terminal, text) else None

    def _regex_entry(self, terminal: str) -> tuple[RegexGenerator | None, list[str] | None, list[str]]:
        try:
            gen = RegexGenerator(self.grammar.table.patterns[terminal])
        except Exception:  # noqa: BLE001 - an unsupported pattern has no regex source
            return None, None, []
        finite = gen.finite()
        if finite is None:
            return gen, None, []
        everything = [t for t in finite if t and self.matches(terminal, t)]
        plain = [t for t in everything if t.lower() not in self.keywords]
        return gen, everything, plain

    # rendering ------------------------------------------------------------------------------------

    def _applicable(self, ctx: ValueContext) -> list[tuple[str, ValueSource]]:
        """The sources that can answer for this terminal in this kind of slot (cached)."""
        spec = ctx.argument
        key = (ctx.terminal, ctx.tool, spec.name if spec is not None else None, ctx.value_kind)
        found = self._by_context.get(key)
        if found is None:
            if spec is None and ctx.value_kind is None:
                found = list(self._plain_sources)
            else:
                kind = ctx.value_kind or (spec.kind if spec is not None else None)
                skip = set()
                if spec is None or not spec.enum:
                    skip.add(ValueSourceKind.ENUM.value)
                if kind not in (ValueKind.INT, ValueKind.NUMBER):
                    skip.add(ValueSourceKind.NUMERIC.value)
                tools = self.grammar.tools
                if spec is None or ctx.tool not in tools or not any(
                    "{" + spec.name + "}" in fact for fact in tools[ctx.tool].requires
                ):
                    skip.add(ValueSourceKind.PRECONDITION.value)
                if spec is None or ctx.tool is None or not tools.domains_of(ctx.tool, spec.name):
                    skip.add(ValueSourceKind.DOMAIN.value)
                found = [(k, f) for k, f in self._sources if k not in skip]
            if len(self._by_context) > 65536:
                self._by_context.clear()
            self._by_context[key] = found
        return found

    def render(self, ctx: ValueContext, rng: random.Random) -> str | None:
        """The text of one terminal in its context, from the first source that applies."""
        for _name, source in self._applicable(ctx):
            text = source(ctx, rng)
            if text is None:
                continue
            if self.matches(ctx.terminal, text):
                return text
            self.failures += 1
        return None


def _listed_values(sources: ValueSources, terminal: str) -> list[str] | None:
    """``tools.json`` ``values`` of a terminal (by full or unqualified name), or None."""
    listed = sources.grammar.tools.value_sources
    values = listed.get(terminal)
    if values is None:
        values = listed.get(terminal.rsplit("__", 1)[-1].lstrip("_"))
    return values


def _fresh_first(values: list[Any], used: Any, rng: random.Random) -> Any:
    """One of ``values``, drawn among those not in ``used`` (a list so far) when there are any."""
    if isinstance(used, list) and used:
        fresh = [v for v in values if v not in used]
        if fresh:
            return fresh[int(rng.random() * len(fresh))]
    return values[int(rng.random() * len(values))]


def _precondition_source(sources: ValueSources) -> ValueSource:
    tools = sources.grammar.tools

    def render(ctx: ValueContext, rng: random.Random) -> str | None:
        if ctx.tool is None or ctx.argument is None or ctx.tool not in tools:
            return None
        name = ctx.argument.name
        found = tools.requirement_values(ctx.tool, name, ctx.call, ctx.state)
        if not found:
            return None
        values = [v for v in found if sources.matches(ctx.terminal, v)]
        listed = _listed_values(sources, ctx.terminal)
        if listed:  # keep the terminal's kind of value (a gene for GENE, an obs key for OBS_KEY)
            values = [v for v in values if v in listed] or values
        if not values:
            return None
        return _fresh_first(values, ctx.call.get(name), rng)

    return render


def _domain_source(sources: ValueSources) -> ValueSource:
    grammar = sources.grammar
    tools = grammar.tools
    names_of: dict[str, list[str]] = {}  # SMILES -> the lexicon names that read as it
    for name in grammar.lexicon.names:
        smiles = grammar.lexicon.smiles(name)
        if smiles:
            names_of.setdefault(smiles, []).append(name)
    forms: dict[tuple[str, Any, ValueKind], list[str]] = {}

    def forms_of(terminal: str, value: Any, kind: ValueKind) -> list[str]:
        key = (terminal, value, kind)
        found = forms.get(key)
        if found is None:
            if kind is ValueKind.MOLECULE:
                texts = [*names_of.get(value, ()), str(value)]
            elif kind is ValueKind.ENUM:
                texts = enum_forms(str(value))
            elif kind in (ValueKind.INT, ValueKind.NUMBER) and isinstance(value, (int, float)):
                texts = number_forms(value)
            elif kind is ValueKind.BOOL:
                texts = ["true" if value else "false", "yes" if value else "no"]
            else:
                texts = [str(value)]
            found = [t for t in dict.fromkeys(texts) if sources.matches(terminal, t)]
            if len(forms) > 65536:
                forms.clear()
            forms[key] = found
        return found

    def render(ctx: ValueContext, rng: random.Random) -> str | None:
        spec = ctx.argument
        if ctx.tool is None or spec is None:
            return None
        domains = tools.domains_of(ctx.tool, spec.name)
        if not domains:
            return None
        call = tools._with_defaults(tools.tools[ctx.tool], ctx.call)  # conditions on defaults hold too
        chosen = call.get(spec.name) if spec.kind.is_list else None
        chosen = list(chosen) if isinstance(chosen, list) else []
        holding = [d for d in domains if d.applies(call) is True]
        if not holding:
            open_ = [d for d in domains if d.applies(call) is None and d.candidates(chosen)]
            if not open_:
                return None
            holding = [open_[int(rng.random() * len(open_))]]  # a guess, redrawn if proved wrong
        allowed: list[Any] | None = None
        for domain in holding:
            values = domain.candidates(chosen)
            allowed = values if allowed is None else [v for v in allowed if v in values]
        if not allowed:
            return None
        kind = spec.kind.item_kind
        wanted = [v for v in ctx.prefer if v in allowed]
        order = wanted + [v for v in rng.sample(allowed, len(allowed)) if v not in wanted]
        if chosen:  # an item the list does not hold yet, when there is one
            order = [v for v in order if v not in chosen] + [v for v in order if v in chosen]
        for value in order:
            texts = forms_of(ctx.terminal, value, kind)
            if texts:
                return texts[int(rng.random() * len(texts))]
        return None

    return render


def _enum_source(sources: ValueSources) -> ValueSource:
    def render(ctx: ValueContext, rng: random.Random) -> str | None:
        spec = ctx.argument
        enum = spec.enum if spec is not None else None
        if not enum:
            return None
        preferred = [v for v in ctx.prefer if v in enum]
        order = preferred + [v for v in rng.sample(enum, len(enum)) if v not in preferred]
        for value in order:
            forms = [f for f in enum_forms(str(value)) if sources.matches(ctx.terminal, f)]
            if forms:
                return rng.choice(forms)
        return None

    return render


def _numeric_source(sources: ValueSources) -> ValueSource:
    def render(ctx: ValueContext, rng: random.Random) -> str | None:
        kind = ctx.value_kind or (ctx.argument.kind if ctx.argument is not None else None)
        if kind not in (ValueKind.INT, ValueKind.NUMBER):
            return None
        preferred = [float(v) for v in ctx.prefer if isinstance(v, (int, float))]
        for attempt in range(6):
            value = preferred[attempt] if attempt < len(preferred) else draw_number(ctx.argument, kind, rng)
            forms = [f for f in number_forms(value) if sources.matches(ctx.terminal, f)]
            if forms:
                return rng.choice(forms)
        return None

    return render


def _molecule_source(sources: ValueSources) -> ValueSource:
    grammar = sources.grammar
    listed_smiles = grammar.tools.value_sources.get("SMILES", [])

    pool = list(listed_smiles) or [s for n in grammar.lexicon.names if (s := grammar.lexicon.smiles(n))]

    def render(ctx: ValueContext, rng: random.Random) -> str | None:
        kind = ctx.value_kind or (ctx.argument.kind if ctx.argument is not None else None)
        molecular = kind in (ValueKind.MOLECULE, ValueKind.MOLECULE_LIST)
        smiles_terminal = "SMILES" in ctx.terminal.upper()
        if not (molecular or smiles_terminal):
            return None
        if not smiles_terminal:
            names = sources.matching("lexicon", ctx.terminal, grammar.lexicon.names)
            if names:
                return rng.choice(names)
        smiles = sources.matching("smiles", ctx.terminal, pool)
        return rng.choice(smiles) if smiles else None

    return render


def _listed_source(sources: ValueSources) -> ValueSource:
    def render(ctx: ValueContext, rng: random.Random) -> str | None:
        name = ctx.terminal
        values = _listed_values(sources, name)
        if not values:
            return None
        found = sources.matching("listed", name, values)
        return rng.choice(found) if found else None

    return render


def _regex_source(sources: ValueSources) -> ValueSource:
    def render(ctx: ValueContext, rng: random.Random) -> str | None:
        return sources.regex_text(ctx.terminal, rng, avoid_keywords=ctx.argument is not None or ctx.value_kind is not None)

    return render


register_value_source(ValueSourceKind.DOMAIN, _domain_source)
register_value_source(ValueSourceKind.PRECONDITION, _precondition_source)
register_value_source(ValueSourceKind.ENUM, _enum_source)
register_value_source(ValueSourceKind.NUMERIC, _numeric_source)
register_value_source(ValueSourceKind.MOLECULE, _molecule_source)
register_value_source(ValueSourceKind.LISTED, _listed_source)
register_value_source(ValueSourceKind.REGEX, _regex_source)
