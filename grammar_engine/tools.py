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
replaced by that argument's value (``"obs:{groupby}"``), once per item for a list argument (every
item must meet a requirement); a fact naming an argument the call leaves out does not apply, and
``{arg?}`` is replaced by nothing, so ``"log1p{min_counts?}"`` is the fact ``log1p`` when
``min_counts`` is given. A requirement may name alternatives separated by ``|``
(``"numeric:{keys} | var:{keys}"``: each key is a numeric obs key or a gene); it holds when one of
them does. A tool ``removes`` facts that its call makes stale (a new PCA
removes ``neighbors``: the graph was built on the old components); removal comes before its own
``provides``.

Conditional value domains (``"domains"`` of a tool) say which values an argument takes given the
values of other arguments of the same call; they are data for the samplers, not part of the
JSON Schema a model sees::

    "domains": [
      {"when": {"reaction": "amide_coupling"}, "argument": "reactants",
       "one_of_each": [["CC(=O)O", ...], ["CCN", ...]],
       "description": "a carboxylic acid and an amine"}
    ]

``when`` maps arguments to a value or a list of values (any of them; defaults count); a domain
without ``when`` always applies. ``values`` lists the allowed values (each item of a list
argument must be one of them); ``one_of_each`` (list arguments only) asks for one item from each
list, in any order. Every domain that applies must hold. Parsing never checks domains (a person
may write any valid molecule); :meth:`ToolRegistry.domain_problems` does, and the samplers reject
a sample whose calls break one (``validate_call(call, domains=True)``).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Location, ToolBindingError
from .values import ValueKind

__all__ = [
    "ArgumentSpec", "ToolCall", "ToolRegistry", "ToolSchema", "ValueDomain", "fact_alternatives",
    "fact_placeholders",
]

ToolCall = dict[str, Any]
"""A call in the JSON form of the contract: ``{"name": str, "arguments": {arg: value}}``."""

_JSON_TYPES = {"integer", "number", "boolean", "string", "array"}
_MISSING = object()
_PLACEHOLDER = re.compile(r"{(\w+)\??}")  # {arg} (its value) or {arg?} (nothing: "when arg is given")


def fact_alternatives(requirement: str) -> tuple[str, ...]:
    """The alternatives of a required fact template, ``"a:{x} | b:{x}"`` -> ``("a:{x}", "b:{x}")``."""
    return tuple(part.strip() for part in requirement.split("|"))


def fact_placeholders(template: str) -> set[str]:
    """The arguments a fact template names, ``"label:{key}:{values}"`` -> ``{"key", "values"}``."""
    return set(_PLACEHOLDER.findall(template))


def fill_fact(template: str, values: Mapping[str, Any]) -> str:
    """The fact a template gives for one value per argument: ``{arg}`` becomes the value,
    ``{arg?}`` nothing (the fact holds only when ``arg`` is given).

    Raises
    ------
    KeyError
        When ``values`` lacks an argument the template names.
    """
    return _PLACEHOLDER.sub(lambda m: "" if m.group(0).endswith("?}") else str(values[m.group(1)]), template)


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


