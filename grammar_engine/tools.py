"""Tool schemas: what tools a domain has, their arguments, defaults, value domains and preconditions.

A domain's ``tools.json`` is data::

    {
      "domain": "chem",
      "tools": [
        {"name": "ring_count", "description": "...",
         "parameters": {"type": "object",
                        "properties": {"molecule": {"type": "string", "format": "smiles"},
                                       "aromatic_only": {"type": "boolean", "default": false}},
                        "required": ["molecule"]},
         "requires": [], "provides": []}
      ],
      "state": ["obs:cell_type"],           # facts true before the first call (optional)
      "values": {"GENE": ["CST3", "NKG7"]}  # value sources for regex terminals (optional)
    }

``parameters`` is plain JSON Schema, so each tool exports unchanged as the function definition
that chat templates and function-calling APIs take (:meth:`ToolRegistry.function_definitions`).
The ``format`` keyword marks molecules (``smiles``) and paths (``path``).

Preconditions are facts: a tool ``requires`` facts and ``provides`` facts; ``{arg}`` in a fact is
replaced by that argument's value (``"obs:{groupby}"``).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Location, ToolBindingError
from .values import ValueKind

__all__ = ["ArgumentSpec", "ToolCall", "ToolRegistry", "ToolSchema"]

ToolCall = dict[str, Any]
"""A call in the JSON form of the contract: ``{"name": str, "arguments": {arg: value}}``."""

_JSON_TYPES = {"integer", "number", "boolean", "string", "array"}


@dataclass(frozen=True)
class ArgumentSpec:
    """One argument of a tool, read from its JSON Schema property."""

    name: str
    schema: Mapping[str, Any]
    required: bool

    @property
    def kind(self) -> ValueKind:
        """The value kind that converts surface text to this argument's JSON value."""
        kind_name = self.schema.get("type")
        if kind_name == "integer":
            return ValueKind.INT
        if kind_name == "number":
            return ValueKind.NUMBER
        if kind_name == "boolean":
            return ValueKind.BOOL
        if kind_name == "array":
            item = self.schema.get("items", {})
            return ValueKind.MOLECULE_LIST if item.get("format") == "smiles" else ValueKind.STR_LIST
        if "enum" in self.schema:
            return ValueKind.ENUM
        fmt = self.schema.get("format")
        if fmt == "smiles":
            return ValueKind.MOLECULE
        if fmt == "path":
            return ValueKind.PATH
        return ValueKind.STR

    @property
    def enum(self) -> list[str] | None:
        """The allowed values of an enum argument (or of its items), else None."""
        values = self.schema.get("enum") or self.schema.get("items", {}).get("enum")
        return list(values) if values else None

    @property
    def has_default(self) -> bool:
        return "default" in self.schema

    @property
    def default(self) -> Any:
        return self.schema.get("default")

    @property
    def minimum(self) -> float | None:
        return self.schema.get("minimum")

    @property
    def maximum(self) -> float | None:
        return self.schema.get("maximum")

    def validate(self, value: Any) -> str | None:
        """Return why ``value`` does not fit this argument, or None when it does."""
        kind = self.kind
        if kind is ValueKind.INT:
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            ):
                return f"{self.name} must be an integer, got {value!r}"
        elif kind is ValueKind.NUMBER:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"{self.name} must be a number, got {value!r}"
        elif kind is ValueKind.BOOL:
            if not isinstance(value, bool):
                return f"{self.name} must be true or false, got {value!r}"
        elif kind.is_list:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                return f"{self.name} must be a non-empty list of strings, got {value!r}"
        elif not isinstance(value, str) or not value:
            return f"{self.name} must be a non-empty string, got {value!r}"
        enum = self.enum
        if enum is not None:
            values = value if isinstance(value, list) else [value]
            bad = [v for v in values if v not in enum]
            if bad:
                return f"{self.name} must be one of {enum}, got {bad[0]!r}"
        if kind in (ValueKind.INT, ValueKind.NUMBER):
            if self.minimum is not None and value < self.minimum:
                return f"{self.name} must be >= {self.minimum}, got {value!r}"
            if self.maximum is not None and value > self.maximum:
                return f"{self.name} must be <= {self.maximum}, got {value!r}"
        return None


@dataclass(frozen=True)
class ToolSchema:
    """A tool: its name, description, JSON Schema parameters and preconditions."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    forbids: tuple[str, ...] = ()
    location: Location | None = None

    @property
    def arguments(self) -> dict[str, ArgumentSpec]:
        """Every argument by name, in schema order."""
        required = set(self.parameters.get("required", ()))
        props = self.parameters.get("properties", {})
        return {name: ArgumentSpec(name, spec, name in required) for name, spec in props.items()}

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", ()))

    def function_definition(self) -> dict[str, Any]:
        """The OpenAI / chat-template function definition of this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": json.loads(json.dumps(self.parameters)),
            },
        }


