"""Batched generation of call lists from instructions; bad output or input never crashes a run.

Each input line ``{"id", "instruction"}`` gives exactly one output line ``{"id", "calls"}``, in
the same order. When the output is not a valid call list, or the input line is unreadable,
the record gets ``"calls": []`` and an ``"error"`` saying why. Calls that parse but do not fit
their tool's schema are kept and listed under ``"schema_errors"`` (partial credit still counts
in call-level scores).

``with_parser`` mode asks the grammar parser first and the model only for the instructions the
parser rejects; each record then says which one answered (``"source": "parser" | "model"``).
``constrained`` mode masks the model's logits so that it can only write a schema-valid call
list (:mod:`training.constrained`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grammar_engine.errors import GrammarEngineError
from grammar_engine.grammar import normalize_instruction
from grammar_engine.recordings import Rejected
from grammar_engine.recordings import read_instructions as read_recordings
from grammar_engine.tools import ToolRegistry

from ._imports import require
from .config import DecodeConfig
from .data import chat_prompt, extract_calls, plain_prompt, registry_from_definitions
from .molecule_names import MoleculeNames
from .value_placeholders import Span, ValuePlaceholders

__all__ = ["PredictSummary", "Predictor", "load_domain_registry", "load_parser", "predict_file", "read_instructions"]

logger = logging.getLogger(__name__)


def load_domain_registry(domain_dir: str | Path) -> ToolRegistry:
    """The tools of a domain folder: its ``tools.json``, else ``grammar_engine.load(dir).tools``."""
    domain_dir = Path(domain_dir)
    if (domain_dir / "tools.json").is_file():
        return ToolRegistry.from_file(domain_dir / "tools.json")
    return load_parser(domain_dir).tools


def load_parser(domain_dir: str | Path) -> Any:
    """The domain's grammar (``grammar_engine.load``), whose ``parse(text).calls`` gives calls."""
    import grammar_engine

    load = getattr(grammar_engine, "load", None)
    if load is None:
        raise ImportError("grammar_engine.load is not available in this version of grammar-engine")
    return load(domain_dir)


@dataclass
class PredictSummary:
    """Counts of one ``predict`` run."""

    n: int = 0
    errors: int = 0
    bad_input: int = 0
    from_parser: int = 0
    seconds: float = 0.0
    constrained_overhead_ms_per_token: float | None = None
    bad_lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.n} predictions ({self.errors} invalid, {self.bad_input} bad input lines, "
                f"{self.from_parser} from the parser) in {self.seconds:.1f}s")
        if self.constrained_overhead_ms_per_token is not None:
            text += f"; constrained decoding {self.constrained_overhead_ms_per_token:.3f} ms/token"
        return text


