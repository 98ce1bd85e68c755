"""Scoring predicted call lists against gold ones, the way the tool contract compares values.

Both sides are normalized first (:func:`comparable_calls`):

- :meth:`ToolRegistry.normalize_calls` drops null and default-valued arguments and turns
  integral floats into ints;
- numbers compare as numbers (``10000 == 10000.0``) and never equal strings or booleans;
- molecules compare as RDKit canonical SMILES when RDKit is installed (else as written);
- list arguments compare as multisets;
- the two molecules of ``tanimoto_similarity`` are an unordered pair, and its ``radius``
  counts only for Morgan fingerprints (:data:`UNORDERED_ARGUMENTS`, :data:`CONDITIONAL_ARGUMENTS`).

Metrics: exact match of the whole ordered call list; call-level precision, recall and F1 with
predicted and gold calls as multisets (micro-averaged over instructions), overall and per tool;
the rates of well-formed and schema-valid predictions. :func:`compare_systems` puts parser
alone, model alone and parser+model side by side.

Every miss is also given one kind (:func:`classify_failure`, :data:`FAILURE_KINDS`), and the
arguments a system gets wrong in calls of the right tool are counted as ``tool.argument``, so a
report says where a system fails as well as how often.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from grammar_engine.errors import GrammarEngineError
from grammar_engine.recordings import Rejected
from grammar_engine.recordings import read_instructions as read_recordings
from grammar_engine.tools import ToolRegistry

from ._imports import is_rdkit_available
from .data import iter_jsonl, record_calls

__all__ = [
    "CONDITIONAL_ARGUMENTS",
    "UNORDERED_ARGUMENTS",
    "FAILURE_KINDS",
    "EvaluationReport",
    "Scores",
    "canonical_smiles",
    "classify_failure",
    "comparable_calls",
    "compare_systems",
    "evaluate_predictions",
    "format_failures",
    "format_table",
    "parser_predictions",
    "read_gold",
    "read_predictions",
]

UNORDERED_ARGUMENTS: dict[str, tuple[str, str]] = {"tanimoto_similarity": ("molecule_a", "molecule_b")}
"""Per tool, two arguments whose values form an unordered pair."""

CONDITIONAL_ARGUMENTS: dict[str, dict[str, tuple[str, Any, frozenset[Any]]]] = {
    "tanimoto_similarity": {"radius": ("fingerprint", "morgan", frozenset({"morgan"}))},
}
"""Per tool, ``argument -> (other argument, its default, values of it where the argument counts)``."""

FAILURE_KINDS: dict[str, str] = {
    "not a call list": "no prediction, or an output that is not a well-formed call list",
    "wrong tool": "a call of a tool the gold list does not have, in place of one it has",
    "call missing": "every predicted call's tool is in the gold list, but calls are missing",
    "call extra": "every gold call's tool is predicted, plus calls the gold list does not have",
    "wrong arguments": "the right tools, with an argument missing, added or of another value",
    "wrong order": "the right calls in another order",
}
"""The kinds of miss :func:`classify_failure` tells apart, in the order a report lists them."""


@lru_cache(maxsize=65536)
def canonical_smiles(smiles: Any) -> Any:
    """RDKit canonical SMILES of ``smiles``; the input unchanged without RDKit or when unparsable."""
    if not isinstance(smiles, str) or not is_rdkit_available():
        return smiles
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    molecule = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(molecule) if molecule is not None else smiles


def _value_key(value: Any) -> Hashable:
    """A hashable form of a JSON value where numbers compare numerically and lists as multisets."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list):
        return ("list", tuple(sorted((_value_key(v) for v in value), key=repr)))
    if isinstance(value, dict):
        return ("object", tuple(sorted((str(k), _value_key(v)) for k, v in value.items())))
    return ("null",) if value is None else ("other", repr(value))