def _value_key(value: Any) -> tuple[str, Any]:
    """A hashable key under which JSON values compare as :func:`_same_value` compares them."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    return ("other", value)


def _assignable(items: Sequence[Any], groups: Sequence[frozenset[tuple[str, Any]]]) -> bool:
    """Whether each item can be given its own group that holds it (an injective assignment)."""
    if len(items) > len(groups):
        return False

    def assign(index: int, used: int) -> bool:
        if index == len(items):
            return True
        key = _value_key(items[index])
        for g, group in enumerate(groups):
            if not used & (1 << g) and key in group and assign(index + 1, used | (1 << g)):
                return True
        return False

    return assign(0, 0)


@dataclass(frozen=True)
class ValueDomain:
    """The values one argument takes when other arguments of the same call have given values.

    Read from a tool's ``"domains"`` in ``tools.json`` (see the module docstring).

    Attributes
    ----------
    argument
        The argument whose values are constrained.
    when
        ``(argument, allowed values)`` pairs that must all hold for the domain to apply.
    values
        The allowed values (every item of a list argument must be one), or None.
    one_of_each
        For a list argument: one item from each of these lists, in any order; or None.
    description
        What the domain means, quoted in problem messages.
    """

    argument: str
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    values: tuple[Any, ...] | None = None
    one_of_each: tuple[tuple[Any, ...], ...] | None = None
    description: str = ""
    _value_keys: frozenset[tuple[str, Any]] = field(init=False, repr=False, compare=False)
    _groups: tuple[frozenset[tuple[str, Any]], ...] = field(init=False, repr=False, compare=False)
    _when_keys: tuple[tuple[str, frozenset[tuple[str, Any]]], ...] = field(init=False, repr=False, compare=False)
    _memo: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict, init=False, repr=False,
                                                           compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_value_keys", frozenset(_value_key(v) for v in self.values or ()))
        object.__setattr__(self, "_groups", tuple(
            frozenset(_value_key(v) for v in group) for group in self.one_of_each or ()))
        object.__setattr__(self, "_when_keys", tuple(
            (name, frozenset(_value_key(a) for a in allowed)) for name, allowed in self.when))

    def applies(self, args: Mapping[str, Any]) -> bool | None:
        """True when every condition holds for ``args``, False when one fails, None when one
        names an argument ``args`` does not hold (not decided yet)."""
        undecided = False
        for name, allowed in self._when_keys:
            value = args.get(name)
            if value is None or isinstance(value, list):
                undecided = True
            elif _value_key(value) not in allowed:
                return False
        return None if undecided else True

    def condition_text(self) -> str:
        """The conditions in words: ``"reaction is 'amide_coupling'"``."""
        parts = []
        for name, allowed in self.when:
            if len(allowed) == 1:
                parts.append(f"{name} is {allowed[0]!r}")
            else:
                parts.append(f"{name} is one of {list(allowed)}")
        return " and ".join(parts)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (the argument's whole value) is outside the domain, or None."""
        items = value if isinstance(value, list) else [value]
        if self.values is not None:
            keys = self._value_keys
            bad = [v for v in items if _value_key(v) not in keys]
            if bad:
                return f"{bad[0]!r} is not one of the {len(keys)} values allowed"
        if self.one_of_each is not None:
            groups = self._groups
            if len(items) != len(groups) or not _assignable(items, groups):
                return f"{value!r} is not one value from each of {len(groups)} lists"
        return None

    def candidates(self, chosen: Sequence[Any] = ()) -> list[Any]:
        """The values the next item may take after the items ``chosen`` (for a scalar argument,
        with nothing chosen: its allowed values), in schema order."""
        if self.values is not None and self.one_of_each is None:
            return list(self.values)
        groups = self._groups
        if len(chosen) >= len(groups):
            return []
        key = tuple(_value_key(c) for c in chosen)
        found = self._memo.get(key)
        if found is None:
            found = tuple(self._candidates(chosen))
            if len(self._memo) > 4096:
                self._memo.clear()
            self._memo[key] = found
        return list(found)

    def _candidates(self, chosen: Sequence[Any]) -> list[Any]:
        groups = self._groups
        keys = self._value_keys
        out: list[Any] = []
        seen: set[tuple[str, Any]] = set()
        for group in self.one_of_each or ():
            for value in group:
                key = _value_key(value)
                if key in seen or (self.values is not None and key not in keys):
                    continue
                seen.add(key)
                if _assignable([*chosen, value], groups):
                    out.append(value)
        return out


