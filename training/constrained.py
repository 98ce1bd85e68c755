"""Grammar-constrained decoding: the model can only write a schema-valid JSON call list.

:class:`CallListAutomaton` is a character-level pushdown recognizer of the compact call-list
language of a domain, derived from its :class:`~grammar_engine.tools.ToolRegistry`::

    list  := "[" call ("," call)* "]"                    ("[]" too with allow_empty)
    call  := '{"name":"' TOOL '","arguments":{' args '}}'
    args  := pair ("," pair)*   pairs of distinct argument names of TOOL, in any order,
                                every required argument present
    pair  := '"' ARG '":' value(schema of ARG)
    value := integer | number | true/false | "enum value" | "non-empty string"
           | ["string", ...] (non-empty; enum items when the schema has them)
           | <|vK|> for an integer or number, with ``placeholders``: a span of the row's
             instruction whose number fits the argument (type and bounds; see
             :mod:`training.value_placeholders`; a string placeholder is a string)

No whitespace is allowed: the plain-format model is trained on exactly this compact form
(:func:`training.data.calls_to_json`), and forbidding it keeps an untrained model from padding
forever. Numeric ``minimum``/``maximum`` are not enforced (a prefix cannot know the final value).

Why characters and not lark's ``parse_interactive``: BPE tokens do not line up with JSON
terminals (``'":{"'`` closes a key, opens an object and a string), so a token-level check needs
a lexer that accepts partial terminals. Feeding each candidate token's characters through a
pushdown automaton is exact and simple. Two things make it fast enough:

- candidate tokens are walked as a trie, so a rejected prefix prunes every token below it;
- the result for a state (which tokens are allowed and how many characters each leaves to
  close the list) is cached: free-string states, where nearly every token is allowed, recur
  across rows and instructions.

Termination is guaranteed within ``max_new_tokens``: the automaton knows the minimum number of
characters that closes the list from any state (:meth:`CallListAutomaton.min_close`), and a
token is allowed only if that many characters still fit in the remaining budget. Every ASCII
character being a single token (true of byte-level BPE) makes characters an upper bound on tokens.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grammar_engine.tools import ToolRegistry
from grammar_engine.values import ValueKind

from .value_placeholders import placeholder_tokens

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "CallListAutomaton",
    "CallListLogitsProcessor",
    "ConstrainedDecoder",
    "token_strings",
]

State = tuple[tuple[Any, ...], ...]
"""A stack of items; the last one is being matched, the ones below it follow."""

_DIGITS = frozenset("0123456789")
_ONE_TO_NINE = frozenset("123456789")
_ESCAPABLE = frozenset('"\\/bfnrt')
_BOOLS = ("true", "false")
_ARGUMENTS_LIT = ',"arguments":{'
_NAME_LIT = '"name":"'
_UNREACHABLE = 1 << 30


@dataclass(frozen=True)
class _Slot:
    """What value an argument takes: kind and, for enums, the JSON-escaped options."""

    kind: str  # int, num, bool, enum, str, arr
    options: tuple[str, ...] = ()
    item: _Slot | None = None  # for arr: the item slot (enum or str)
    bounds: tuple[float | None, float | None] = (None, None)  # int, num: the schema's minimum and maximum

    @property
    def min_len(self) -> int:
        if self.kind in ("int", "num"):
            return 1
        if self.kind == "bool":
            return 4
        if self.kind == "enum":
            return min(len(o) for o in self.options) + 2
        if self.kind == "str":
            return 3
        assert self.item is not None
        return self.item.min_len + 2


def _escaped(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _slot(schema: dict[str, Any]) -> _Slot:
    kind = {"integer": "int", "number": "num", "boolean": "bool", "array": "arr"}.get(schema.get("type", ""), "str")
    if kind == "arr":
        items = schema.get("items") or {}
        enum = items.get("enum")
        return _Slot("arr", item=_Slot("enum", tuple(_escaped(str(v)) for v in enum)) if enum else _Slot("str"))
    if kind == "str" and schema.get("enum"):
        return _Slot("enum", tuple(_escaped(str(v)) for v in schema["enum"]))
    if kind in ("int", "num"):
        return _Slot(kind, bounds=(schema.get("minimum"), schema.get("maximum")))
    return _Slot(kind)


@dataclass(frozen=True)
class _Tool:
    slots: dict[str, _Slot]
    required: frozenset[str]


class CallListAutomaton:
    """Character-level recognizer of schema-valid compact JSON call lists of one domain.

    Parameters
    ----------
    registry
        The domain's tools: names, argument names and schemas, required arguments.
    allow_empty
        Whether ``[]`` is a valid output.
    placeholders
        Whether a number argument may be a value placeholder (``<|v0|>``), for a model trained
        with them: one whose span is a number that fits the argument (rows start from
        :meth:`initial_state` with their spans' numbers).

    Examples
    --------
    >>> from grammar_engine.tools import ToolRegistry
    >>> reg = ToolRegistry.from_dict({"tools": [{"name": "pca", "parameters": {"type": "object",
    ...     "properties": {"n_comps": {"type": "integer"}}}}]})
    >>> a = CallListAutomaton(reg)
    >>> a.accepts('[{"name":"pca","arguments":{"n_comps":50}}]')
    True
    >>> a.accepts('[{"name":"pca","arguments":{"n_comps":"50"}}]')
    False
    >>> a.min_close(a.feed(a.initial, '[{"name":"pc'))  # 'a","arguments":{}}]'
    19
    """

    def __init__(self, registry: ToolRegistry, *, allow_empty: bool = False, placeholders: bool = False) -> None:
        if not len(registry):
            raise ValueError("constrained decoding needs a registry with at least one tool")
        self.allow_empty = allow_empty
        self.placeholders = tuple(placeholder_tokens()) if placeholders else ()
        self.tools: dict[str, _Tool] = {}
        for tool in registry:
            specs = tool.arguments
            slots = {}
            for name, spec in specs.items():
                slot = _slot(dict(spec.schema))
                # the registry's kind wins where it is more specific (enum items, molecule lists)
                if spec.kind is ValueKind.ENUM and spec.enum and slot.kind == "str":
                    slot = _Slot("enum", tuple(_escaped(v) for v in spec.enum))
                slots[_escaped(name)] = slot
            self.tools[_escaped(tool.name)] = _Tool(slots, frozenset(_escaped(r) for r in tool.required))
        self._name_prefixes = {name[:i] for name in self.tools for i in range(len(name) + 1)}
        self._min_cache: dict[tuple[Any, ...], int] = {}
        self.initial: State = (("start",),)

    # -- minimum characters to close ---------------------------------------------------------

    def _pair_len(self, tool: str, arg: str) -> int:
        return len(arg) + 3 + self.tools[tool].slots[arg].min_len

    def _args_min(self, tool: str, used: frozenset[str], phase: str) -> int:
        info = self.tools[tool]
        missing = info.required - used
        pairs = sum(self._pair_len(tool, a) for a in missing)
        m = len(missing)
        if phase == "K":
            return 0
        if phase == "O":
            return 1 if not m else pairs + m
        if phase == "A":
            return 1 if not m else pairs + m + 1
        # "C": after a comma, one more pair is owed
        if not m:
            return min(self._pair_len(tool, a) for a in info.slots if a not in used) + 1
        return pairs + m

    def _name_cont(self, name: str) -> int:
        return len(name) + 1 + len(_ARGUMENTS_LIT) + self._args_min(name, frozenset(), "O") + 1

    def _min_call(self) -> int:
        return 1 + len(_NAME_LIT) + min(self._name_cont(n) for n in self.tools)

    def _item_min(self, item: tuple[Any, ...]) -> int:
        cached = self._min_cache.get(item)
        if cached is not None:
            return cached
        tag = item[0]
        if tag == "lit":
            value = len(item[1])
        elif tag == "end":
            value = 0
        elif tag == "start":
            value = 2 if self.allow_empty else self._min_call() + 2
        elif tag == "calls":
            phase = item[1]
            value = 1 if phase == "A" or (phase == "F" and self.allow_empty) else self._min_call() + 1
        elif tag == "name":
            prefix = item[1]
            value = min(self._name_cont(n) - len(prefix) for n in self.tools if n.startswith(prefix))
        elif tag == "args":
            value = self._args_min(item[1], item[2], item[3])
        elif tag == "key":
            _, tool, used, prefix = item
            value = min(
                len(a) - len(prefix) + 2 + self.tools[tool].slots[a].min_len
                + self._args_min(tool, used | {a}, "A")
                for a in self.tools[tool].slots if a not in used and a.startswith(prefix)
            )
        elif tag in ("int", "num"):
            value = 0 if item[1] in ("Z", "D", "I", "F", "X") else 1
        elif tag == "word":
            value = min(len(o) - len(item[1]) for o in _BOOLS if o.startswith(item[1]))
        elif tag == "placeholder":
            value = min(len(p) - len(item[1]) for p in item[2] if p.startswith(item[1]))
        elif tag == "choice":
            value = min(len(o) - len(item[2]) for o in item[1] if o.startswith(item[2])) + 1
        elif tag == "str":
            value = 1 if item[1] and not item[2] else 2
        elif tag == "arr":
            value = 1 if item[2] == "A" else item[1].min_len + 1
        else:  # pragma: no cover - every tag is handled above
            raise AssertionError(tag)
        self._min_cache[item] = value
        return value

    def min_close(self, state: State) -> int:
        """The fewest characters that turn ``state`` into a complete call list."""
        return sum(self._item_min(item) for item in state)

    # -- stepping -----------------------------------------------------------------------------

    def _value_items(self, slot: _Slot) -> State:
        if slot.kind in ("int", "num"):  # the bounds only matter to a placeholder, at the first character
            return ((slot.kind, "S", slot.bounds) if self.placeholders else (slot.kind, "S"),)
        if slot.kind == "bool":
            return (("word", ""),)
        if slot.kind == "enum":
            return (("choice", slot.options, ""), ("lit", '"'))
        if slot.kind == "str":
            return (("str", False, False), ("lit", '"'))
        return (("arr", slot.item, "F"), ("lit", "["))

    @staticmethod
    def _string_item(slot: _Slot) -> tuple[Any, ...]:
        return ("choice", slot.options, "") if slot.kind == "enum" else ("str", False, False)

    def step(self, state: State, ch: str) -> State | None:
        """The state after one more character, or None when no valid call list continues so."""
        while True:
            item = state[-1]
            rest = state[:-1]
            tag = item[0]
            if tag == "lit":
                text = item[1]
                if ch != text[0]:
                    return None
                return rest if len(text) == 1 else rest + (("lit", text[1:]),)
            if tag == "str":
                _, nonempty, escaped = item
                if escaped:
                    return rest + (("str", True, False),) if ch in _ESCAPABLE else None
                if ch == '"':
                    return rest if nonempty else None
                if ch == "\\":
                    return rest + (("str", nonempty, True),)
                if ch < " ":
                    return None
                return rest + (("str", True, False),) if not nonempty else state
            if tag in ("int", "num"):
                phase = item[1]
                if phase == "S" and ch == "<":
                    allowed = self._placeholders_for(state, tag, item[2] if len(item) > 2 else (None, None))
                    return rest + (("placeholder", "<", allowed),) if allowed else None
                nxt = self._number_step(tag, phase, ch)
                if nxt is not None:
                    return rest + ((tag, nxt),) if nxt != phase else state
                if phase in ("Z", "D", "I", "F", "X"):  # the number is complete: the char belongs to what follows
                    state = rest
                    continue
                return None
            if tag == "choice":
                _, options, prefix = item
                if ch == '"':
                    return rest if prefix in options else None
                grown = prefix + ch
                return rest + (("choice", options, grown),) if any(o.startswith(grown) for o in options) else None
            if tag == "key":
                _, tool, used, prefix = item
                slots = self.tools[tool].slots
                if ch == '"':
                    if prefix not in slots or prefix in used:
                        return None
                    below = rest[:-1] + (("args", tool, used | {prefix}, "A"),)
                    return below + self._value_items(slots[prefix]) + (("lit", ":"),)
                grown = prefix + ch
                if any(a.startswith(grown) for a in slots if a not in used):
                    return rest + (("key", tool, used, grown),)
                return None
            if tag == "args":
                _, tool, used, phase = item
                info = self.tools[tool]
                unused = len(info.slots) > len(used)
                if ch == "}" and phase in ("O", "A"):
                    return rest if info.required <= used else None
                if ch == '"' and (phase == "C" or (phase == "O" and unused)):
                    return rest + (("args", tool, used, "K"), ("key", tool, used, ""))
                if ch == "," and phase == "A" and unused:
                    return rest + (("args", tool, used, "C"),)
                return None
            if tag == "name":
                prefix = item[1]
                if ch == '"':
                    if prefix not in self.tools:
                        return None
                    return rest + (("lit", "}"), ("args", prefix, frozenset(), "O"), ("lit", _ARGUMENTS_LIT))
                grown = prefix + ch
                return rest + (("name", grown),) if grown in self._name_prefixes else None
            if tag == "placeholder":
                _, prefix, allowed = item
                grown = prefix + ch
                if grown in allowed:
                    return rest
                return rest + (("placeholder", grown, allowed),) if any(p.startswith(grown) for p in allowed) else None
            if tag == "word":
                grown = item[1] + ch
                if grown in _BOOLS:
                    return rest
                return rest + (("word", grown),) if any(o.startswith(grown) for o in _BOOLS) else None
            if tag == "arr":
                _, slot, phase = item
                if ch == '"' and phase in ("F", "C"):
                    return rest + (("arr", slot, "A"), self._string_item(slot))
                if phase == "A" and ch == ",":
                    return rest + (("arr", slot, "C"),)
                if phase == "A" and ch == "]":
                    return rest
                return None
            if tag == "calls":
                phase = item[1]
                if ch == "{" and phase in ("F", "C"):
                    return rest + (("calls", "A"), ("name", ""), ("lit", _NAME_LIT))
                if ch == "]" and (phase == "A" or (phase == "F" and self.allow_empty)):
                    return rest
                if ch == "," and phase == "A":
                    return rest + (("calls", "C"),)
                return None
            if tag == "start":
                return (("end",) + item[1:], ("calls", "F")) if ch == "[" else None
            return None  # "end": nothing may follow the list

    def _placeholders_for(self, state: State, tag: str, bounds: tuple[float | None, float | None]) -> tuple[str, ...]:
        """The placeholders a number argument may take in ``state``: those whose span in the row's
        instruction (kept by the bottom item, see :meth:`initial_state`) is a number of the
        argument's type within its bounds."""
        bottom = state[0]
        if not self.placeholders or len(bottom) < 2:
            return ()
        low, high = bounds
        return tuple(
            self.placeholders[index] for index, number in enumerate(bottom[1][:len(self.placeholders)])
            if number is not None and (tag != "int" or float(number).is_integer())
            and (low is None or number >= low) and (high is None or number <= high)
        )

    def initial_state(self, numbers: Sequence[float | None] = ()) -> State:
        """The state before the first character, for an instruction whose placeholder spans mean
        ``numbers`` (None for a span that is not a number, such as a path)."""
        return (("start", tuple(numbers)),) if numbers and self.placeholders else self.initial

    @staticmethod
    def _number_step(tag: str, phase: str, ch: str) -> str | None:
        if phase in ("S", "N"):
            if ch == "-" and phase == "S":
                return "N"
            if ch == "0":
                return "Z"
            if ch in _ONE_TO_NINE:
                return "D" if tag == "int" else "I"
            return None
        if tag == "int":
            return "D" if phase == "D" and ch in _DIGITS else None
        if ch in _DIGITS:
            return {"I": "I", "P": "F", "F": "F", "E": "X", "G": "X", "X": "X"}.get(phase)
        if ch == "." and phase in ("Z", "I"):
            return "P"
        if ch in "eE" and phase in ("Z", "I", "F"):
            return "E"
        if ch in "+-" and phase == "E":
            return "G"
        return None

    def feed(self, state: State, text: str) -> State | None:
        """The state after ``text``, or None when ``text`` leaves the language."""
        for ch in text:
            state = self.step(state, ch)  # type: ignore[assignment]
            if state is None:
                return None
        return state

    @staticmethod
    def is_complete(state: State) -> bool:
        """Whether the call list is closed (only the end of sequence may follow)."""
        return len(state) == 1 and state[0][0] == "end"

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is a complete valid call list."""
        state = self.feed(self.initial, text)
        return state is not None and self.is_complete(state)

    def accepts_prefix(self, text: str) -> bool:
        """Whether ``text`` can still be continued into a valid call list."""
        return self.feed(self.initial, text) is not None


# -- tokens ----------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def _decoder_types(tokenizer: Any) -> set[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    found: set[str] = set()
    pending = [decoder]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "type" in node:
                found.add(node["type"])
            pending.extend(node.get("decoders") or [])
    return found


def token_strings(tokenizer: PreTrainedTokenizerBase) -> list[str | None]:
    """The text each token id writes, or None for special tokens and partial UTF-8 sequences.

    Byte-level BPE tokens are mapped back through the byte alphabet (exact); SentencePiece-style
    tokens turn ``▁`` into a space and ``<0xNN>`` byte tokens into their ASCII character; any
    other tokenizer falls back to ``decode([id])``.
    """
    size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    decoders = _decoder_types(tokenizer)
    byte_of = {c: b for b, c in _bytes_to_unicode().items()} if "ByteLevel" in decoders else None
    out: list[str | None] = []
    for token_id, piece in enumerate(pieces):
        text: str | None
        if token_id in special or piece is None:
            text = None
        elif byte_of is not None:
            try:
                text = bytes(byte_of[c] for c in piece).decode("utf-8")
            except (KeyError, UnicodeDecodeError):
                text = None
        elif "Metaspace" in decoders or "Replace" in decoders:
            if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
                code = int(piece[3:5], 16)
                text = chr(code) if code < 0x80 else None
            else:
                text = piece.replace("\u2581", " ")
        else:
            text = tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
        out.append(text or None)
    return out


class _Trie:
    """Token strings as a character trie: ``children[node][ch] -> node``, ``ids[node]`` ending there."""

    def __init__(self, strings: Sequence[str | None]) -> None:
        self.children: list[dict[str, int]] = [{}]
        self.ids: list[list[int]] = [[]]
        for token_id, text in enumerate(strings):
            if not text:
                continue
            node = 0
            for ch in text:
                nxt = self.children[node].get(ch)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][ch] = nxt
                    self.children.append({})
                    self.ids.append([])
                node = nxt
            self.ids[node].append(token_id)


class ConstrainedDecoder:
    """The automaton bound to a tokenizer, with the per-state cache shared by every batch.

    Parameters
    ----------
    registry
        The domain's tools.
    tokenizer
        The model's tokenizer (its end-of-sequence token closes a complete list).
    allow_empty
        Whether ``[]`` may be generated.
    placeholders
        Whether number arguments may be value placeholders (a model trained with them).
    cache_size
        States whose allowed-token table is kept (least recently used are dropped).

    Notes
    -----
    ``stats`` counts processor calls, rows, seconds spent and states computed; seconds divided by
    generated tokens is the per-token overhead.
    """

    def __init__(self, registry: ToolRegistry, tokenizer: PreTrainedTokenizerBase, *, allow_empty: bool = False,
                 placeholders: bool = False, cache_size: int = 8192) -> None:
        self.automaton = CallListAutomaton(registry, allow_empty=allow_empty, placeholders=placeholders)
        self.strings = token_strings(tokenizer)
        self.trie = _Trie(self.strings)
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("constrained decoding needs a tokenizer with an end-of-sequence token")
        self.eos_token_id = int(eos)
        self.cache_size = cache_size
        self._tables: OrderedDict[State, Any] = OrderedDict()
        self.stats = {"calls": 0, "rows": 0, "seconds": 0.0, "states": 0}

    def closing_costs(self, state: State) -> torch.Tensor:
        """Per token id: characters left to close the list after that token (huge: not allowed)."""
        import torch

        table = self._tables.get(state)
        if table is not None:
            self._tables.move_to_end(state)
            return table
        costs = [_UNREACHABLE] * len(self.strings)
        automaton, children, ids = self.automaton, self.trie.children, self.trie.ids
        pending = [(0, state)]
        while pending:
            node, current = pending.pop()
            for ch, child in children[node].items():
                nxt = automaton.step(current, ch)
                if nxt is None:
                    continue
                if ids[child]:
                    cost = automaton.min_close(nxt)
                    for token_id in ids[child]:
                        costs[token_id] = cost
                if children[child]:
                    pending.append((child, nxt))
        table = torch.tensor(costs, dtype=torch.int32)
        self._tables[state] = table
        self.stats["states"] += 1
        if len(self._tables) > self.cache_size:
            self._tables.popitem(last=False)
        return table

    def logits_processor(self, max_new_tokens: int,
                         placeholders: Sequence[Sequence[float | None]] | None = None) -> CallListLogitsProcessor:
        """A processor for one ``generate`` call of at most ``max_new_tokens`` tokens;
        ``placeholders`` gives, per row, the numbers its instruction's placeholder spans mean."""
        return CallListLogitsProcessor(self, max_new_tokens, placeholders)


class CallListLogitsProcessor:
    """A ``transformers`` logits processor masking every token that breaks the call list.

    It follows each row from the first call on (the prompt length is read then), advancing the
    row's automaton state by the tokens generated since the previous call. A token is allowed
    when it keeps the output a valid prefix and the characters still needed to close the list
    fit in the tokens left; the end-of-sequence token only once the list is closed.
    """

    def __init__(self, decoder: ConstrainedDecoder, max_new_tokens: int,
                 placeholders: Sequence[Sequence[float | None]] | None = None) -> None:
        self.decoder = decoder
        self.max_new_tokens = max_new_tokens
        self.placeholders = list(placeholders) if placeholders is not None else None
        self.prompt_length: int | None = None
        self.states: list[State | None] = []
        self.consumed: list[int] = []
        self.finished: list[bool] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        start = time.perf_counter()
        decoder, automaton = self.decoder, self.decoder.automaton
        rows, vocab = scores.shape
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
            numbers = self.placeholders if self.placeholders and len(self.placeholders) == rows else [()] * rows
            self.states = [automaton.initial_state(row_numbers) for row_numbers in numbers]
            self.consumed = [0] * rows
            self.finished = [False] * rows
        generated = input_ids.shape[1] - self.prompt_length
        remaining = self.max_new_tokens - generated  # tokens left, this one included
        mask = torch.zeros((rows, vocab), dtype=torch.bool)
        eos = decoder.eos_token_id
        for row in range(rows):
            while self.consumed[row] < generated:
                token_id = int(input_ids[row, self.prompt_length + self.consumed[row]])
                self.consumed[row] += 1
                state = self.states[row]
                if self.finished[row] or state is None:
                    continue
                if token_id == eos:
                    self.finished[row] = True
                    continue
                text = decoder.strings[token_id] if token_id < len(decoder.strings) else None
                self.states[row] = automaton.feed(state, text) if text else None
            state = self.states[row]
            if self.finished[row] or state is None:
                mask[row] = True  # nothing to constrain any more (generate pads finished rows)
                continue
            costs = decoder.closing_costs(state)
            allowed = costs <= remaining - 1
            if not bool(allowed.any()):  # budget shorter than any closing: take the shortest way
                allowed = costs == costs.min()
                if int(costs.min()) >= _UNREACHABLE:
                    allowed[:] = False
            width = min(vocab, allowed.shape[0])
            mask[row, :width] = allowed[:width]
            if automaton.is_complete(state) and eos < vocab:
                mask[row, eos] = True
            if not bool(mask[row].any()) and eos < vocab:
                mask[row, eos] = True  # never leave a row without a choice
        scores = scores.masked_fill(~mask.to(scores.device), float("-inf"))
        decoder.stats["calls"] += 1
        decoder.stats["rows"] += rows
        decoder.stats["seconds"] += time.perf_counter() - start
        return scores