def comparable_calls(
    calls: Iterable[Mapping[str, Any]],
    registry: ToolRegistry,
    *,
    canonical_molecule: Callable[[str], str] | None = canonical_smiles,
) -> list[tuple[Any, ...]]:
    """Normalize calls into hashable keys that are equal exactly when the contract says so.

    Parameters
    ----------
    calls
        ``{"name", "arguments"}`` objects (anything else becomes a key that matches nothing).
    registry
        The domain's tools (defaults, molecule arguments).
    canonical_molecule
        Maps a SMILES to its canonical form; None compares molecules as written.

    Returns
    -------
    list of tuple
        One ``(name, ((argument, value key), ...))`` per call, in order.
    """
    keys = []
    for call in calls:
        if not isinstance(call, Mapping) or not isinstance(call.get("arguments", {}), Mapping):
            keys.append(("<malformed>", repr(call)))
            continue
        try:
            normalized = registry.normalize_call(call, canonical_molecule=canonical_molecule)
        except (TypeError, ValueError, AttributeError):  # a molecule argument of the wrong type
            normalized = registry.normalize_call(call)
        name, arguments = normalized["name"], dict(normalized["arguments"])
        for argument, (other, default, counts_when) in CONDITIONAL_ARGUMENTS.get(name, {}).items():
            if argument in arguments and arguments.get(other, default) not in counts_when:
                del arguments[argument]
        items = {arg: _value_key(value) for arg, value in arguments.items()}
        pair = UNORDERED_ARGUMENTS.get(name)
        if pair and pair[0] in items and pair[1] in items:
            items["|".join(pair)] = ("pair", tuple(sorted((items.pop(pair[0]), items.pop(pair[1])), key=repr)))
        keys.append((name, tuple(sorted(items.items()))))
    return keys


def classify_failure(gold_keys: Sequence[tuple[Any, ...]], predicted_keys: Sequence[tuple[Any, ...]],
                     *, well_formed: bool = True) -> tuple[str, list[str]]:
    """Why a prediction misses its gold call list: one of :data:`FAILURE_KINDS`, and the slots.

    Parameters
    ----------
    gold_keys, predicted_keys
        The two call lists as :func:`comparable_calls` keys; they must differ.
    well_formed
        False when the prediction was not a valid call list (its calls are then ignored).

    Returns
    -------
    tuple
        The kind, and the ``tool.argument`` slots whose value differs between a gold call and a
        predicted call of the same tool (calls equal on both sides set aside first, the rest
        paired per tool in order), sorted.
    """
    if not well_formed:
        return "not a call list", []
    gold_count, predicted_count = Counter(gold_keys), Counter(predicted_keys)
    unmatched_gold = list((gold_count - predicted_count).elements())
    unmatched_predicted = list((predicted_count - gold_count).elements())
    slots: set[str] = set()
    for gold_call in unmatched_gold:
        partner = next((p for p in unmatched_predicted if p[0] == gold_call[0]), None)
        if partner is None:
            continue
        unmatched_predicted.remove(partner)
        if gold_call[0] == "<malformed>":
            continue
        gold_args, predicted_args = dict(gold_call[1]), dict(partner[1])
        slots.update(f"{gold_call[0]}.{argument}" for argument in gold_args.keys() | predicted_args.keys()
                     if gold_args.get(argument) != predicted_args.get(argument))
    gold_tools = Counter(key[0] for key in gold_keys)
    predicted_tools = Counter(key[0] for key in predicted_keys)
    if gold_tools == predicted_tools:
        kind = "wrong order" if gold_count == predicted_count else "wrong arguments"
    elif not predicted_tools - gold_tools:
        kind = "call missing"
    elif not gold_tools - predicted_tools:
        kind = "call extra"
    else:
        kind = "wrong tool"
    return kind, sorted(slots)


@dataclass
class Scores:
    """Counts of matched, predicted and gold calls, with precision, recall and F1."""

    matched: int = 0
    predicted: int = 0
    gold: int = 0

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else (1.0 if not self.gold else 0.0)

    @property
    def recall(self) -> float:
        return self.matched / self.gold if self.gold else (1.0 if not self.predicted else 0.0)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4),
                "matched": self.matched, "predicted": self.predicted, "gold": self.gold}


