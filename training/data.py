"""Corpus records -> prompt/target text -> token ids with the loss only on the calls. Pure Python.

Two prompt formats:

``plain`` (the tiny model's; its tokenizer knows the markers as special tokens)::

    <|user|>normalize to 10k counts per cell, then log<|calls|>[{"name":"normalize_total",
    "arguments":{"target_sum":10000}},{"name":"log1p","arguments":{}}]<|end|>

(one line; broken here for width).

The prompt is everything up to and including ``<|calls|>``, around the instruction in its
normalized form (single spaces, no closing punctuation: :func:`grammar_engine.grammar.normalize_instruction`),
at training and prediction alike; the target is the compact canonical
JSON of the calls (:func:`calls_to_json`) followed by ``<|end|>``. In a domain whose tools take
molecules, a molecule the instruction names in words is written by that name rather than its
SMILES, and read back through the corpus's lexicon (:mod:`training.molecule_names`). With
``ModelConfig.value_placeholders`` (the default), the numbers and paths of the instruction (and
with ``value_symbols`` its gene symbols and keys) are numbered placeholders in prompt and target
(:mod:`training.value_placeholders`).

``chat`` (a pretrained model with a chat template): the tokenizer renders the user message with
the tool definitions (``tools=``) and a generation prompt; the target is what the template adds
for the assistant's ``tool_calls`` message. Taking the difference of the two renderings works for
any template, with or without ``{% generation %}`` markers.

:func:`encode_example` tokenizes prompt and target separately and masks the prompt's labels
with ``-100``: the loss falls only on the call tokens and the end marker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grammar_engine.errors import CorpusFormatError, Location
from grammar_engine.grammar import normalize_instruction
from grammar_engine.tools import ToolRegistry

from .molecule_names import MoleculeNames
from .value_placeholders import ValuePlaceholders

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "CALLS_MARKER",
    "END_MARKER",
    "IGNORE_INDEX",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "USER_MARKER",
    "Example",
    "build_examples",
    "calls_to_json",
    "canonical_calls",
    "chat_example",
    "encode_example",
    "extract_calls",
    "iter_jsonl",
    "plain_example",
    "plain_prompt",
    "read_corpus",
    "read_manifest",
    "record_calls",
    "registry_from_definitions",
    "resolve_prompt_format",
]

USER_MARKER = "<|user|>"
CALLS_MARKER = "<|calls|>"
END_MARKER = "<|end|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (PAD_TOKEN, USER_MARKER, CALLS_MARKER, END_MARKER)
"""The plain format's special tokens, in the ids the tiny tokenizer gives them (0..3)."""

IGNORE_INDEX = -100
"""Label of a token that takes no loss (the value torch's cross entropy ignores)."""


@dataclass(frozen=True)
class Example:
    """One training or evaluation example: the text the model sees and the text it must write."""

    id: str
    instruction: str
    calls: list[dict[str, Any]]
    prompt: str
    target: str


# -- reading ---------------------------------------------------------------------------------


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line_number, value, error)`` for each non-blank line of a JSONL file.

    ``value`` is None and ``error`` says why when a line is not JSON; the caller decides whether
    that is fatal (training data) or reported and skipped (prediction input).
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, f"not UTF-8 (byte {exc.start + 1} of the line)"
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield number, None, f"invalid JSON ({exc.msg}, column {exc.colno})"


def read_manifest(corpus_dir: str | Path) -> dict[str, Any]:
    """Read ``manifest.json`` of a corpus directory (an empty dict when there is none)."""
    path = Path(corpus_dir) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorpusFormatError(f"invalid JSON: {exc.msg}", Location(str(path), exc.lineno, exc.colno)) from None
    if not isinstance(data, dict):
        raise CorpusFormatError("a manifest must be a JSON object", Location(str(path), 1, 1))
    return data


