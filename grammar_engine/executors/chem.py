"""The chem executor: every tool of ``grammars/chem/tools.json`` on RDKit.

Molecules arrive as SMILES or as names of the shipped lexicon (``grammars/shared/molecules.tsv``).
Libraries are ``SMILES<TAB>name`` files; a ``library`` path is looked up in the working directory
first and then, by its file name, among the libraries the project ships in
``grammars/chem/data/`` (so ``"library.smi"`` always works).

Fingerprints for similarity searches are Morgan radius 2 (ECFP4), 2048 bits, as in the
``tanimoto_similarity`` default.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import selfies
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import QED, AllChem, Crippen, Descriptors, Lipinski, MACCSkeys, rdMolDescriptors
from rdkit.Chem import rdFingerprintGenerator

from ..values import default_lexicon, shared_grammar_dir
from . import ExecutionError, check_arguments, relative_to_workdir, resolve_path, unknown_tool

__all__ = [
    "FINGERPRINTS",
    "GROUPS",
    "PROPERTIES",
    "REACTIONS",
    "Session",
    "TOOLS",
    "library_path",
    "read_library",
    "to_mol",
]

DATA_DIR = shared_grammar_dir().parent / "chem" / "data"

# SMARTS of each functional group of has_substructure.
GROUPS: dict[str, str] = {
    # the acid or its carboxylate
    "carboxylic_acid": "[CX3](=O)[OX2H1,OX1-]",
    # N with two H, not part of an amide, thioamide, amidine/guanidine or sulfonamide
    "primary_amine": "[NX3;H2;!$(N[C,S]=[O,S,N]);!$(NS(=O)=O)]",
    "secondary_amine": "[NX3;H1;!$(N[C,S]=[O,S,N]);!$(NS(=O)=O)]([#6])[#6]",
    "amide": "[NX3][CX3](=[OX1])[#6]",
    "ester": "[#6][CX3](=O)[OX2H0][#6]",
    "ketone": "[#6][CX3](=O)[#6]",
    "aldehyde": "[CX3H1](=O)[#6]",
    # OH on an sp3 carbon: neither phenol nor acid
    "alcohol": "[OX2H][CX4]",
    "phenol": "[OX2H]c",
    "nitro": "[$([NX3](=O)=O),$([NX3+](=O)[O-])][!#8]",
    "nitrile": "[NX1]#[CX2]",
    "halogen": "[F,Cl,Br,I]",
    "sulfonamide": "[SX4](=[OX1])(=[OX1])[NX3]",
    "aromatic_ring": "[a]",
    "thiol": "[SX2H]",
}

# Reaction SMARTS of run_reaction; each takes two reactants in the order written here.
_AMINE = "[NX3;H2,H1;!$(N[C,S]=[O,S,N]);!$(NS(=O)=O)"
REACTIONS: dict[str, str] = {
    "amide_coupling": f"[CX3:1](=[O:2])[OX2H1].{_AMINE}:3]>>[C:1](=[O:2])[N:3]",
    "suzuki_coupling": "[c:1][Cl,Br,I].[c:2][BX3]([OX2H1])[OX2H1]>>[c:1][c:2]",
    "esterification": "[CX3:1](=[O:2])[OX2H1].[OX2H1;$(O[CX4]):3]>>[C:1](=[O:2])[O:3]",
    "reductive_amination": (
        "[CX3;$([CH1](=O)[#6]),$([CH2](=O)),$(C(=O)([#6])[#6]):1]=[OX1]."
        f"{_AMINE}:2]>>[C:1][N:2]"
    ),
    "buchwald_hartwig": f"[c:1][Cl,Br,I].{_AMINE}:2]>>[c:1][N:2]",
}

FINGERPRINTS = ("morgan", "maccs", "rdkit", "atompair")
_COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6),
}


# -- molecules ---------------------------------------------------------------------------------


def to_mol(text: str, argument: str = "molecule") -> Chem.Mol:
    """Parse a SMILES or a lexicon name into an RDKit molecule.

    Raises
    ------
    ExecutionError
        When the text is neither a known name nor a valid SMILES.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExecutionError(f"{argument} must be a SMILES string, got {text!r}")
    smiles = default_lexicon().smiles(text) or text.strip()
    with rdBase.BlockLogs():  # RDKit prints parse errors to stderr otherwise
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ExecutionError(
            f"{argument} {text!r} is not a valid SMILES nor a known molecule name",
            hint="check brackets, ring-closure digits and aromatic atoms",
        )
    return mol


def _canonical(mol: Chem.Mol) -> str:
    return Chem.MolToSmiles(mol)


