from __future__ import annotations

import io

from grammar_engine.recordings import MAX_LINE_BYTES, Record, Rejected, read_instructions


def test_every_line_is_used_or_reported() -> None:
    lines = [
        b'{"id": 1, "instruction": "log1p"}',
        b"not json",
        b"",
        b'{"id": 4}',
        b'{"id": 5, "instruction": "   "}',
        b"[1, 2]",
        b'{"id": 7, "instruction": "caf\xe9"}',
        b'{"id": 8, "instruction": "pca", "calls": [{"name": "pca", "arguments": {}}]}',
        b'{"id": 9, "instruction": "x' + b"y" * (MAX_LINE_BYTES + 10) + b'"}',
        b'{"id": 10, "instruction": "umap"}',
    ]
    items = list(read_instructions(io.BytesIO(b"\n".join(lines) + b"\n")))
    assert [item.line for item in items] == list(range(1, 11))
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["Record", "Rejected", "Rejected", "Rejected", "Rejected", "Rejected", "Rejected",
                     "Record", "Rejected", "Record"]
    reasons = {item.line: item.reason for item in items if isinstance(item, Rejected)}
    assert reasons[2].startswith("not JSON")
    assert reasons[3] == "empty line"
    assert reasons[4] == "no 'instruction' string"
    assert reasons[5] == "empty instruction"
    assert reasons[6] == "expected a JSON object, got list"
    assert reasons[7].startswith("not UTF-8")
    assert "longer than" in reasons[9]
    record = items[7]
    assert isinstance(record, Record) and record.calls == [{"name": "pca", "arguments": {}}]


def test_bad_calls_are_dropped_or_rejected() -> None:
    data = b'{"id": 1, "instruction": "pca", "calls": "pca"}\n'
    (item,) = read_instructions(io.BytesIO(data))
    assert isinstance(item, Record) and item.calls is None
    (item,) = read_instructions(io.BytesIO(data), require_calls=True)
    assert isinstance(item, Rejected) and "calls" in item.reason
