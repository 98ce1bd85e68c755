"""Executors: run a domain's tool calls for real (RDKit for ``chem``, scanpy for ``singlecell``).

A call list in the JSON form of the tool contract runs in order inside one working directory::

    >>> from grammar_engine.executors import run_calls
    >>> run_calls("chem", [{"name": "molecular_weight", "arguments": {"molecule": "aspirin"}}],
    ...           "/tmp/work")  # doctest: +SKIP
    [{'name': 'molecular_weight', 'result': 180.159}]

The heavy libraries are imported lazily, when a domain first runs, so ``grammar_engine`` itself
imports without them; :func:`is_available` says whether a domain can run here.

Every path argument is resolved against the working directory, and a path that would leave it
(an absolute path elsewhere, ``..``, a symbolic link pointing out) is refused: executing a sampled
corpus never writes outside the folder it was given.

Adding a domain touches these places: a module here with a ``Session`` class (``__init__(workdir)``,
``tool_names()``, ``call(index, name, arguments)``), an entry in ``_DOMAINS``, its extra in
``pyproject.toml``, and its ``grammars/<domain>/tools.json``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import math
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from ..errors import GrammarEngineError

__all__ = [
    "ExecutionError",
    "available_domains",
    "format_results",
    "is_available",
    "resolve_path",
    "run_calls",
    "tool_names",
]

# domain -> (executor module, modules it needs, the pip extra that installs them)
_DOMAINS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "chem": ("grammar_engine.executors.chem", ("rdkit", "selfies"), "chem"),
    "singlecell": (
        "grammar_engine.executors.singlecell",
        ("scanpy", "anndata", "leidenalg", "igraph", "matplotlib"),
        "singlecell",
    ),
}


class ExecutionError(GrammarEngineError, RuntimeError):
    """A tool call could not run.

    Attributes
    ----------
    index
        0-based position of the failing call in its list (None outside a list).
    tool
        The tool name (None when the call has none).
    reason
        Why it failed, in words; the original exception, if any, is the ``__cause__``.
    hint
        What to change, when there is an obvious fix.
    """

    def __init__(
        self, reason: str, *, index: int | None = None, tool: str | None = None, hint: str = ""
    ) -> None:
        self.reason = reason
        self.index = index
        self.tool = tool
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.index is not None:
            where = f"call {self.index + 1}"
            if self.tool:
                where += f" ({self.tool})"
            where += ": "
        elif self.tool:
            where = f"{self.tool}: "
        text = where + self.reason
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def located(self, index: int, tool: str | None) -> ExecutionError:
        """A copy of this error that names the call it happened in."""
        error = ExecutionError(self.reason, index=index, tool=tool or self.tool, hint=self.hint)
        error.__cause__ = self.__cause__
        return error


class _Session(Protocol):
    def tool_names(self) -> list[str]: ...

    def call(self, index: int, name: str, arguments: Mapping[str, Any]) -> Any: ...


# -- availability ------------------------------------------------------------------------------


def available_domains() -> list[str]:
    """The domains that have an executor, whether or not their libraries are installed.

    Examples
    --------
    >>> available_domains()
    ['chem', 'singlecell']
    """
    return sorted(_DOMAINS)


@lru_cache(maxsize=None)
def is_available(domain: str) -> bool:
    """Whether the libraries that ``domain`` runs on can be imported here.

    Only looks the modules up (``importlib.util.find_spec``); nothing heavy is imported.
    """
    _check_domain(domain)
    return all(importlib.util.find_spec(module) is not None for module in _DOMAINS[domain][1])


def _check_domain(domain: str) -> None:
    if domain not in _DOMAINS:
        raise ExecutionError(
            f"no executor for domain {domain!r}",
            hint=f"the domains with executors are {available_domains()}",
        )


def _load_module(domain: str) -> Any:
    _check_domain(domain)
    module_name, needs, extra = _DOMAINS[domain]
    hint = f"pip install 'grammar-engine[{extra}]'"
    missing = [module for module in needs if importlib.util.find_spec(module) is None]
    if missing:
        raise ExecutionError(
            f"the {domain} executor needs {', '.join(missing)}, which cannot be imported", hint=hint
        )
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:  # installed but broken (a missing shared library, a bad version)
        raise ExecutionError(f"the {domain} executor cannot import its libraries: {exc}", hint=hint) from exc


def tool_names(domain: str) -> list[str]:
    """The tools the executor of ``domain`` can run (imports the domain's libraries)."""
    return sorted(_load_module(domain).TOOLS)


# -- paths -------------------------------------------------------------------------------------


def resolve_path(workdir: str | Path, value: str, *, argument: str = "path") -> Path:
    """Resolve a path argument inside ``workdir``, refusing any path that leaves it.

    Parameters
    ----------
    workdir
        The working directory of the run.
    value
        The path as the call gives it, relative to ``workdir`` (absolute paths are accepted only
        when they point inside it).
    argument
        The argument name, for the error message.

    Returns
    -------
    Path
        The absolute, symlink-free path.

    Raises
    ------
    ExecutionError
        When the path is empty or resolves outside ``workdir``.
    """
    if not isinstance(value, str) or not value.strip():
        raise ExecutionError(f"{argument} must be a non-empty path, got {value!r}")
    root = Path(workdir).resolve()
    candidate = Path(value).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if resolved != root and not resolved.is_relative_to(root):
        raise ExecutionError(
            f"{argument} {value!r} points outside the working directory {str(root)!r}",
            hint="give a path relative to the working directory, without '..'",
        )
    return resolved


def relative_to_workdir(workdir: str | Path, path: Path) -> str:
    """``path`` relative to ``workdir``, with forward slashes (for results)."""
    return path.resolve().relative_to(Path(workdir).resolve()).as_posix()


# -- running -----------------------------------------------------------------------------------


def check_arguments(function: Callable[..., Any], tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Drop null arguments and check the rest against ``function``'s keyword parameters."""
    args = {name: value for name, value in arguments.items() if value is not None}
    params = inspect.signature(function).parameters
    accepted = [name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = [name for name in args if name not in accepted]
    if unknown:
        raise ExecutionError(
            f"{tool} has no argument {unknown[0]!r}",
            hint=f"its arguments are {accepted}" if accepted else f"{tool} takes no arguments",
        )
    missing = [
        name for name in accepted
        if params[name].default is inspect.Parameter.empty and name not in args
    ]
    if missing:
        raise ExecutionError(f"{tool} is missing required argument {missing[0]!r}")
    return args


def to_json(value: Any) -> Any:
    """Make a result JSON-serializable: numpy scalars and arrays, tuples, paths, NaN."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return to_json(value.tolist())
    if hasattr(value, "item"):
        return to_json(value.item())
    return str(value)


def run_calls(domain: str, calls: Iterable[Mapping[str, Any]], workdir: str | Path) -> list[dict[str, Any]]:
    """Execute a call list in order and return one result per call.

    Parameters
    ----------
    domain
        ``"chem"`` or ``"singlecell"`` (see :func:`available_domains`).
    calls
        Calls in the JSON form of the tool contract: ``{"name": ..., "arguments": {...}}``.
        Arguments left out take the contract default; ``null`` arguments are dropped.
    workdir
        The folder every path argument is resolved against (created if missing). Nothing is
        written outside it.

    Returns
    -------
    list of dict
        ``{"name": tool, "result": value}`` per call, JSON-serializable: numbers for descriptors,
        objects for multi-valued results, paths relative to ``workdir`` for written files.

    Raises
    ------
    ExecutionError
        At the first call that fails, naming its position, tool and reason. When the domain's
        libraries are missing, the message says which extra to install.

    Examples
    --------
    >>> results = run_calls("chem", [
    ...     {"name": "tpsa", "arguments": {"molecule": "caffeine"}},
    ...     {"name": "has_substructure", "arguments": {"molecule": "CCO", "group": "alcohol"}},
    ... ], "/tmp/grammar-engine-doctest")  # doctest: +SKIP
    >>> [r["result"] for r in results]  # doctest: +SKIP
    [61.82, True]
    """
    module = _load_module(domain)
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    session: _Session = module.Session(root)
    results: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        name = call.get("name") if isinstance(call, Mapping) else None
        if not isinstance(name, str):
            raise ExecutionError(f"a call must be an object with a 'name', got {call!r}", index=index)
        arguments = call.get("arguments") or {}
        if not isinstance(arguments, Mapping):
            raise ExecutionError("'arguments' must be an object", index=index, tool=name)
        try:
            result = session.call(index, name, arguments)
        except ExecutionError as exc:
            raise exc.located(index, name) from exc.__cause__
        except Exception as exc:  # a library failed: report it as this call's failure
            raise ExecutionError(f"{type(exc).__name__}: {exc}", index=index, tool=name) from exc
        results.append({"name": name, "result": to_json(result)})
    return results


def unknown_tool(domain: str, name: str, known: Iterable[str]) -> ExecutionError:
    """The error for a tool the executor does not have, with close matches."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ExecutionError(f"the {domain} executor has no tool {name!r}", tool=name, hint=hint)


# -- printing ----------------------------------------------------------------------------------


def _short(value: Any, width: int = 100) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e6 else f"{value:.4f}".rstrip("0").rstrip(".")
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def _lines(value: Any, indent: int) -> list[str]:
    """Indented lines for one object or list-of-objects value."""
    pad = " " * indent
    if isinstance(value, Mapping):
        lines = []
        for key, item in value.items():
            if _is_records(item):
                lines.append(f"{pad}{key}: ({len(item)})")
                lines += _lines(item, indent + 2)
            else:
                lines.append(f"{pad}{key}: {_short(item)}")
        return lines
    shown = list(value)[:_MAX_RECORDS]
    lines = [f"{pad}- " + ", ".join(f"{k}={_short(v, 40)}" for k, v in record.items()) for record in shown]
    if len(value) > len(shown):
        lines.append(f"{pad}  ... {len(value) - len(shown)} more")
    return lines


_MAX_RECORDS = 20


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def format_results(results: Iterable[Mapping[str, Any]]) -> str:
    """A human-readable printout of :func:`run_calls` results, one block per call.

    Scalars print on the call's line; objects print one key per indented line, lists of objects
    (search hits, filtered molecules) one object per line, at most 20; long values are shortened.

    Examples
    --------
    >>> print(format_results([{"name": "molecular_weight", "result": 180.159},
    ...                       {"name": "lipinski_rule_of_five", "result": {"passes": True, "violations": 0}}]))
    1. molecular_weight: 180.159
    2. lipinski_rule_of_five
         passes: true
         violations: 0
    """
    lines: list[str] = []
    for number, entry in enumerate(results, start=1):
        name = entry.get("name", "?")
        result = entry.get("result")
        if (isinstance(result, Mapping) and result) or _is_records(result):
            lines.append(f"{number}. {name}")
            lines += _lines(result, 5)
        else:
            lines.append(f"{number}. {name}: {_short(result)}")
    return "\n".join(lines)