def record_calls(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The call list of a corpus or recordings record.

    Reads ``calls`` when present, else the assistant message's ``tool_calls``
    (``{"type": "function", "function": {"name", "arguments"}}``; arguments given as a JSON
    string are decoded).
    """
    calls = record.get("calls")
    if calls is not None:
        return [{"name": c.get("name"), "arguments": dict(c.get("arguments") or {})} for c in calls]
    out: list[dict[str, Any]] = []
    for message in record.get("messages") or []:
        if message.get("role") != "assistant":
            continue
        for tool_call in message.get("tool_calls") or []:
            function = tool_call.get("function", tool_call)
            arguments = function.get("arguments") or {}
            if isinstance(arguments, str):
                arguments = json.loads(arguments)
            out.append({"name": function.get("name"), "arguments": dict(arguments)})
    return out


def read_corpus(corpus_dir: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """Every record of one split of a corpus directory, shard by shard in name order.

    Raises
    ------
    CorpusFormatError
        When the directory has no shard of that split, or a line is not a valid record (training
        on a silently shortened corpus would be worse than stopping).
    """
    corpus_dir = Path(corpus_dir)
    shards = sorted(corpus_dir.glob(f"{split}-*.jsonl"))
    if not shards:
        raise CorpusFormatError(
            f"no '{split}-*.jsonl' shard", Location(str(corpus_dir)),
            hint="pass a directory written by `grammar-engine sample`",
        )
    records: list[dict[str, Any]] = []
    for shard in shards:
        for number, record, error in iter_jsonl(shard):
            where = Location(str(shard), number, 1)
            if error:
                raise CorpusFormatError(error, where)
            if not isinstance(record, dict) or not isinstance(record.get("instruction"), str):
                raise CorpusFormatError("a record needs an 'instruction' string", where)
            try:
                record["calls"] = record_calls(record)
            except (AttributeError, TypeError, ValueError) as exc:
                raise CorpusFormatError(f"malformed calls: {exc}", where) from None
            record.setdefault("id", f"{shard.stem}:{number}")
            records.append(record)
    return records


def registry_from_definitions(definitions: Sequence[Mapping[str, Any]], domain: str = "") -> ToolRegistry:
    """A :class:`~grammar_engine.tools.ToolRegistry` from chat-template function definitions.

    Accepts both ``{"type": "function", "function": {...}}`` and bare ``{"name", "parameters"}``.
    """
    tools = []
    for definition in definitions:
        function = definition.get("function", definition)
        tools.append({
            "name": function.get("name"),
            "description": function.get("description", ""),
            "parameters": function.get("parameters", {"type": "object", "properties": {}}),
        })
    return ToolRegistry.from_dict({"domain": domain, "tools": tools}, source="<manifest tools>")


# -- formatting ------------------------------------------------------------------------------


def _canonical_call(call: Mapping[str, Any], registry: ToolRegistry | None) -> dict[str, Any]:
    """Defaults dropped, integral floats as ints, arguments in schema order."""
    if registry is None:
        return {"name": call.get("name"), "arguments": dict(call.get("arguments") or {})}
    normalized = registry.normalize_call(call)
    args = normalized["arguments"]
    tool = registry.tools.get(str(normalized["name"]))
    if tool is not None:
        order = {name: i for i, name in enumerate(tool.parameters.get("properties", {}))}
        args = dict(sorted(args.items(), key=lambda kv: order.get(kv[0], len(order))))
    return {"name": normalized["name"], "arguments": args}


def canonical_calls(calls: Iterable[Mapping[str, Any]], registry: ToolRegistry | None = None) -> list[dict[str, Any]]:
    """Calls in the one spelling the plain format writes (see :func:`calls_to_json`)."""
    return [_canonical_call(call, registry) for call in calls]


def calls_to_json(calls: Iterable[Mapping[str, Any]], registry: ToolRegistry | None = None) -> str:
    """Compact canonical JSON of a call list: the text the plain-format model learns to write.

    With a registry, default-valued and null arguments are dropped, integral floats become ints
    and arguments follow the schema's order, so every call has exactly one spelling.

    Examples
    --------
    >>> calls_to_json([{"name": "log1p", "arguments": {}}])
    '[{"name":"log1p","arguments":{}}]'
    """
    return json.dumps(canonical_calls(calls, registry), ensure_ascii=False, separators=(",", ":"))


def plain_prompt(instruction: str) -> str:
    """The plain-format prompt of an instruction.

    Examples
    --------
    >>> plain_prompt("log transform")
    '<|user|>log transform<|calls|>'
    """
    return f"{USER_MARKER}{instruction}{CALLS_MARKER}"


def plain_example(
    record: Mapping[str, Any], registry: ToolRegistry | None = None, *, end: str = END_MARKER,
    molecules: MoleculeNames | None = None, placeholders: ValuePlaceholders | None = None,
) -> Example:
    """The plain-format :class:`Example` of a corpus record.

    ``end`` closes the target: ``<|end|>`` for the tiny tokenizer, the end-of-sequence token of
    a pretrained one (so that generation stops there without new special tokens). With
    ``molecules`` (and a registry), a molecule the instruction names is written by that name
    (see :mod:`training.molecule_names`). With ``placeholders``, the instruction's numbers and
    paths are placeholders in the prompt and in the target (see :mod:`training.value_placeholders`).
    """
    calls = record_calls(record)
    instruction = str(record["instruction"])
    written = calls
    if molecules is not None and registry is not None:
        written = molecules.to_names(calls, instruction, registry)
    text = normalize_instruction(instruction)
    if placeholders is not None:
        text, spans = placeholders.mask(text)
        target = placeholders.target_json(canonical_calls(written, registry), spans)
    else:
        target = calls_to_json(written, registry)
    return Example(
        id=str(record.get("id", "")),
        instruction=instruction,
        calls=calls,
        prompt=plain_prompt(text),
        target=target + end,
    )


def _chat_messages(record: Mapping[str, Any], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tool_calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                  for c in calls]
    return [
        {"role": "user", "content": str(record["instruction"])},
        {"role": "assistant", "content": "", "tool_calls": tool_calls},
    ]


def chat_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str,
                tools: Sequence[Mapping[str, Any]] | None) -> str:
    """The chat-template prompt of an instruction: user message, tool definitions, generation prompt."""
    return str(tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], tools=list(tools) if tools else None,
        add_generation_prompt=True, tokenize=False,
    ))


def chat_example(
    record: Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    tools: Sequence[Mapping[str, Any]] | None,
    registry: ToolRegistry | None = None,
) -> Example:
    """The chat-template :class:`Example` of a corpus record.

    Raises
    ------
    ValueError
        When the template renders the conversation with a different prefix than the prompt alone
        (then the assistant's part cannot be isolated): use the plain format for that model.
    """
    calls = [_canonical_call(c, registry) for c in record_calls(record)]
    prompt = chat_prompt(tokenizer, str(record["instruction"]), tools)
    full = str(tokenizer.apply_chat_template(
        _chat_messages(record, calls), tools=list(tools) if tools else None, tokenize=False,
    ))
    if not full.startswith(prompt) or len(full) == len(prompt):
        raise ValueError(
            "the chat template renders the user turn differently once the assistant turn is added; "
            "train this model with prompt_format='plain'"
        )
    return Example(
        id=str(record.get("id", "")), instruction=str(record["instruction"]), calls=calls,
        prompt=prompt, target=full[len(prompt):],
    )


def resolve_prompt_format(requested: str, tokenizer: PreTrainedTokenizerBase | None) -> str:
    """``plain`` or ``chat``: ``auto`` picks chat when the tokenizer has a chat template."""
    if requested != "auto":
        return requested
    return "chat" if tokenizer is not None and getattr(tokenizer, "chat_template", None) else "plain"


def build_examples(
    records: Iterable[Mapping[str, Any]],
    *,
    prompt_format: str = "plain",
    tokenizer: PreTrainedTokenizerBase | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    registry: ToolRegistry | None = None,
    molecules: MoleculeNames | None = None,
    placeholders: ValuePlaceholders | None = None,
) -> list[Example]:
    """Format corpus records as :class:`Example` in the given prompt format.

    Parameters
    ----------
    records
        Corpus records (``instruction`` plus ``calls`` or ``messages``).
    prompt_format
        ``plain`` or ``chat`` (see the module docstring).
    tokenizer
        Needed for ``chat``: its chat template renders the conversation.
    tools
        Function definitions given to the chat template (a record's own ``tools`` win).
    registry
        Canonicalizes the target calls (defaults dropped, schema argument order).
    molecules
        Plain format: write the molecules an instruction names by those names.
    placeholders
        Plain format: numbers and paths (and symbols) become placeholders in prompt and target.
    """
    if prompt_format not in ("plain", "chat"):
        raise ValueError(f"prompt_format must be 'plain' or 'chat', got {prompt_format!r}")
    if prompt_format == "chat" and tokenizer is None:
        raise ValueError("the chat format needs a tokenizer with a chat template")
    end = getattr(tokenizer, "eos_token", None) or END_MARKER
    examples = []
    for record in records:
        if prompt_format == "plain":
            examples.append(plain_example(record, registry, end=end, molecules=molecules,
                                          placeholders=placeholders))
        else:
            assert tokenizer is not None
            examples.append(chat_example(record, tokenizer, record.get("tools") or tools, registry))
    return examples


def encode_example(
    example: Example, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> dict[str, list[int]]:
    """Token ids of prompt + target, with labels ``-100`` everywhere but the target.

    Prompt and target are tokenized separately, so no token straddles the boundary and the
    masked span is exactly the prompt. An example longer than ``max_length`` keeps its prompt's
    end and is cut at the right (the loss then covers a prefix of the target).
    """
    prompt_ids = list(tokenizer(example.prompt, add_special_tokens=False)["input_ids"])
    target_ids = list(tokenizer(example.target, add_special_tokens=False)["input_ids"])
    if len(prompt_ids) >= max_length:
        prompt_ids = prompt_ids[-(max_length // 2):]
    input_ids = (prompt_ids + target_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + target_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels, "attention_mask": [1] * len(input_ids)}


# -- reading model output --------------------------------------------------------------------


def _check_call_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list of calls, got {type(value).__name__}")
    calls = []
    for index, call in enumerate(value):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"call {index + 1} is not an object with a 'name' string")
        arguments = call.get("arguments", call.get("parameters"))
        if isinstance(arguments, str):
            arguments = json.loads(arguments)
        if not isinstance(arguments, dict):
            raise ValueError(f"call {index + 1} ({call['name']}) has no 'arguments' object")
        extra = set(call) - {"name", "arguments", "parameters", "type", "id"}
        if extra:
            raise ValueError(f"call {index + 1} ({call['name']}) has unexpected keys {sorted(extra)}")
        calls.append({"name": call["name"], "arguments": arguments})
    return calls


def extract_calls(text: str, prompt_format: str = "plain") -> list[dict[str, Any]]:
    """Read the call list out of generated text.

    ``plain``: the text up to ``<|end|>`` (or the end of the text) must be one JSON list of ``{"name", "arguments"}``
    objects. ``chat``: every JSON object or list in the text is taken (templates wrap calls in
    ``<tool_call>`` tags, fences or prose); objects with a ``name`` are the calls, in order.

    Raises
    ------
    ValueError
        Saying why the text is not a valid call list.
    """
    if prompt_format == "plain":
        body = text.split(END_MARKER, 1)[0].strip()
        if not body:
            raise ValueError("empty output")
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
        return _check_call_list(value)
    decoder = json.JSONDecoder()
    found: list[Any] = []
    index = 0
    while index < len(text):
        if text[index] in "[{":
            try:
                value, end = decoder.raw_decode(text, index)
            except json.JSONDecodeError:
                index += 1
                continue
            found.extend(value if isinstance(value, list) else [value])
            index = end
        else:
            index += 1
    if not found:
        raise ValueError("no JSON call in the output")
    return _check_call_list(found)