def _fingerprint(mol: Chem.Mol, kind: str, radius: int) -> Any:
    if kind == "morgan":
        return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=2048).GetFingerprint(mol)
    if kind == "maccs":
        return MACCSkeys.GenMACCSKeys(mol)
    if kind == "rdkit":
        return rdFingerprintGenerator.GetRDKitFPGenerator(fpSize=2048).GetFingerprint(mol)
    if kind == "atompair":
        return rdFingerprintGenerator.GetAtomPairGenerator(fpSize=2048).GetFingerprint(mol)
    raise ExecutionError(f"fingerprint must be one of {list(FINGERPRINTS)}, got {kind!r}")


# Descriptors by property name, shared by the descriptor tools and filter_library.
PROPERTIES: dict[str, Callable[[Chem.Mol], float]] = {
    "molecular_weight": Descriptors.MolWt,
    "logp": Crippen.MolLogP,
    "tpsa": rdMolDescriptors.CalcTPSA,
    "hbond_donors": Lipinski.NumHDonors,
    "hbond_acceptors": Lipinski.NumHAcceptors,
    "rotatable_bonds": rdMolDescriptors.CalcNumRotatableBonds,
    "qed": QED.qed,
}


# -- libraries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LibraryEntry:
    """One molecule of a library file."""

    smiles: str
    name: str
    mol: Chem.Mol


def library_path(workdir: Path, value: str) -> Path:
    """Where a ``library`` argument points: inside ``workdir``, else a shipped library by name."""
    path = resolve_path(workdir, value, argument="library")
    if path.is_file():
        return path
    shipped = DATA_DIR / Path(value).name
    if shipped.is_file():
        return shipped
    available = sorted(p.name for p in DATA_DIR.glob("*.smi")) if DATA_DIR.is_dir() else []
    raise ExecutionError(
        f"library {value!r} not found in the working directory nor among the shipped libraries",
        hint=f"shipped libraries: {available}",
    )