@dataclass(frozen=True)
class ToolSchema:
    """A tool: its name, description, JSON Schema parameters and preconditions."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    forbids: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()
    location: Location | None = None
    domains: tuple[ValueDomain, ...] = ()

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


@lru_cache(maxsize=4096)
def _fact_pattern(template: str, argument: str, fixed: tuple[tuple[str, str], ...]) -> tuple[str, re.Pattern[str]]:
    """The literal start of the facts ``template`` gives, and a pattern matching them that captures
    ``argument`` as ``value``; placeholders in ``fixed`` are those values, the others match anything."""
    known = dict(fixed)
    first = _PLACEHOLDER.search(template)
    prefix = template[:first.start()] if first else template
    pieces = []
    last = 0
    seen = False
    for match in _PLACEHOLDER.finditer(template):
        pieces.append(re.escape(template[last:match.start()]))
        name = match.group(1)
        if match.group(0).endswith("?}"):
            pass  # "when given": no text
        elif name == argument:
            pieces.append("(?P=value)" if seen else "(?P<value>.+?)")
            seen = True
        elif name in known:
            pieces.append(re.escape(known[name]))
        else:
            pieces.append(".+?")
        last = match.end()
    pieces.append(re.escape(template[last:]))
    return prefix, re.compile("".join(pieces), re.DOTALL)


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
    _requirement_cache: dict[tuple[Any, ...], tuple[str, ...] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    _related: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict, init=False, repr=False,
                                                            compare=False)
    _defaults: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

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
            facts = {key: cls._check_facts(name, key, entry.get(key, []), params, loc)
                     for key in ("requires", "provides", "forbids", "removes")}
            tools[name] = ToolSchema(
                name=name,
                description=str(entry.get("description", "")),
                parameters=params,
                requires=facts["requires"],
                provides=facts["provides"],
                forbids=facts["forbids"],
                removes=facts["removes"],
                location=loc,
                domains=cls._read_domains(name, entry.get("domains", []), params, loc),
            )
        values = data.get("values", {})
        if not isinstance(values, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in values.values()
        ):
            raise ToolBindingError("'values' must map terminal names to lists of strings", where)
        state = data.get("state", [])
        if not isinstance(state, list) or not all(isinstance(f, str) and f for f in state):
            raise ToolBindingError("'state' must be a list of fact strings", where,
                                   hint='the facts true before the first call, e.g. ["obs:cell_type"]')
        return cls(
            domain=str(data.get("domain", Path(source).parent.name)),
            tools=tools,
            initial_state=tuple(state),
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

    @staticmethod
    def _check_facts(tool: str, key: str, facts: Any, params: Mapping[str, Any], loc: Location) -> tuple[str, ...]:
        """The fact templates of ``key`` (requires, provides, forbids, removes), checked."""
        if not isinstance(facts, list) or not all(isinstance(f, str) and f.strip() for f in facts):
            raise ToolBindingError(f"'{key}' of {tool!r} must be a list of non-empty strings", loc)
        props = params.get("properties", {})
        for fact in facts:
            if key != "requires" and "|" in fact:
                raise ToolBindingError(
                    f"{key} fact {fact!r} of {tool!r} has alternatives ('|'); only 'requires' may", loc)
            for alternative in fact_alternatives(fact):
                if not alternative:
                    raise ToolBindingError(f"{key} fact {fact!r} of {tool!r} has an empty alternative", loc)
                for name in _PLACEHOLDER.findall(alternative):
                    if name not in props:
                        raise ToolBindingError(
                            f"{key} fact {fact!r} of {tool!r} names {{{name}}}, which is not an argument of {tool!r}",
                            loc, hint=f"arguments of {tool}: {sorted(props)}",
                        )
        return tuple(facts)

    @staticmethod
    def _read_domains(tool: str, raw: Any, params: Mapping[str, Any], loc: Location) -> tuple[ValueDomain, ...]:
        """The conditional value domains of ``tool``, each checked against the tool's arguments."""
        if not isinstance(raw, list):
            raise ToolBindingError(f"'domains' of {tool!r} must be a list of objects", loc)
        props = params.get("properties", {})
        required = set(params.get("required", ()))
        domains = []
        for index, entry in enumerate(raw):
            where = f"domains[{index}] of {tool!r}"
            if not isinstance(entry, dict):
                raise ToolBindingError(f"{where} must be an object", loc)
            unknown = sorted(set(entry) - {"argument", "when", "values", "one_of_each", "description"})
            if unknown:
                raise ToolBindingError(
                    f"{where} has unknown keys {unknown}", loc,
                    hint="a domain has 'argument', 'when', 'values' or 'one_of_each', and 'description'",
                )
            arg = entry.get("argument")
            if not isinstance(arg, str) or arg not in props:
                raise ToolBindingError(
                    f"{where} names argument {arg!r}, which is not an argument of {tool!r}", loc,
                    hint=f"arguments of {tool}: {sorted(props)}",
                )
            where = f"domains[{index}] of {tool}.{arg}"
            spec = ArgumentSpec(arg, props[arg], arg in required)
            when = entry.get("when", {})
            if not isinstance(when, dict):
                raise ToolBindingError(f"{where}: 'when' must map arguments to a value or a list of values", loc)
            conditions = []
            for name, allowed in when.items():
                if name not in props or name == arg:
                    raise ToolBindingError(
                        f"{where}: 'when' names {name!r}, which is not another argument of {tool!r}", loc)
                cond = ArgumentSpec(name, props[name], name in required)
                if cond.kind.is_list:
                    raise ToolBindingError(f"{where}: 'when' cannot test the list argument {tool}.{name}", loc)
                options = allowed if isinstance(allowed, list) else [allowed]
                for option in options:
                    reason = cond.validate(option)
                    if reason:
                        raise ToolBindingError(f"{where}: 'when' value {option!r} does not fit {tool}.{name}: {reason}", loc)
                if not options:
                    raise ToolBindingError(f"{where}: 'when' gives {tool}.{name} no value", loc)
                conditions.append((name, tuple(options)))
            values = entry.get("values")
            groups = entry.get("one_of_each")
            if (values is None) == (groups is None):
                raise ToolBindingError(f"{where} needs exactly one of 'values' and 'one_of_each'", loc)

            def checked(items: Any, what: str) -> tuple[Any, ...]:
                if not isinstance(items, list) or not items:
                    raise ToolBindingError(f"{where}: '{what}' must be a non-empty list", loc)
                for item in items:
                    reason = spec.validate([item] if spec.kind.is_list else item)
                    if reason:
                        raise ToolBindingError(f"{where}: '{what}' holds {item!r}, which does not fit: {reason}", loc)
                return tuple(items)

            if groups is not None:
                if not spec.kind.is_list:
                    raise ToolBindingError(f"{where}: 'one_of_each' needs a list argument, {tool}.{arg} is not", loc)
                if not isinstance(groups, list) or not groups:
                    raise ToolBindingError(f"{where}: 'one_of_each' must be a non-empty list of lists", loc)
                low, high = spec.schema.get("minItems", 1), spec.schema.get("maxItems")
                if len(groups) < low or (high is not None and len(groups) > high):
                    raise ToolBindingError(
                        f"{where}: 'one_of_each' has {len(groups)} lists, but {tool}.{arg} takes "
                        f"{low} to {high if high is not None else 'any number of'} items", loc)
                group_values = tuple(checked(g, "one_of_each") for g in groups)
            description = entry.get("description", "")
            if not isinstance(description, str):
                raise ToolBindingError(f"{where}: 'description' must be a string", loc)
            domains.append(ValueDomain(
                argument=arg, when=tuple(conditions),
                values=checked(values, "values") if values is not None else None,
                one_of_each=group_values if groups is not None else None,
                description=description,
            ))
        return tuple(domains)

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

    def domains_of(self, tool: str, argument: str) -> tuple[ValueDomain, ...]:
        """The conditional value domains of ``tool.argument`` (empty when it has none)."""
        schema = self.tools.get(tool)
        if schema is None or not schema.domains:
            return ()
        return tuple(d for d in schema.domains if d.argument == argument)

    def domain_problems(self, call: Mapping[str, Any]) -> list[str]:
        """Every conditional value domain (``"domains"`` in ``tools.json``) that ``call`` breaks.

        A domain is checked when its conditions hold for the call's arguments (defaults
        included) and the call gives its argument; an unknown tool has no domains.
        """
        name = call.get("name") if isinstance(call, Mapping) else None
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None or not tool.domains or not isinstance(call.get("arguments", {}), Mapping):
            return []
        args = self._with_defaults(tool, call.get("arguments") or {})
        problems = []
        for domain in tool.domains:
            if args.get(domain.argument) is None or domain.applies(args) is not True:
                continue
            reason = domain.problem(args[domain.argument])
            if reason:
                condition = f" when {domain.condition_text()}" if domain.when else ""
                meaning = f" ({domain.description})" if domain.description else ""
                problems.append(f"{tool.name}: {domain.argument} {reason}{condition}{meaning}")
        return problems

    def validate_call(self, call: Mapping[str, Any], *, domains: bool = False) -> list[str]:
        """Every reason ``call`` does not fit its tool's schema (empty when it fits).

        With ``domains``, the conditional value domains are checked too
        (:meth:`domain_problems`); parsing leaves them out, samplers check them.
        """
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
        if domains and not problems:
            problems += self.domain_problems(call)
        return problems

    @property
    def takes_molecules(self) -> bool:
        """Whether any tool has a molecule (or molecule-list) argument."""
        return any(spec.kind.item_kind is ValueKind.MOLECULE
                   for tool in self.tools.values() for spec in tool.arguments.values())

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
            names = sorted(fact_placeholders(template))
            if any(name not in args or args[name] is None for name in names):
                continue  # the fact names an argument the call leaves out
            choices = [args[n] if isinstance(args[n], list) else [args[n]] for n in names]
            for combo in itertools.product(*choices):
                facts.append(fill_fact(template, dict(zip(names, combo))))
        return facts

    def _with_defaults(self, tool: ToolSchema, args: Mapping[str, Any]) -> dict[str, Any]:
        defaults = self._defaults.get(tool.name)
        if defaults is None or self.tools.get(tool.name) is not tool:
            defaults = {name: spec.default for name, spec in tool.arguments.items() if spec.has_default}
            if self.tools.get(tool.name) is tool:
                self._defaults[tool.name] = defaults
        full = dict(defaults)
        full.update({k: v for k, v in args.items() if v is not None})
        return full

    @staticmethod
    def _unmet(requirement: str, args: Mapping[str, Any], facts: set[str] | frozenset[str]) -> list[str]:
        """The ways ``requirement`` fails for ``args``: one message part per failing item combination.

        A list argument is checked item by item; an alternative naming an argument the call
        leaves out is dropped, and a requirement left with no alternative does not apply.
        """
        unmet: list[str] = []
        for filled in ToolRegistry._unmet_facts(requirement, args, facts):
            text = " or ".join(repr(f) for f in filled)
            if text not in unmet:
                unmet.append(text)
        return unmet

    @staticmethod
    def _unmet_facts(requirement: str, args: Mapping[str, Any],
                     facts: set[str] | frozenset[str]) -> list[tuple[str, ...]]:
        """The facts, one of which would meet ``requirement``, for each failing item combination."""
        alternatives = [a for a in fact_alternatives(requirement)
                        if all(args.get(n) is not None for n in _PLACEHOLDER.findall(a))]
        if not alternatives:
            return []
        names = sorted({n for a in alternatives for n in _PLACEHOLDER.findall(a)})
        choices = [args[n] if isinstance(args[n], list) else [args[n]] for n in names]
        unmet = []
        for combo in itertools.product(*choices):
            values = dict(zip(names, combo))
            filled = tuple(dict.fromkeys(fill_fact(a, values) for a in alternatives))
            if not any(fact in facts for fact in filled):
                unmet.append(filled)
        return unmet

    def needed_before(self, calls: Iterable[Mapping[str, Any]], state: Iterable[str] | None = None) -> set[str]:
        """The facts that must hold besides ``state`` (default: the initial state) for ``calls`` to
        meet every requirement: those no earlier call of the list provides. Where a requirement
        has alternatives (``"obs:{color} | var:{color}"``), the first is taken."""
        facts = set(self.initial_state if state is None else state)
        needed: set[str] = set()
        for _, tool, args in self._known_calls(calls):
            for requirement in tool.requires:
                for filled in self._unmet_facts(requirement, args, facts):
                    needed.add(filled[0])
                    facts.add(filled[0])
            self._apply(tool, args, facts)
        return needed

    def requirement_values(
        self, tool: str, argument: str, known: Mapping[str, Any], facts: Iterable[str]
    ) -> list[str] | None:
        """The values of ``argument`` that meet every requirement of ``tool`` naming it, read off ``facts``.

        ``known`` holds the other arguments of the call decided so far (list arguments as lists);
        a placeholder of an argument not known yet matches anything. A requirement that another
        of its alternatives already meets puts no constraint on ``argument``.

        Returns
        -------
        list of str or None
            The values, sorted; None when no requirement of ``tool`` names ``argument``.
        """
        schema = self.tools.get(tool)
        if schema is None:
            return None
        placeholder = "{" + argument + "}"
        facts = facts if isinstance(facts, frozenset) else frozenset(facts)
        relevant = self._related.get((tool, argument))
        if relevant is None:
            relevant = frozenset(n for r in schema.requires if placeholder in r for n in fact_placeholders(r))
            self._related[(tool, argument)] = relevant
        args = {k: v for k, v in known.items() if k in relevant and k != argument and v is not None and v != []}
        key = (tool, argument, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in args.items())),
               facts)
        cached = self._requirement_cache.get(key, _MISSING)
        if cached is not _MISSING:
            return list(cached) if cached is not None else None
        result = self._requirement_values(schema, argument, args, facts)
        if len(self._requirement_cache) > 8192:
            self._requirement_cache.clear()
        self._requirement_cache[key] = tuple(result) if result is not None else None
        return result

    def _requirement_values(self, schema: ToolSchema, argument: str, args: dict[str, Any],
                            facts: frozenset[str]) -> list[str] | None:
        placeholder = "{" + argument + "}"
        found: set[str] | None = None
        for requirement in schema.requires:
            alternatives = fact_alternatives(requirement)
            naming = [a for a in alternatives if placeholder in a]
            if not naming:
                continue
            others = [a for a in alternatives if placeholder not in a]
            if any(not self._unmet(a, args, facts) and all(n in args for n in _PLACEHOLDER.findall(a))
                   for a in others):
                continue  # met whatever the value of argument
            names = sorted({n for a in naming for n in _PLACEHOLDER.findall(a) if n != argument and n in args})
            choices = [args[n] if isinstance(args[n], list) else [args[n]] for n in names]
            allowed: set[str] | None = None
            for combo in itertools.product(*choices):
                fixed = tuple(zip(names, (str(v) for v in combo)))
                here: set[str] = set()
                for alternative in naming:
                    prefix, pattern = _fact_pattern(alternative, argument, fixed)
                    for fact in facts:
                        if fact.startswith(prefix):
                            match = pattern.fullmatch(fact)
                            if match is not None and match.group("value"):
                                here.add(match.group("value"))
                allowed = here if allowed is None else allowed & here
            found = allowed if found is None else found & (allowed or set())
        return sorted(found) if found is not None else None

    def sequence_problems(
        self, calls: Iterable[Mapping[str, Any]], state: Iterable[str] | None = None
    ) -> list[str]:
        """Every precondition a call list violates, given the facts true before it starts.

        A tool ``requires`` facts that must hold, ``forbids`` facts that must not, and then
        ``removes`` and ``provides`` facts; templates are filled from the call's arguments with
        schema defaults.
        """
        facts = set(self.initial_state if state is None else state)
        problems = []
        for position, tool, args in self._known_calls(calls):
            for requirement in tool.requires:
                for unmet in self._unmet(requirement, args, facts):
                    problems.append(f"call {position + 1} ({tool.name}) needs {unmet} first")
            for fact in self._facts(tool.forbids, args):
                if fact in facts:
                    problems.append(f"call {position + 1} ({tool.name}) cannot follow {fact!r}")
            self._apply(tool, args, facts)
        return problems

    def state_after(self, calls: Iterable[Mapping[str, Any]], state: Iterable[str] | None = None) -> set[str]:
        """The facts true after ``calls`` run (preconditions not checked)."""
        facts = set(self.initial_state if state is None else state)
        for _, tool, args in self._known_calls(calls):
            self._apply(tool, args, facts)
        return facts

    def _known_calls(self, calls: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, ToolSchema, dict[str, Any]]]:
        """``(position, schema, arguments with schema defaults)`` of each call of a known tool."""
        for position, call in enumerate(calls):
            tool = self.tools.get(call.get("name", ""))
            if tool is not None:
                yield position, tool, self._with_defaults(tool, call.get("arguments") or {})

    def _apply(self, tool: ToolSchema, args: Mapping[str, Any], facts: set[str]) -> None:
        """Update ``facts`` in place with what a call of ``tool`` removes, then provides."""
        if tool.removes:
            facts.difference_update(self._facts(tool.removes, args))
        facts.update(self._facts(tool.provides, args))