@dataclass
class EvaluationReport:
    """Metrics of one system's predictions against the gold call lists."""

    n: int = 0
    exact: int = 0
    calls: Scores = field(default_factory=Scores)
    per_tool: dict[str, Scores] = field(default_factory=dict)
    errors: int = 0  # predictions carrying an "error" (not a valid call list)
    missing: int = 0  # gold ids without a prediction (scored as [])
    schema_valid: int = 0  # predictions whose every call fits its tool's schema
    sources: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # misses per kind of FAILURE_KINDS
    wrong_arguments: Counter[str] = field(default_factory=Counter)  # misses per "tool.argument"
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exact_match(self) -> float:
        return self.exact / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "n": self.n,
            "exact_match": round(self.exact_match, 4),
            "calls": self.calls.to_dict(),
            "per_tool": {name: s.to_dict() for name, s in sorted(self.per_tool.items())},
            "well_formed_rate": round((self.n - self.errors - self.missing) / self.n, 4) if self.n else 0.0,
            "schema_valid_rate": round(self.schema_valid / self.n, 4) if self.n else 0.0,
            "errors": self.errors,
            "missing": self.missing,
            "sources": dict(self.sources),
            "failures": {kind: self.failures[kind] for kind in FAILURE_KINDS if self.failures[kind]},
            "wrong_arguments": dict(self.wrong_arguments.most_common()),
            "mismatches": self.mismatches,
        }


def evaluate_predictions(
    predictions: Iterable[Mapping[str, Any]],
    gold: Iterable[Mapping[str, Any]],
    registry: ToolRegistry,
    *,
    canonical_molecule: Callable[[str], str] | None = canonical_smiles,
    max_mismatches: int = 50,
) -> EvaluationReport:
    """Score predictions (``{"id", "calls", "error"?, "source"?}``) against gold records by id.

    Every gold record counts once; a gold id without a prediction is scored as an empty call
    list. Predictions for ids not in the gold set are ignored.
    """
    by_id: dict[str, Mapping[str, Any]] = {}
    for prediction in predictions:
        by_id.setdefault(str(prediction.get("id")), prediction)
    report = EvaluationReport()
    for record in gold:
        report.n += 1
        gold_calls = record_calls(record)
        prediction = by_id.get(str(record.get("id")))
        if prediction is None:
            report.missing += 1
            predicted: Any = []
        else:
            predicted = prediction.get("calls")
            if prediction.get("error") or not isinstance(predicted, list):
                report.errors += 1
                predicted = predicted if isinstance(predicted, list) else []
            if "source" in prediction:
                report.sources[str(prediction["source"])] += 1
        if prediction is not None and not prediction.get("error") and all(
            isinstance(c, Mapping) and not registry.validate_call(c) for c in predicted
        ):
            report.schema_valid += 1
        gold_keys = comparable_calls(gold_calls, registry, canonical_molecule=canonical_molecule)
        pred_keys = comparable_calls(predicted, registry, canonical_molecule=canonical_molecule)
        if gold_keys == pred_keys:
            report.exact += 1
        else:
            well_formed = prediction is not None and not prediction.get("error") and isinstance(
                prediction.get("calls"), list)
            kind, slots = classify_failure(gold_keys, pred_keys, well_formed=well_formed)
            report.failures[kind] += 1
            report.wrong_arguments.update(slots)
            if len(report.mismatches) < max_mismatches:
                report.mismatches.append({"id": record.get("id"), "instruction": record.get("instruction"),
                                          "gold": gold_calls, "predicted": predicted, "kind": kind,
                                          **({"arguments": slots} if slots else {}),
                                          **({"error": prediction["error"]} if prediction and prediction.get("error")
                                             else {})})
        gold_count, pred_count = Counter(gold_keys), Counter(pred_keys)
        matched = gold_count & pred_count
        report.calls.matched += sum(matched.values())
        report.calls.predicted += len(pred_keys)
        report.calls.gold += len(gold_keys)
        for counter, attribute in ((matched, "matched"), (pred_count, "predicted"), (gold_count, "gold")):
            for key, count in counter.items():
                scores = report.per_tool.setdefault(str(key[0]), Scores())
                setattr(scores, attribute, getattr(scores, attribute) + count)
    return report


