"""Decompose a recorded set: parse rate, accuracy against gold calls, expansion usage, rejections.

This is what ``grammar-engine decompose DOMAIN_DIR`` prints and writes; the same usage counts are
what the weighted sampler learns its weights from.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InstructionParseError
from .recordings import Rejected, read_instructions

if TYPE_CHECKING:
    from .grammar import Grammar

__all__ = ["DecompositionReport", "decompose_file"]


@dataclass
class DecompositionReport:
    """The outcome of parsing every line of a recorded set."""

    source: str
    lines: int = 0
    bad_lines: int = 0
    parsed: int = 0
    with_gold: int = 0
    correct: int = 0
    usage: Counter[int] = field(default_factory=Counter)
    rejected: list[Rejected] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def instructions(self) -> int:
        """Lines that held an instruction (parsed or not)."""
        return self.lines - self.bad_lines

    @property
    def parse_rate(self) -> float:
        return self.parsed / self.instructions if self.instructions else 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.with_gold if self.with_gold else 0.0

    def to_markdown(self, grammar: Grammar) -> str:
        """The report as markdown: figures, rejected lines, mismatches, expansion usage."""
        out = [
            f"# Decomposition of `{self.source}`",
            "",
            f"- lines: {self.lines}, instructions: {self.instructions}",
            f"- parsed: {self.parsed} ({self.parse_rate:.1%})",
            f"- gold calls matched: {self.correct}/{self.with_gold} ({self.accuracy:.1%}) of the lines with gold",
            "",
            f"## Rejected lines ({len(self.rejected)})",
            "",
        ]
        out += [f"- {r}" for r in self.rejected] or ["(none)"]
        out += ["", f"## Parsed, but not to the gold calls ({len(self.mismatched)})", ""]
        for item in self.mismatched:
            out.append(f"- line {item['line']}: {item['instruction']!r}")
            out.append(f"  - got:  `{json.dumps(item['calls'])}`")
            out.append(f"  - gold: `{json.dumps(item['gold'])}`")
        if not self.mismatched:
            out.append("(none)")
        out += ["", "## Expansion usage", "", "| uses | expansion |", "|---:|---|"]
        for exp in grammar.table.expansions:
            if not exp.origin.startswith("__"):
                out.append(f"| {self.usage.get(exp.index, 0)} | `{exp.label}` |")
        return "\n".join(out) + "\n"

    def to_dict(self, grammar: Grammar) -> dict[str, Any]:
        """JSON-ready figures, rejections and per-expansion usage."""
        return {
            "source": self.source, "lines": self.lines, "instructions": self.instructions,
            "parsed": self.parsed, "parse_rate": self.parse_rate,
            "with_gold": self.with_gold, "correct": self.correct, "accuracy": self.accuracy,
            "rejected": [{"line": r.line, "id": r.id, "reason": r.reason} for r in self.rejected],
            "mismatched": self.mismatched,
            "usage": {grammar.table.expansions[i].label: n for i, n in sorted(self.usage.items())},
        }


def decompose_file(grammar: Grammar, path: str | Path) -> DecompositionReport:
    """Parse every line of a recorded JSONL file, keeping usage counts and every rejection."""
    report = DecompositionReport(str(path))
    for item in read_instructions(path):
        report.lines += 1
        if isinstance(item, Rejected):
            report.bad_lines += 1
            report.rejected.append(item)
            continue
        try:
            decomposition = grammar.parse(item.instruction)
        except InstructionParseError as exc:
            reason = str(exc).splitlines()[0]
            report.rejected.append(Rejected(item.line, item.id, f"does not parse: {reason}"))
            report.results.append({"id": item.id, "line": item.line, "calls": [], "error": str(exc)})
            continue
        report.parsed += 1
        report.usage.update(decomposition.expansions)
        report.results.append({"id": item.id, "line": item.line, "calls": decomposition.calls})
        if item.calls is not None:
            report.with_gold += 1
            gold = grammar.tools.normalize_calls(item.calls)
            if gold == decomposition.calls:
                report.correct += 1
            else:
                report.mismatched.append({"line": item.line, "id": item.id, "instruction": item.instruction,
                                          "calls": decomposition.calls, "gold": gold})
    return report