def _same_value(a: Any, b: Any) -> bool:
    """JSON equality where numbers compare as numbers but booleans never equal numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return bool(a == b)


def _line_of(text: str, needle: str) -> int:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else 0


@dataclass
class ToolRegistry:
    """The tools of one domain, with validation, normalization and precondition checks."""

    domain: str
    tools: dict[str, ToolSchema]
    initial_state: tuple[str, ...] = ()
    value_sources: dict[str, list[str]] = field(default_factory=dict)
    source: str = "<tools>"

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> ToolRegistry:
        """Load and validate a ``tools.json`` file.

        Raises
        ------
        ToolBindingError
            With the file, line and column of the first problem found.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ToolBindingError(
                "tool schema file not found", Location(str(path)),
                hint="a domain folder needs a tools.json next to its grammar",
            ) from None
        except UnicodeDecodeError as exc:
            raise ToolBindingError(f"not UTF-8 text ({exc.reason})", Location(str(path))) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolBindingError(
                f"invalid JSON: {exc.msg}", Location(str(path), exc.lineno, exc.colno),
                hint="check for a trailing comma or a missing quote",
            ) from None
        return cls.from_dict(data, source=str(path), text=text)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<tools>", text: str = "") -> ToolRegistry:
        """Build a registry from already-decoded JSON, validating its shape."""
        where = Location(source, 1, 1)
        if not isinstance(data, dict) or not isinstance(data.get("tools"), list):
            raise ToolBindingError(
                "tool schemas must be an object with a 'tools' list", where,
                hint='{"domain": "name", "tools": [{"name": ..., "parameters": {...}}]}',
            )
        tools: dict[str, ToolSchema] = {}
        for index, entry in enumerate(data["tools"]):
            name = entry.get("name") if isinstance(entry, dict) else None
            loc = Location(source, _line_of(text, f'"{name}"') if name else 0, 1)
            if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name) or "__" in name:
                raise ToolBindingError(
                    f"tool #{index} has no valid name (got {name!r})", loc,
                    hint="tool names are lower_snake_case without double underscores",
                )
            if name in tools:
                raise ToolBindingError(f"tool {name!r} is defined twice", loc)
            params = entry.get("parameters", {"type": "object", "properties": {}})
            cls._check_parameters(name, params, loc)
            tools[name] = ToolSchema(
                name=name,
                description=str(entry.get("description", "")),
                parameters=params,
                requires=tuple(entry.get("requires", ())),
                provides=tuple(entry.get("provides", ())),
                forbids=tuple(entry.get("forbids", ())),
                location=loc,
            )
        values = data.get("values", {})
        if not isinstance(values, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in values.values()
        ):
            raise ToolBindingError("'values' must map terminal names to lists of strings", where)
        return cls(
            domain=str(data.get("domain", Path(source).parent.name)),
            tools=tools,
            initial_state=tuple(data.get("state", ())),
            value_sources={k: list(v) for k, v in values.items()},
            source=source,
        )

    @staticmethod
    def _check_parameters(tool: str, params: Any, loc: Location) -> None:
        if not isinstance(params, dict) or params.get("type") != "object":
            raise ToolBindingError(f"parameters of {tool!r} must be a JSON Schema object", loc)
        props = params.get("properties", {})
        if not isinstance(props, dict):
            raise ToolBindingError(f"'properties' of {tool!r} must be an object", loc)
        for arg, spec in props.items():
            if not isinstance(spec, dict) or spec.get("type") not in _JSON_TYPES:
                raise ToolBindingError(
                    f"argument {tool}.{arg} needs a 'type' among {sorted(_JSON_TYPES)}", loc
                )
            if "__" in arg:
                raise ToolBindingError(f"argument name {tool}.{arg} must not contain '__'", loc)
        for arg in params.get("required", []):
            if arg not in props:
                raise ToolBindingError(f"{tool!r} requires {arg!r}, which is not a property", loc)

    # -- queries -----------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def __getitem__(self, name: str) -> ToolSchema:
        return self.tools[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.tools.values())

    def __len__(self) -> int:
        return len(self.tools)

    def known_value(self, text: str) -> str | None:
        """The value-source entry equal to ``text`` ignoring case (``s_score`` -> ``S_score``), or None."""
        folded = text.lower()
        for values in self.value_sources.values():
            for value in values:
                if value.lower() == folded:
                    return value
        return None

    def function_definitions(self) -> list[dict[str, Any]]:
        """Every tool as a chat-template function definition, in schema order."""
        return [tool.function_definition() for tool in self.tools.values()]

    # -- validation and normalization ----------------------------------------------------------

    def validate_call(self, call: Mapping[str, Any]) -> list[str]:
        """Every reason ``call`` does not fit its tool's schema (empty when it fits)."""
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
            return [f"a call must be an object with a 'name', got {call!r}"]
        name = call["name"]
        if name not in self.tools:
            return [f"unknown tool {name!r}"]
        args = call.get("arguments", {})
        if not isinstance(args, Mapping):
            return [f"arguments of {name} must be an object"]
        tool = self.tools[name]
        specs = tool.arguments
        problems = [f"{name} has no argument {arg!r}" for arg in args if arg not in specs]
        for arg, value in args.items():
            if arg in specs and value is not None:
                reason = specs[arg].validate(value)
                if reason:
                    problems.append(f"{name}: {reason}")
        problems += [f"{name} is missing required argument {arg!r}"
                     for arg in tool.required if args.get(arg) is None]
        return problems

    def normalize_call(
        self, call: Mapping[str, Any], *, canonical_molecule: Callable[[str], str] | None = None
    ) -> ToolCall:
        """Drop null and default-valued arguments, make integral numbers ints, sort nothing else.

        ``canonical_molecule`` (for example RDKit canonicalization) is applied to molecule values.
        """
        name = call.get("name")
        args = dict(call.get("arguments") or {})
        tool = self.tools.get(name) if isinstance(name, str) else None
        out: dict[str, Any] = {}
        for arg, value in args.items():
            if value is None:
                continue
            spec = tool.arguments.get(arg) if tool else None
            if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
                value = int(value)
            if spec is not None:
                if spec.has_default and _same_value(value, spec.default):
                    continue
                if canonical_molecule is not None and spec.kind is ValueKind.MOLECULE:
                    value = canonical_molecule(value)
                elif canonical_molecule is not None and spec.kind is ValueKind.MOLECULE_LIST:
                    value = [canonical_molecule(v) for v in value]
            out[arg] = value
        return {"name": name, "arguments": out}

    def normalize_calls(
        self, calls: Iterable[Mapping[str, Any]], *, canonical_molecule: Callable[[str], str] | None = None
    ) -> list[ToolCall]:
        """:meth:`normalize_call` over a list."""
        return [self.normalize_call(c, canonical_molecule=canonical_molecule) for c in calls]

    # -- preconditions -----------------------------------------------------------------------

    @staticmethod
    def _facts(templates: Iterable[str], args: Mapping[str, Any]) -> list[str]:
        """Fill ``{arg}`` in fact templates; a list argument gives one fact per item."""
        facts = []
        for template in templates:
            names = re.findall(r"{(\w+)}", template)
            if any(name not in args or args[name] is None for name in names):
                continue  # the fact names an argument the call leaves out
            choices = [args[n] if isinstance(args[n], list) else [args[n]] for n in names]
            for combo in itertools.product(*choices):
                facts.append(template.format(**dict(zip(names, combo))))
        return facts

    def _with_defaults(self, tool: ToolSchema, args: Mapping[str, Any]) -> dict[str, Any]:
        full = {name: spec.default for name, spec in tool.arguments.items() if spec.has_default}
        full.update({k: v for k, v in args.items() if v is not None})
        return full

    def sequence_problems(
        self, calls: Iterable[Mapping[str, Any]], state: Iterable[str] | None = None
    ) -> list[str]:
        """Every precondition a call list violates, given the facts true before it starts.

        A tool ``requires`` facts that must hold, ``forbids`` facts that must not, and then
        ``provides`` facts; templates are filled from the call's arguments with schema defaults.
        """
        facts = set(self.initial_state if state is None else state)
        problems = []
        for position, call in enumerate(calls):
            tool = self.tools.get(call.get("name", ""))
            if tool is None:
                continue
            args = self._with_defaults(tool, call.get("arguments") or {})
            for fact in self._facts(tool.requires, args):
                if fact not in facts:
                    problems.append(f"call {position + 1} ({tool.name}) needs {fact!r} first")
            for fact in self._facts(tool.forbids, args):
                if fact in facts:
                    problems.append(f"call {position + 1} ({tool.name}) cannot follow {fact!r}")
            facts.update(self._facts(tool.provides, args))
        return problems

    def state_after(self, calls: Iterable[Mapping[str, Any]], state: Iterable[str] | None = None) -> set[str]:
        """The facts true after ``calls`` run (preconditions not checked)."""
        facts = set(self.initial_state if state is None else state)
        for call in calls:
            tool = self.tools.get(call.get("name", ""))
            if tool is not None:
                facts.update(self._facts(tool.provides, self._with_defaults(tool, call.get("arguments") or {})))
        return facts
