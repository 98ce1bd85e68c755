"""Molecules named in words stay words in the plain format's targets, and become SMILES when read back.

The tool contract wants SMILES: "logP of caffeine" is ``{"molecule": "Cn1c(=O)c2c(ncn2C)n(C)c1=O"}``.
A tiny model cannot learn a hundred such strings by heart, but it copies words well. So in the
plain format a molecule argument whose SMILES belongs to a lexicon name that the instruction
spells out is written as that name, exactly as the instruction spells it::

    <|user|>logP of Caffeine<|calls|>[{"name":"logp","arguments":{"molecule":"Caffeine"}}]<|end|>

and :meth:`MoleculeNames.resolve` turns a name the model writes back into its SMILES (case and
spacing ignored, as in the grammar). A SMILES given in the instruction, or a molecule the
instruction does not name, keeps its SMILES. The lexicon travels with the corpus (``molecules``
in its manifest) and the model (``molecules`` in ``model_info.json``), so the model directory
reads its own outputs back without the domain folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from grammar_engine.tools import ToolRegistry
from grammar_engine.values import ValueKind

__all__ = ["MoleculeNames"]

def _key(name: str) -> str:
    return " ".join(name.lower().split())


class MoleculeNames:
    """A name -> SMILES lexicon that swaps SMILES for the names an instruction uses, and back.

    Parameters
    ----------
    names
        Molecule names and their SMILES (the domain's ``molecules.tsv``).
    """

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = dict(names)
        self._smiles = {_key(name): smiles for name, smiles in self.names.items()}
        self._by_smiles: dict[str, list[re.Pattern[str]]] = {}  # SMILES -> its names, as patterns
        for name, smiles in self.names.items():
            words = r"\s+".join(re.escape(w) for w in name.split())
            self._by_smiles.setdefault(smiles, []).append(re.compile(rf"(?<![\w-]){words}(?![\w-])", re.IGNORECASE))

    def __len__(self) -> int:
        return len(self.names)

    def smiles(self, name: str) -> str | None:
        """The SMILES of a lexicon name (case and spacing ignored), or None."""
        return self._smiles.get(_key(name))

    def spelled(self, smiles: str, instruction: str) -> str | None:
        """How ``instruction`` names the molecule ``smiles`` (its first lexicon name there), or None."""
        found: tuple[int, int, str] | None = None
        for pattern in self._by_smiles.get(smiles, ()):
            match = pattern.search(instruction)
            if match is not None:
                candidate = (match.start(), -len(match.group(0)), match.group(0))
                found = candidate if found is None or candidate < found else found
        return found[2] if found else None

    def _map(self, calls: list[dict[str, Any]], registry: ToolRegistry, change: Any) -> list[dict[str, Any]]:
        out = []
        for call in calls:
            tool = registry.tools.get(call.get("name")) if isinstance(call.get("name"), str) else None
            arguments = dict(call.get("arguments") or {})
            if tool is not None:
                for arg, value in arguments.items():
                    spec = tool.arguments.get(arg)
                    if spec is None or spec.kind.item_kind is not ValueKind.MOLECULE:
                        continue
                    if isinstance(value, str):
                        arguments[arg] = change(value)
                    elif isinstance(value, list):
                        arguments[arg] = [change(v) if isinstance(v, str) else v for v in value]
            out.append({**call, "arguments": arguments})
        return out

    def to_names(self, calls: list[dict[str, Any]], instruction: str, registry: ToolRegistry) -> list[dict[str, Any]]:
        """``calls`` with each molecule the instruction names written as that name."""
        return self._map(calls, registry, lambda smiles: self.spelled(smiles, instruction) or smiles)

    def resolve(self, calls: list[dict[str, Any]], registry: ToolRegistry) -> list[dict[str, Any]]:
        """``calls`` with each molecule value that is a lexicon name replaced by its SMILES."""
        return self._map(calls, registry, lambda value: self.smiles(value) or value)
