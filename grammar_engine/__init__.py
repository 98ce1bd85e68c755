"""grammar-engine: tool-typed Lark grammars that decompose recorded instructions into tool calls
and recombine them into verified instruction-tuning corpora.

>>> import grammar_engine
>>> grammar = grammar_engine.load("grammars/example")
>>> grammar.parse("normalize to 10k then log1p").calls
[{'name': 'normalize', 'arguments': {'target_sum': 10000}}, {'name': 'log1p', 'arguments': {}}]
"""

from __future__ import annotations

__version__ = "0.1.0"

from .checks import CheckReport, check_grammar
from .decompose import DecompositionReport, decompose_file
from .errors import (
    CorpusFormatError,
    Diagnostic,
    GrammarCheckError,
    GrammarEngineError,
    GrammarLoadError,
    InstructionParseError,
    InvalidArgument,
    Location,
    SamplingError,
    ToolBindingError,
    ValueConversionError,
)
from .grammar import Grammar, load, normalize_instruction
from .parsing import Decomposition
from .coverage import CoverageReport
from .recordings import Record, Rejected, read_instructions
from .recovery import Recovered, SkippedWord, parse_with_recovery
from .sampling import Sample, SamplingStrategy
from .tools import ArgumentSpec, ToolRegistry, ToolSchema
from .values import MoleculeLexicon, ValueKind, parse_number

__all__ = [
    "ArgumentSpec",
    "CheckReport",
    "CorpusFormatError",
    "CoverageReport",
    "Decomposition",
    "DecompositionReport",
    "Diagnostic",
    "Grammar",
    "GrammarCheckError",
    "GrammarEngineError",
    "GrammarLoadError",
    "InstructionParseError",
    "InvalidArgument",
    "Location",
    "MoleculeLexicon",
    "Record",
    "Recovered",
    "Rejected",
    "Sample",
    "SamplingError",
    "SamplingStrategy",
    "SkippedWord",
    "ToolBindingError",
    "ToolRegistry",
    "ToolSchema",
    "ValueConversionError",
    "ValueKind",
    "__version__",
    "check_grammar",
    "decompose_file",
    "load",
    "normalize_instruction",
    "parse_number",
    "parse_with_recovery",
    "read_instructions",
]

# Show public names as grammar_engine.X in reprs and tracebacks, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("grammar_engine."):
        try:
            _obj.__module__ = "grammar_engine"
        except (AttributeError, TypeError):
            pass
del _name, _obj
