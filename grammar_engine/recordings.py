"""Read JSONL instruction files line by line: every line is either used or reported.

Both ``recorded.jsonl`` (``{"id", "instruction", "calls"?}``) and the input of
``grammar-engine parse`` (``{"id", "instruction"}``) go through :func:`read_instructions`. A bad
line (not UTF-8, not JSON, not an object, no instruction, far too long) becomes a
:class:`Rejected` entry naming its line; it never stops the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["MAX_LINE_BYTES", "Rejected", "Record", "read_instructions", "recorded_texts"]

#: Lines longer than this are reported and skipped without being held in memory whole.
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Record:
    """A usable input line."""

    line: int
    id: Any
    instruction: str
    calls: list[dict[str, Any]] | None
    raw: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    """An input line that could not be used, and why."""

    line: int
    id: Any
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (id {self.id!r})" if self.id is not None else "")
        return f"{where}: {self.reason}"


def _read_lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes) and (line number, None) for lines over the size limit."""
    number = 0
    while True:
        chunk = handle.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):  # skip the rest of the oversized line
                chunk = handle.readline(MAX_LINE_BYTES + 1)
            yield number, None
            continue
        yield number, chunk


def read_instructions(path: str | Path | IO[bytes], *, require_calls: bool = False) -> Iterator[Record | Rejected]:
    """Yield each line of a JSONL instruction file as a :class:`Record` or a :class:`Rejected`.

    Blank lines are reported too, so that line numbers in any report match the file.

    Parameters
    ----------
    path
        A file path, or a binary file object.
    require_calls
        Reject lines whose ``calls`` is present but not a list of call objects.
    """
    if isinstance(path, (str, Path)):
        with open(path, "rb") as handle:
            yield from read_instructions(handle, require_calls=require_calls)
        return
    for number, chunk in _read_lines(path):
        if chunk is None:
            yield Rejected(number, None, f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Rejected(number, None, f"not UTF-8 (byte {exc.start})")
            continue
        if not text.strip():
            yield Rejected(number, None, "empty line")
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Rejected(number, None, f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(data, dict):
            yield Rejected(number, None, f"expected a JSON object, got {type(data).__name__}")
            continue
        ident = data.get("id")
        instruction = data.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            yield Rejected(number, ident, "no 'instruction' string" if not isinstance(instruction, str)
                           else "empty instruction")
            continue
        calls = data.get("calls")
        if calls is not None and (not isinstance(calls, list) or not all(
                isinstance(c, dict) and isinstance(c.get("name"), str)
                and isinstance(c.get("arguments") or {}, dict) for c in calls)):
            if require_calls:
                yield Rejected(number, ident, "'calls' must be a list of {\"name\", \"arguments\"} objects")
                continue
            calls = None
        yield Record(number, ident, instruction, calls, data)


def recorded_texts(path: str | Path) -> list[str]:
    """The instructions of the usable lines of a JSONL file, in file order.

    Lines that :func:`read_instructions` rejects are left out here; ``grammar-engine decompose``
    reports each of them with its line number.
    """
    return [item.instruction for item in read_instructions(path) if isinstance(item, Record)]
