"""Every exception grammar-engine raises.

::

    GrammarEngineError
     ├── GrammarLoadError (ValueError)        a grammar file or folder cannot be loaded
     │    └── GrammarCheckError               one or more static checks failed (holds the Diagnostics)
     ├── ToolBindingError (ValueError)        tool schemas malformed, or a slot names an unknown tool/argument
     ├── InstructionParseError (ValueError)   an instruction is not in the grammar's language
     ├── ValueConversionError (ValueError)    surface text cannot become the argument's JSON value
     ├── SamplingError (RuntimeError)         a sampler cannot produce what was asked
     ├── CorpusFormatError (ValueError)       a JSONL line of recordings or a corpus is malformed
     └── InvalidArgument (TypeError)          a public function got a bad argument

Every error that points into a file carries a :class:`Location` and renders it as
``file:line:column: message`` followed by a hint, the way compilers do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "CorpusFormatError",
    "Diagnostic",
    "GrammarCheckError",
    "GrammarEngineError",
    "GrammarLoadError",
    "InstructionParseError",
    "InvalidArgument",
    "Location",
    "SamplingError",
    "ToolBindingError",
    "ValueConversionError",
]


@dataclass(frozen=True)
class Location:
    """A place in a file: 1-based line and column (0 when unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True)
class Diagnostic:
    """One finding of a check: an error or a warning, with where and how to fix it."""

    severity: str  # "error" or "warning"
    code: str  # short stable label, e.g. "undefined-symbol"
    message: str
    location: Location
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.location}: {self.severity}[{self.code}]: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        """The diagnostic as a JSON-ready mapping."""
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "hint": self.hint,
        }


class GrammarEngineError(Exception):
    """Base class of every error raised by grammar-engine."""


class _LocatedError(GrammarEngineError):
    """An error with an optional location and hint, rendered compiler-style."""

    def __init__(self, message: str, location: Location | None = None, hint: str = "") -> None:
        self.message = message
        self.location = location
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class GrammarLoadError(_LocatedError, ValueError):
    """A grammar file or domain folder cannot be loaded (syntax, imports, missing files)."""

    code = "load"


class GrammarCheckError(GrammarLoadError):
    """Static checks found errors; ``diagnostics`` holds every finding, warnings included."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.severity == "error"]
        first = errors[0] if errors else None
        super().__init__(
            "\n".join(str(d) for d in errors) or "grammar check failed",
            first.location if first else None,
        )

    def __str__(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        return "\n".join(str(d) for d in errors) or "grammar check failed"


class ToolBindingError(_LocatedError, ValueError):
    """Tool schemas are malformed, or a typed nonterminal names an unknown tool or argument."""


class InstructionParseError(_LocatedError, ValueError):
    """An instruction is not in the grammar's language.

    Attributes ``line``/``column`` point into the instruction, ``expected`` lists the terminals
    that would have been accepted, and ``context`` is a caret-marked excerpt.
    """

    def __init__(
        self,
        message: str,
        *,
        text: str = "",
        line: int = 1,
        column: int = 1,
        expected: list[str] | None = None,
        context: str = "",
        hint: str = "",
    ) -> None:
        self.text = text
        self.line = line
        self.column = column
        self.expected = list(expected or [])
        self.context = context
        super().__init__(message, None, hint)

    def __str__(self) -> str:
        text = f"line {self.line}, column {self.column}: {self.message}"
        if self.expected:
            text += "\n    expected one of: " + ", ".join(self.expected[:12])
            if len(self.expected) > 12:
                text += f", ... ({len(self.expected)} in all)"
        if self.context:
            text += "\n" + self.context
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class ValueConversionError(_LocatedError, ValueError):
    """Surface text of a value slot cannot be converted to its argument's JSON type."""


class SamplingError(_LocatedError, RuntimeError):
    """A sampler cannot produce what was asked (no derivation, exhausted budget)."""


class CorpusFormatError(_LocatedError, ValueError):
    """A JSONL line of a recordings file or corpus is malformed."""


class InvalidArgument(_LocatedError, TypeError):
    """A public function was called with a bad argument; the message names it and its value."""


@dataclass
class DiagnosticList:
    """An ordered collection of diagnostics with convenience views."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, location: Location, hint: str = "") -> None:
        self.items.append(Diagnostic("error", code, message, location, hint))

    def warning(self, code: str, message: str, location: Location, hint: str = "") -> None:
        self.items.append(Diagnostic("warning", code, message, location, hint))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]