class Predictor:
    """A trained model ready to turn instructions into call lists.

    Parameters
    ----------
    model, tokenizer
        The causal LM and its tokenizer (padded on the left for batched generation).
    info
        ``model_info.json`` of MODEL_DIR: prompt format, tools, longest training target.
    decode
        Batch size, token budget, threads.
    registry
        The domain's tools: checks outputs, drives constrained decoding.
    constrained
        Mask logits so that only schema-valid call lists can be written (plain format only).
    parser
        An object with ``parse(text) -> .calls``, asked before the model (``with_parser``).
    recover
        When the parser is a grammar and an instruction does not parse, try the grammar's reading
        with a few words skipped (``source: "parser-recovered"``, with the skipped words) before
        the model.
    """

    def __init__(self, model: Any, tokenizer: Any, *, info: dict[str, Any] | None = None,
                 decode: DecodeConfig | None = None, registry: ToolRegistry | None = None,
                 constrained: bool = False, parser: Any = None, recover: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.info = info or {}
        self.decode = decode or DecodeConfig()
        if registry is None and self.info.get("tools"):
            registry = registry_from_definitions(self.info["tools"], self.info.get("domain", ""))
        self.registry = registry
        self.prompt_format = self.info.get("prompt_format") or ("chat" if getattr(tokenizer, "chat_template", None)
                                                                 else "plain")
        self.parser = parser
        self.recover = recover
        # molecules the model writes by name (see training.molecule_names) are read back as SMILES
        names = self.info.get("molecules")
        self.molecules = MoleculeNames(names) if names and self.prompt_format == "plain" else None
        # numbers, paths and symbols the model refers to by placeholder (see training.value_placeholders)
        masks = self.info.get("value_placeholders")
        self.placeholders = ValuePlaceholders.from_dict(masks) if masks and self.prompt_format == "plain" else None
        self.constrained = None
        if constrained:
            if registry is None:
                raise ValueError("constrained decoding needs the domain's tools (pass a domain directory)")
            if self.prompt_format != "plain":
                raise ValueError("constrained decoding supports the plain prompt format only; this model was "
                                 "trained with its chat template")
            from .constrained import ConstrainedDecoder

            self.constrained = ConstrainedDecoder(registry, tokenizer, allow_empty=self.decode.allow_empty,
                                                  placeholders=self.placeholders is not None)
        self.generated_tokens = 0

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, decode: DecodeConfig | None = None,
                        constrained_domain: str | Path | None = None,
                        parser_domain: str | Path | None = None) -> Predictor:
        """Load MODEL_DIR; a domain folder enables constrained decoding and/or the parser."""
        require("torch", "transformers", purpose="prediction")
        from .modeling import load_trained

        decode = decode or DecodeConfig()
        if decode.num_threads:
            import torch

            torch.set_num_threads(decode.num_threads)
        model, tokenizer, info = load_trained(model_dir)
        registry = load_domain_registry(constrained_domain) if constrained_domain else None
        parser = load_parser(parser_domain) if parser_domain else None
        if registry is None and parser is not None:
            registry = getattr(parser, "tools", None)
        return cls(model, tokenizer, info=info, decode=decode, registry=registry,
                   constrained=constrained_domain is not None, parser=parser)

    @property
    def max_new_tokens(self) -> int:
        if self.decode.max_new_tokens is not None:
            return self.decode.max_new_tokens
        longest = self.info.get("max_target_tokens")
        return int(longest * 1.5) + 16 if longest else 256

    def _prompt(self, instruction: str) -> tuple[str, list[Span]]:
        """The prompt of an instruction, and the spans its placeholders stand for."""
        if self.prompt_format == "chat":
            return chat_prompt(self.tokenizer, instruction, self.info.get("tools")), []
        # normalized (and masked) as in training (training.data.plain_example): one space between
        # words, no closing punctuation
        text = normalize_instruction(instruction)
        spans: list[Span] = []
        if self.placeholders is not None:
            text, spans = self.placeholders.mask(text)
        return plain_prompt(text), spans

    def _result(self, text: str, spans: Sequence[Span] = ()) -> dict[str, Any]:
        if spans:
            text = ValuePlaceholders.restore(text, spans)
        try:
            calls = extract_calls(text, self.prompt_format)
        except ValueError as exc:
            return {"calls": [], "error": f"invalid output: {exc}", "output": text[:500]}
        if self.molecules is not None and self.registry is not None:
            calls = self.molecules.resolve(calls, self.registry)
        result: dict[str, Any] = {"calls": calls}
        if self.registry is not None:
            problems = [p for call in calls for p in self.registry.validate_call(call)]
            if problems:
                result["schema_errors"] = problems
        return result

    def _generate(self, instructions: Sequence[str]) -> list[dict[str, Any]]:
        import torch

        tokenizer = self.tokenizer
        prompts, spans = zip(*(self._prompt(text) for text in instructions))
        budget = self.max_new_tokens
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        encoded = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        if limit and encoded["input_ids"].shape[1] + budget > limit:
            # generate what fits in the model's positions; an output cut short is reported as invalid
            budget = limit - encoded["input_ids"].shape[1]
            if budget < 8:
                raise ValueError(f"prompt of {encoded['input_ids'].shape[1]} tokens leaves no room in the "
                                 f"model's {limit} positions")
        device = next(self.model.parameters()).device
        encoded = {k: v.to(device) for k, v in encoded.items()}
        eos = tokenizer.eos_token_id
        kwargs: dict[str, Any] = {
            "max_new_tokens": budget, "do_sample": False, "num_beams": 1,
            "eos_token_id": eos, "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        }
        if self.constrained is not None:
            kwargs["logits_processor"] = [self.constrained.logits_processor(
                budget, [[span.number for span in row] for row in spans])]
        with torch.inference_mode():
            output = self.model.generate(**encoded, **kwargs)
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        results = []
        for row, row_spans in zip(new_tokens.tolist(), spans):
            if eos in row:
                row = row[:row.index(eos)]
            self.generated_tokens += len(row) + 1
            results.append(self._result(tokenizer.decode(row, skip_special_tokens=True,
                                                         clean_up_tokenization_spaces=False), row_spans))
        return results

    def _model_predictions(self, instructions: Sequence[str]) -> list[dict[str, Any]]:
        """Generate in batches; a failing batch is retried one by one, a failing item gets an error."""
        results: list[dict[str, Any]] = []
        size = self.decode.batch_size
        for start in range(0, len(instructions), size):
            batch = instructions[start:start + size]
            try:
                results.extend(self._generate(batch))
            except Exception as exc:  # noqa: BLE001 - one bad batch must not end the run
                logger.warning("batch at %d failed (%s); retrying one by one", start, exc)
                for text in batch:
                    try:
                        results.extend(self._generate([text]))
                    except Exception as item_exc:  # noqa: BLE001
                        results.append({"calls": [], "error": f"generation failed: {item_exc}"})
        return results

    def _recover(self, text: str) -> dict[str, Any] | None:
        """The grammar's reading of ``text`` with a few words skipped, or None (see grammar_engine.recovery)."""
        from grammar_engine import Grammar
        from grammar_engine.recovery import parse_with_recovery

        if not self.recover or not isinstance(self.parser, Grammar):
            return None
        try:
            recovered = parse_with_recovery(self.parser, text)
        except (GrammarEngineError, ValueError):
            return None
        return {"calls": [dict(c) for c in recovered.calls], "source": "parser-recovered",
                "skipped": [w.to_dict() for w in recovered.skipped]}

    def predict(self, instructions: Sequence[str]) -> list[dict[str, Any]]:
        """One ``{"calls", "error"?, "schema_errors"?, "source"?}`` per instruction, in order."""
        results: list[dict[str, Any] | None] = [None] * len(instructions)
        pending = list(range(len(instructions)))
        if self.parser is not None:
            pending = []
            for index, text in enumerate(instructions):
                try:
                    calls = [dict(c) for c in self.parser.parse(text).calls]
                    results[index] = {"calls": calls, "source": "parser"}
                except (GrammarEngineError, ValueError):
                    recovered = self._recover(text)
                    if recovered is None:
                        pending.append(index)
                    else:
                        results[index] = recovered
        for index, result in zip(pending, self._model_predictions([instructions[i] for i in pending])):
            if self.parser is not None:
                result["source"] = "model"
            results[index] = result
        return [r if r is not None else {"calls": [], "error": "no prediction"} for r in results]


def read_instructions(path: str | Path) -> list[tuple[str, str | None, str | None]]:
    """``(id, instruction, error)`` per line of a predict input file, blank lines included.

    Lines are read by :func:`grammar_engine.recordings.read_instructions`; a line it rejects
    (not UTF-8, not JSON, no ``instruction`` string, blank, oversized) gets ``instruction=None``
    and an error. The id is the record's own when readable, else ``line-N``.
    """
    rows: list[tuple[str, str | None, str | None]] = []
    for item in read_recordings(path):
        record_id = str(item.id) if item.id is not None else f"line-{item.line}"
        if isinstance(item, Rejected):
            rows.append((record_id, None, f"bad input line {item.line}: {item.reason}"))
        else:
            rows.append((record_id, item.instruction, None))
    return rows


def predict_file(predictor: Predictor, input_path: str | Path, output_path: str | Path) -> PredictSummary:
    """Predict every line of ``input_path`` into ``output_path`` (one output line per input line)."""
    start = time.perf_counter()
    rows = read_instructions(input_path)
    summary = PredictSummary(n=len(rows))
    good = [(i, text) for i, (_, text, _) in enumerate(rows) if text is not None]
    predictions = predictor.predict([text for _, text in good]) if good else []
    by_row = {i: p for (i, _), p in zip(good, predictions)}
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "w", encoding="utf-8") as handle:
        for i, (record_id, _, error) in enumerate(rows):
            record: dict[str, Any] = {"id": record_id}
            if error is not None:
                summary.bad_input += 1
                summary.bad_lines.append(error)
                record.update({"calls": [], "error": error})
            else:
                record.update(by_row[i])
            if record.get("error"):
                summary.errors += 1
            if record.get("source") == "parser":
                summary.from_parser += 1
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    summary.seconds = time.perf_counter() - start
    if predictor.constrained is not None and predictor.generated_tokens:
        stats = predictor.constrained.stats
        summary.constrained_overhead_ms_per_token = 1000 * stats["seconds"] / predictor.generated_tokens
    return summary