def compare_systems(
    systems: Mapping[str, Iterable[Mapping[str, Any]]],
    gold: Sequence[Mapping[str, Any]],
    registry: ToolRegistry,
    **kwargs: Any,
) -> dict[str, EvaluationReport]:
    """:func:`evaluate_predictions` for each named system (e.g. parser, model, parser+model)."""
    return {name: evaluate_predictions(preds, gold, registry, **kwargs) for name, preds in systems.items()}


def parser_predictions(grammar: Any, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The grammar parser's calls for each record's instruction (``[]`` plus error when it fails)."""
    out = []
    for record in records:
        try:
            calls = [dict(c) for c in grammar.parse(str(record["instruction"])).calls]
            out.append({"id": record.get("id"), "calls": calls, "source": "parser"})
        except (GrammarEngineError, ValueError) as exc:
            out.append({"id": record.get("id"), "calls": [], "error": f"parser: {exc}".splitlines()[0],
                        "source": "parser"})
    return out


def read_gold(path: str | Path) -> list[dict[str, Any]]:
    """Gold records with calls from a ``recorded.jsonl`` or a corpus shard.

    Lines are read by :func:`grammar_engine.recordings.read_instructions`. Lines without calls
    (instructions not yet labelled) are skipped; a line it rejects raises ``ValueError`` naming
    the line and the reason (scoring against a silently shortened gold set would mislead).
    """
    records = []
    for item in read_recordings(path, require_calls=True):
        if isinstance(item, Rejected):
            raise ValueError(f"{path}: {item}")
        record = dict(item.raw)
        if item.calls is None and not record.get("messages"):
            continue
        record.setdefault("id", f"line-{item.line}")
        record["calls"] = record_calls(record)
        records.append(record)
    return records


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Prediction records of a ``predict`` output; unreadable lines become error records."""
    out = []
    for number, record, error in iter_jsonl(path):
        if error or not isinstance(record, dict):
            out.append({"id": f"line-{number}", "calls": [], "error": error or "not an object"})
        else:
            out.append(record)
    return out


def format_table(reports: Mapping[str, EvaluationReport]) -> str:
    """A fixed-width comparison table of systems (exact match, P/R/F1, validity)."""
    lines = [f"{'system':<16} {'n':>6} {'exact':>7} {'prec':>7} {'recall':>7} {'f1':>7} {'valid':>7} {'errors':>7}"]
    for name, report in reports.items():
        data = report.to_dict()
        lines.append(
            f"{name:<16} {report.n:>6} {report.exact_match:>7.3f} {report.calls.precision:>7.3f} "
            f"{report.calls.recall:>7.3f} {report.calls.f1:>7.3f} {data['schema_valid_rate']:>7.3f} "
            f"{report.errors:>7}"
        )
    return "\n".join(lines)


def format_failures(reports: Mapping[str, EvaluationReport], *, top_arguments: int = 5) -> str:
    """A fixed-width table of each system's misses per kind, then its most often wrong arguments."""
    width = max(len(kind) for kind in FAILURE_KINDS)
    names = list(reports)
    lines = [f"{'misses by kind':<{width}} " + " ".join(f"{name[:14]:>14}" for name in names)]
    for kind in FAILURE_KINDS:
        lines.append(f"{kind:<{width}} " + " ".join(f"{reports[name].failures[kind]:>14}" for name in names))
    for name in names:
        common = reports[name].wrong_arguments.most_common(top_arguments)
        if common:
            lines.append(f"{name}, wrong arguments: " + ", ".join(f"{slot} {count}" for slot, count in common))
    return "\n".join(lines)


def write_report(path: str | Path, reports: Mapping[str, EvaluationReport], **extra: Any) -> Path:
    """Write ``{"systems": {name: report}, **extra}`` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**extra, "systems": {name: r.to_dict() for name, r in reports.items()}}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