def read_library(path: Path) -> list[LibraryEntry]:
    """Read a ``SMILES<TAB>name`` (or whitespace-separated) library, skipping ``#`` comments."""
    stat = path.stat()
    return list(_read_library(str(path), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=16)
def _read_library(path: str, _mtime: int, _size: int) -> tuple[LibraryEntry, ...]:
    entries = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split(None, 1)
        smiles = parts[0].strip()
        name = parts[1].strip() if len(parts) > 1 else smiles
        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise ExecutionError(f"{Path(path).name}:{number}: invalid SMILES {smiles!r} in library")
        entries.append(LibraryEntry(smiles, name, mol))
    if not entries:
        raise ExecutionError(f"library {Path(path).name} has no molecules")
    return tuple(entries)


# -- tools -------------------------------------------------------------------------------------
# Each tool takes the session first and its contract arguments as keyword-only parameters, with
# the contract defaults; run_calls checks names and required arguments against the signature.


def _descriptor(prop: str) -> Callable[..., float]:
    function = PROPERTIES[prop]

    def tool(session: Session, *, molecule: str) -> float:
        value = function(to_mol(molecule))
        return int(value) if isinstance(value, int) else float(value)

    tool.__name__ = prop
    tool.__doc__ = f"The {prop.replace('_', ' ')} of ``molecule``."
    return tool


def ring_count(session: Session, *, molecule: str, aromatic_only: bool = False) -> int:
    """Number of rings (SSSR), or of aromatic rings only."""
    mol = to_mol(molecule)
    if aromatic_only:
        return int(rdMolDescriptors.CalcNumAromaticRings(mol))
    return int(rdMolDescriptors.CalcNumRings(mol))


def lipinski_rule_of_five(session: Session, *, molecule: str) -> dict[str, Any]:
    """Lipinski's rule of five: the four values, the violations, and pass (at most one violation)."""
    mol = to_mol(molecule)
    values = {
        "molecular_weight": float(Descriptors.MolWt(mol)),
        "logp": float(Crippen.MolLogP(mol)),
        "hbond_donors": int(Lipinski.NumHDonors(mol)),
        "hbond_acceptors": int(Lipinski.NumHAcceptors(mol)),
    }
    limits = {"molecular_weight": 500, "logp": 5, "hbond_donors": 5, "hbond_acceptors": 10}
    violations = [key for key, limit in limits.items() if values[key] > limit]
    return {**values, "violations": len(violations), "violated": violations, "passes": len(violations) <= 1}


def canonical_smiles(session: Session, *, molecule: str) -> str:
    """RDKit canonical (isomeric) SMILES."""
    return _canonical(to_mol(molecule))


def to_selfies(session: Session, *, molecule: str) -> str:
    """SELFIES string of the canonical SMILES."""
    smiles = _canonical(to_mol(molecule))
    try:
        return str(selfies.encoder(smiles, strict=True))
    except selfies.EncoderError as exc:
        raise ExecutionError(f"SELFIES cannot encode {smiles!r}: {exc}") from exc


def inchikey(session: Session, *, molecule: str) -> str:
    """Standard InChIKey."""
    with rdBase.BlockLogs():
        key = Chem.MolToInchiKey(to_mol(molecule))
    if not key:
        raise ExecutionError(f"no InChIKey for {molecule!r}")
    return str(key)


def tanimoto_similarity(
    session: Session, *, molecule_a: str, molecule_b: str, fingerprint: str = "morgan", radius: int = 2
) -> float:
    """Tanimoto similarity of two molecules' fingerprints (``radius`` only matters for Morgan)."""
    radius = int(radius)
    if radius < 0:
        raise ExecutionError(f"radius must be >= 0, got {radius}")
    mol_a, mol_b = to_mol(molecule_a, "molecule_a"), to_mol(molecule_b, "molecule_b")
    fp_a = _fingerprint(mol_a, fingerprint, radius)
    fp_b = _fingerprint(mol_b, fingerprint, radius)
    if fp_a.GetNumOnBits() == 0 and fp_b.GetNumOnBits() == 0:
        # 0/0: RDKit says 0, but a molecule too small for any bit (a single atom has no rdkit
        # path) is still identical to itself
        return 1.0 if _canonical(mol_a) == _canonical(mol_b) else 0.0
    return float(DataStructs.TanimotoSimilarity(fp_a, fp_b))


@lru_cache(maxsize=None)
def _group_pattern(group: str) -> Chem.Mol:
    return Chem.MolFromSmarts(GROUPS[group])


def has_substructure(session: Session, *, molecule: str, group: str) -> bool:
    """Whether ``molecule`` contains the functional ``group`` (SMARTS in :data:`GROUPS`)."""
    if group not in GROUPS:
        raise ExecutionError(f"group must be one of {sorted(GROUPS)}, got {group!r}")
    return bool(to_mol(molecule).HasSubstructMatch(_group_pattern(group)))


def similarity_search(
    session: Session, *, query: str, library: str, top_k: int = 10, threshold: float | None = None
) -> list[dict[str, Any]]:
    """The ``top_k`` library molecules most similar to ``query`` (Morgan r=2 Tanimoto), best first."""
    if int(top_k) < 1:
        raise ExecutionError(f"top_k must be >= 1, got {top_k}")
    fp = _fingerprint(to_mol(query, "query"), "morgan", 2)
    hits = []
    for entry in read_library(library_path(session.workdir, library)):
        score = DataStructs.TanimotoSimilarity(fp, _fingerprint(entry.mol, "morgan", 2))
        if threshold is None or score >= threshold:
            hits.append({"name": entry.name, "smiles": entry.smiles, "similarity": round(float(score), 4)})
    hits.sort(key=lambda hit: -hit["similarity"])  # stable: file order breaks ties
    return hits[: int(top_k)]


def filter_library(
    session: Session, *, library: str, property: str, comparator: str, value: float
) -> dict[str, Any]:
    """The library molecules whose ``property`` compares to ``value`` as asked."""
    if property not in PROPERTIES:
        raise ExecutionError(f"property must be one of {sorted(PROPERTIES)}, got {property!r}")
    if comparator not in _COMPARATORS:
        raise ExecutionError(f"comparator must be one of {sorted(_COMPARATORS)}, got {comparator!r}")
    compare = _COMPARATORS[comparator]
    entries = read_library(library_path(session.workdir, library))
    matches = []
    for entry in entries:
        measured = float(PROPERTIES[property](entry.mol))
        if compare(measured, float(value)):
            matches.append({"name": entry.name, "smiles": entry.smiles, property: round(measured, 4)})
    return {"kept": len(matches), "total": len(entries), "molecules": matches}


@lru_cache(maxsize=None)
def _reaction(name: str) -> Any:
    return AllChem.ReactionFromSmarts(REACTIONS[name])


def run_reaction(session: Session, *, reaction: str, reactants: list[str]) -> dict[str, Any]:
    """Apply a named reaction to two reactants (in either order); the unique product SMILES."""
    if reaction not in REACTIONS:
        raise ExecutionError(f"reaction must be one of {sorted(REACTIONS)}, got {reaction!r}")
    if not isinstance(reactants, list) or len(reactants) != 2:
        raise ExecutionError(f"{reaction} takes exactly two reactants, got {reactants!r}")
    mols = [to_mol(text, "reactants") for text in reactants]
    rxn = _reaction(reaction)
    products: list[str] = []
    for ordered in itertools.permutations(mols):
        for outcome in rxn.RunReactants(tuple(ordered)):
            for product in outcome:
                try:
                    with rdBase.BlockLogs():
                        Chem.SanitizeMol(product)
                except Exception:  # an impossible valence: not a product
                    continue
                smiles = _canonical(product)
                if smiles not in products:
                    products.append(smiles)
        if products:
            break
    if not products:
        raise ExecutionError(
            f"{reaction} does not apply to {reactants}",
            hint=_REACTANT_HINTS[reaction],
        )
    return {"reaction": reaction, "product": products[0], "products": products}


_REACTANT_HINTS = {
    "amide_coupling": "amide coupling needs a carboxylic acid and a primary or secondary amine",
    "suzuki_coupling": "Suzuki coupling needs an aryl halide (Cl, Br, I) and an aryl boronic acid",
    "esterification": "esterification needs a carboxylic acid and an aliphatic alcohol",
    "reductive_amination": "reductive amination needs an aldehyde or ketone and a primary or secondary amine",
    "buchwald_hartwig": "Buchwald-Hartwig needs an aryl halide (Cl, Br, I) and a primary or secondary amine",
}


def draw_molecule(session: Session, *, molecule: str, output: str) -> dict[str, Any]:
    """Draw ``molecule`` to a PNG (or SVG, by suffix) inside the working directory."""
    mol = to_mol(molecule)
    path = resolve_path(session.workdir, output, argument="output")
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ExecutionError(f"output {output!r} must end in .png or .svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    AllChem.Compute2DCoords(mol)
    renderer = "rdkit"
    if suffix == ".svg":
        from rdkit.Chem.Draw import rdMolDraw2D

        drawer = rdMolDraw2D.MolDraw2DSVG(300, 300)
        drawer.DrawMolecule(mol)
        drawer.FinishDrawing()
        path.write_text(drawer.GetDrawingText(), encoding="utf-8")
    else:
        try:
            from rdkit.Chem import Draw

            Draw.MolToFile(mol, str(path), size=(300, 300))
        except Exception:  # no Cairo nor PIL: rasterize the 2D bonds ourselves
            path.write_bytes(_bond_sketch_png(mol))
            renderer = "fallback"
    return {"path": relative_to_workdir(session.workdir, path), "renderer": renderer}


def _bond_sketch_png(mol: Chem.Mol, size: int = 300) -> bytes:
    """A dependency-free PNG of the molecule's 2D bonds (black lines on white)."""
    conf = mol.GetConformer()
    points = [(conf.GetAtomPosition(i).x, conf.GetAtomPosition(i).y) for i in range(mol.GetNumAtoms())]
    xs, ys = [p[0] for p in points] or [0.0], [p[1] for p in points] or [0.0]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    scale = (size - 40) / span

    def pixel(p: tuple[float, float]) -> tuple[int, int]:
        return int(20 + (p[0] - min(xs)) * scale), int(size - 20 - (p[1] - min(ys)) * scale)

    canvas = [bytearray(b"\xff" * size) for _ in range(size)]
    for bond in mol.GetBonds():
        (x0, y0), (x1, y1) = pixel(points[bond.GetBeginAtomIdx()]), pixel(points[bond.GetEndAtomIdx()])
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for step in range(steps + 1):
            x = x0 + (x1 - x0) * step // steps
            y = y0 + (y1 - y0) * step // steps
            if 0 <= x < size and 0 <= y < size:
                canvas[y][x] = 0
    raw = b"".join(b"\x00" + bytes(row) for row in canvas)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


TOOLS: dict[str, Callable[..., Any]] = {
    **{prop: _descriptor(prop) for prop in PROPERTIES},
    "ring_count": ring_count,
    "lipinski_rule_of_five": lipinski_rule_of_five,
    "canonical_smiles": canonical_smiles,
    "to_selfies": to_selfies,
    "inchikey": inchikey,
    "tanimoto_similarity": tanimoto_similarity,
    "has_substructure": has_substructure,
    "similarity_search": similarity_search,
    "filter_library": filter_library,
    "run_reaction": run_reaction,
    "draw_molecule": draw_molecule,
}
"""Every chem tool by name."""


class Session:
    """Runs chem calls in one working directory (the tools are stateless)."""

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)

    def tool_names(self) -> list[str]:
        """The tools this session runs."""
        return sorted(TOOLS)

    def call(self, index: int, name: str, arguments: Mapping[str, Any]) -> Any:
        """Run one call; raises :class:`ExecutionError` on bad arguments or failure."""
        function = TOOLS.get(name)
        if function is None:
            raise unknown_tool("chem", name, TOOLS)
        return function(self, **check_arguments(function, name, arguments))
