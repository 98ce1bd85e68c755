"""Numbers and paths (and symbols) in an instruction become numbered placeholders that the model copies.

A tiny model recalls values it has seen instead of copying new ones: it answers
``open /data/shared/run42/filtered.h5ad`` with a path from its training set, and ``normalize to
10,000`` with ``1000000``. In the plain format, the numbers and paths of an instruction are
therefore replaced by placeholder tokens, numbered left to right, and the target refers to them::

    <|user|>read <|v0|> and keep genes in at least <|v1|> cells<|calls|>[{"name":"read_h5ad",
    "arguments":{"path":"<|v0|>"}},{"name":"filter_genes","arguments":{"min_cells":<|v1|>}}]<|end|>

A number argument takes its placeholder bare, a string (a path, a cluster label ``"3"``) in
quotes; :meth:`ValuePlaceholders.restore` puts back the number the span means (``10k`` ->
``10000``) or the text it spells. A value that no span of the instruction spells (a default,
``CPM`` for ``1000000``, ``half`` for ``0.5``) is written as before, so the model still learns
those. Which spans count:

- numbers written with digits: ``200``, ``10,000``, ``0.5``, ``1e4``, ``10k`` (not digits inside a
  word or a name, like ``log1p``, ``3D``, ``2-bromopyridine``, ``1,3-butadiene`` or the SMILES
  ``[13CH4]``);
- paths: a word with a ``/`` or ``\\`` in it, or one that ends in a file extension that a path
  argument of the training corpus used (``.h5ad``); read first, so digits inside a path stay in it.

With ``keywords`` (``ModelConfig.value_symbols``), a third kind of span counts:

- symbols: a word shaped like an identifier (two capitals, a capital and a digit, or an underscore:
  ``CD3E``, ``HLA-DRA``, ``NK``, ``donor_id``) that is not a keyword. Gene symbols, obs keys and
  labels are then copied instead of recalled (``CD3E, MS4A1, NKG7`` was answered ``CD3E, CD3D``).
  The keywords are the words (in any case) that the training corpus wrote at least twice outside
  the string values of its calls (an enum's value counts as a word), so ``UMAP``, ``CPM`` and
  ``QC`` stay words; a hyphenated word stays one when each of its parts is a keyword
  (``CPM-normalize``). A string value that holds a symbol as one of its words refers to it inside
  the string (``"<|v1|> cells"``).

With ``number_words`` (``ModelConfig.value_number_words``), numbers written in words count too:
a run of number words (``fifty``, ``ten thousand``, ``twenty-five``, ``five hundred``) or digits
with a scale word (``1 million``), put back as the number it spells. A lone ``one`` or ``zero``
stays a word (``quick one``, ``zero mean``), and so does a number word inside a hyphenated word
(``rule-of-five``). Unmasked, a number in words was answered with a number of the model's own
(``fewer than five rotatable bonds`` -> ``-3``).

The numbers of a numbered list (``1. load ... 2. filter ...``, ``1)``, ``Step 3:``) are not values
and stay as written: a number of one or two digits followed by ``.``, ``)`` or ``:`` and a space
that starts the text or a line, or that comes one after the list's last number. Masked, they
would take the first placeholders and shift every value the calls refer to.

The extensions travel with the model (``value_placeholders`` in ``model_info.json``), so a model
directory masks instructions exactly as in training.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grammar_engine.grammar import normalize_instruction
from grammar_engine.tools import ToolRegistry
from grammar_engine.values import ValueConversionError, ValueKind, parse_number

__all__ = ["MAX_PLACEHOLDERS", "Span", "ValuePlaceholders", "placeholder_token", "placeholder_tokens"]

MAX_PLACEHOLDERS = 16
"""Spans past this many in one instruction stay as written."""

_PLACEHOLDER_RE = re.compile(r"<\|v(\d+)\|>")
_NUMBER_RE = re.compile(
    r"(?<![\w./\\\-\[%])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:[kKmM](?!\w))?(?![\w/\\-]|\.\d|,[\d,]+-)"
)
_WORD_RE = re.compile(r"\S+")
_NUMBER_WORD = (r"(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
                r"|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
                r"|dozen|hundred|thousand|million|billion)")
# "fifty", "ten thousand", "twenty-five", "two hundred and fifty", "1 million", "2.5 thousand"
_NUMBER_WORDS_RE = re.compile(
    rf"(?<![\w.\-])(?:\d+(?:\.\d+)?\s+(?:hundred|thousand|million|billion)|{_NUMBER_WORD}"
    rf"(?:(?:\s+and\s+|\s+|-){_NUMBER_WORD})*)(?![\w\-])",
    re.IGNORECASE,
)
_LONE_WORDS = frozenset({"one", "zero"})
# a list item's number: "1.", "2)", "(3)", "Step 4:", then a space or the end of the text
_MARKER_AFTER_RE = re.compile(r"[.):](?=\s|$)")
_MARKER_BEFORE_RE = re.compile(r"(?:^|\n)[ \t]*(?:[-*•][ \t]*)?(?:step[ \t]*)?\(?$", re.IGNORECASE)
_SYMBOL_RE = re.compile(r"[A-Za-z][\w.\-]*(?<![.\-])")
_OPENING = "\"'`([{<"
_CLOSING = "\"'`)]}>.,;:!?"


def _words(text: str) -> Iterable[tuple[int, str]]:
    """The words of ``text``, each with where it starts, without the quotes, brackets and
    punctuation around them."""
    for match in _WORD_RE.finditer(text):
        stripped = match.group(0).lstrip(_OPENING)
        word = stripped.rstrip(_CLOSING)
        if word:
            yield match.end() - len(stripped), word


def _arguments(calls: Iterable[Mapping[str, Any]], registry: ToolRegistry | None) -> Iterable[tuple[Any, Any]]:
    """``(spec, value)`` of every argument of ``calls``; ``spec`` is ``None`` for a tool or an
    argument the registry does not know (or without a registry)."""
    for call in calls:
        name = call.get("name")
        tool = registry.tools.get(name) if registry is not None and isinstance(name, str) else None
        for arg, value in (call.get("arguments") or {}).items():
            yield (tool.arguments.get(arg) if tool is not None else None), value


def placeholder_token(index: int) -> str:
    """The placeholder of the ``index``-th span: ``<|v0|>``, ``<|v1|>``, ..."""
    return f"<|v{index}|>"


def placeholder_tokens() -> list[str]:
    """Every placeholder token, in index order (the tiny tokenizer adds them as single tokens)."""
    return [placeholder_token(i) for i in range(MAX_PLACEHOLDERS)]


@dataclass(frozen=True)
class Span:
    """A number, path or symbol of an instruction: where it is, how it is written, the number it means."""

    start: int
    end: int
    text: str
    number: int | float | None = None
    symbol: bool = False


class ValuePlaceholders:
    """Finds the numbers, paths and symbols of an instruction and swaps them for placeholders, and back.

    Parameters
    ----------
    extensions
        File extensions (without the dot, any case) that make a word a path even without a
        ``/``: those of the path arguments in the training corpus (:meth:`from_records`).
    list_markers
        Leave the numbers of a numbered list as written (see the module docstring). A model
        directory written before this option masks them, and :meth:`from_dict` keeps that.
    keywords
        Lower-case words that are never symbols; ``None`` (the default) masks no symbols at all.
        :meth:`from_records` reads them off a training corpus.
    number_words
        Numbers written in words are spans too (see the module docstring). A model directory
        written before this option leaves them as words, and :meth:`from_dict` keeps that.
    """

    def __init__(self, extensions: Iterable[str] = (), *, list_markers: bool = True,
                 keywords: Iterable[str] | None = None, number_words: bool = True) -> None:
        self.extensions = sorted({e.lower().lstrip(".") for e in extensions if e.strip(".")})
        self._extension_set = frozenset(self.extensions)
        self.list_markers = list_markers
        self.keywords = None if keywords is None else frozenset(w.lower() for w in keywords)
        self.number_words = number_words

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], registry: ToolRegistry | None, *,
                     symbols: bool = False, number_words: bool = True) -> ValuePlaceholders:
        """The extensions of every path-argument value in ``records`` (``calls`` lists), and with
        ``symbols`` the keywords: the words their instructions wrote, at least twice, outside the
        string values of their calls (an enum's value counts as a word)."""
        extensions: set[str] = set()
        outside: Counter[str] = Counter()
        for record in records:
            values: set[str] = set()  # string values but enums' (a fixed word the model learns)
            for spec, value in _arguments(record.get("calls") or (), registry):
                if spec is not None and spec.kind is ValueKind.PATH and isinstance(value, str):
                    stem, dot, extension = value.rpartition(".")
                    if dot and stem and re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,7}", extension):
                        extensions.add(extension)
                if symbols and not (spec is not None and spec.kind is ValueKind.ENUM):
                    for item in value if isinstance(value, list) else (value,):
                        if isinstance(item, str):
                            values.add(item)
                            values.update(item.split())
            if symbols:
                for _start, word in _words(normalize_instruction(str(record.get("instruction", "")))):
                    if word not in values:
                        outside[word.lower()] += 1
        keywords = sorted(word for word, count in outside.items() if count >= 2) if symbols else None
        return cls(extensions, keywords=keywords, number_words=number_words)

    def to_dict(self) -> dict[str, Any]:
        """What ``model_info.json`` keeps (:meth:`from_dict` reads it back)."""
        data: dict[str, Any] = {"extensions": list(self.extensions), "list_markers": self.list_markers,
                                "number_words": self.number_words}
        if self.keywords is not None:
            data["keywords"] = sorted(self.keywords)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValuePlaceholders:
        """Rebuild from :meth:`to_dict` output."""
        return cls(data.get("extensions") or (), list_markers=bool(data.get("list_markers", False)),
                   keywords=data.get("keywords"), number_words=bool(data.get("number_words", False)))

    # -- finding spans ---------------------------------------------------------------------------

    def _is_path(self, word: str) -> bool:
        stem, dot, extension = word.rpartition(".")
        if dot and stem and extension.lower() in self._extension_set:
            return True
        if not re.search(r"\w[/\\]|[/\\]\w", word) or "://" in word:
            return False
        # "and/or", "mt/ribo" are words: a path has an extension, a root, or two separators
        return bool(re.search(r"\.[A-Za-z]\w{0,7}$", word) or word.startswith(("/", "~", ".", "\\"))
                    or len(re.findall(r"[/\\]", word)) >= 2)

    def _is_symbol(self, word: str) -> bool:
        """An identifier-shaped word that is not a keyword, whole or part by hyphenated part."""
        if self.keywords is None or not _SYMBOL_RE.fullmatch(word):
            return False
        capitals = sum(c.isupper() for c in word)
        if not (capitals >= 2 or (capitals and any(c.isdigit() for c in word)) or ("_" in word and "." not in word)):
            return False
        lower = word.lower()
        return lower not in self.keywords and not all(part in self.keywords for part in lower.split("-") if part)

    @staticmethod
    def _is_marker(text: str, match: re.Match[str], last_marker: int | None) -> bool:
        """Whether a number is a list item's: ``1.`` starting a line, or the last item's plus one."""
        digits = match.group(0)
        if not (digits.isdigit() and len(digits) <= 2 and _MARKER_AFTER_RE.match(text, match.end())):
            return False
        if last_marker is not None and int(digits) == last_marker + 1:
            return True
        return bool(_MARKER_BEFORE_RE.search(text, 0, match.start()))

    def spans(self, text: str) -> list[Span]:
        """The paths, symbols and numbers of ``text``, left to right, at most :data:`MAX_PLACEHOLDERS`."""
        found: list[Span] = []
        taken: list[tuple[int, int]] = []
        for start, word in _words(text):
            path = self._is_path(word)
            if path or self._is_symbol(word):
                found.append(Span(start, start + len(word), word, symbol=not path))
                taken.append((start, start + len(word)))
        def number_span(match: re.Match[str]) -> Span | None:
            """The match as a number span, unless it overlaps a span found before or is no number."""
            if any(start < match.end() and match.start() < end for start, end in taken):
                return None
            try:
                return Span(match.start(), match.end(), match.group(0), parse_number(match.group(0)))
            except ValueConversionError:
                return None

        if self.number_words:
            for match in _NUMBER_WORDS_RE.finditer(text):
                if match.group(0).lower() not in _LONE_WORDS and (span := number_span(match)) is not None:
                    found.append(span)
                    taken.append((span.start, span.end))
        last_marker: int | None = None
        for match in _NUMBER_RE.finditer(text):
            span = number_span(match)
            if span is None:
                continue
            if self.list_markers and self._is_marker(text, match, last_marker):
                last_marker = int(match.group(0))
                continue
            found.append(span)
        found.sort(key=lambda span: span.start)
        return found[:MAX_PLACEHOLDERS]

    def mask(self, text: str) -> tuple[str, list[Span]]:
        """``text`` with each span replaced by its placeholder, and the spans."""
        spans = self.spans(text)
        pieces, last = [], 0
        for index, span in enumerate(spans):
            pieces.append(text[last:span.start])
            pieces.append(placeholder_token(index))
            last = span.end
        pieces.append(text[last:])
        return "".join(pieces), spans

    # -- targets ---------------------------------------------------------------------------------

    @staticmethod
    def _match(value: Any, spans: Sequence[Span]) -> int | None:
        if isinstance(value, bool):
            return None
        for index, span in enumerate(spans):
            if isinstance(value, (int, float)) and span.number is not None and span.number == value:
                return index
            if isinstance(value, str) and span.text == value:
                return index
        return None

    def target_json(self, calls: Sequence[Mapping[str, Any]], spans: Sequence[Span]) -> str:
        """Compact JSON of ``calls`` (already canonical) with each value a span spells written as
        its placeholder: bare for a number, quoted for a string (list items too), and inside a
        string for a symbol that is one of its words."""
        bare: dict[str, str] = {}

        symbols = [(index, span.text) for index, span in enumerate(spans) if span.symbol]

        def swap(value: Any) -> Any:
            index = self._match(value, spans)
            if index is None:
                if isinstance(value, str) and symbols:  # "NK cells" -> "<|v1|> cells"
                    words = value.split(" ")
                    for i, text in symbols:
                        words = [placeholder_token(i) if word == text else word for word in words]
                    return " ".join(words)
                return value
            if isinstance(value, str):
                return placeholder_token(index)
            key = f"\x00{index}\x00"
            bare[json.dumps(key)] = placeholder_token(index)
            return key

        out = []
        for call in calls:
            arguments = {}
            for arg, value in (call.get("arguments") or {}).items():
                arguments[arg] = [swap(v) for v in value] if isinstance(value, list) else swap(value)
            out.append({"name": call.get("name"), "arguments": arguments})
        text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
        for quoted, token in bare.items():
            text = text.replace(quoted, token)
        return text

    # -- reading output back ---------------------------------------------------------------------

    @staticmethod
    def restore(text: str, spans: Sequence[Span]) -> str:
        """Generated text with each placeholder replaced by what its span means, as JSON.

        A quoted placeholder becomes the span's text as a JSON string; a bare one becomes its
        number (or its text, quoted, for a path); one inside a longer string becomes the text.
        A placeholder without a span is left as written (the call list then fails its checks).
        """

        def whole(match: re.Match[str]) -> str:
            index = int(match.group(1))
            return json.dumps(spans[index].text, ensure_ascii=False) if index < len(spans) else match.group(0)

        text = re.sub(r'"<\|v(\d+)\|>"', whole, text)

        def part(match: re.Match[str]) -> str:
            index = int(match.group(1))
            if index >= len(spans):
                return match.group(0)
            span = spans[index]
            before = text[:match.start()].rstrip()
            if before.endswith((":", ",", "[")):  # a JSON value of its own
                return json.dumps(span.number if span.number is not None else span.text, ensure_ascii=False)
            return json.dumps(span.text, ensure_ascii=False)[1:-1]

        return _PLACEHOLDER_RE.sub(part, text)
