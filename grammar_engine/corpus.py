"""Write verified corpora: JSONL shards of generated instructions, deduplicated and split.

:func:`write_corpus` (what ``grammar-engine sample DOMAIN_DIR -n N ...`` calls) streams samples
from :func:`grammar_engine.sampling.sample` into ``out_dir``::

    out_dir/
        train-00000.jsonl     records, ``shard_size`` per file
        heldout-00000.jsonl
        manifest.json         hashes, strategy, seed, counts, rejections, tools, shards,
                              molecules (name -> SMILES, when the tools take molecules)

One record per line (keys in this order)::

    {"id", "domain", "instruction", "calls", "split", "phrasing",
     "messages": [{"role": "user", "content": instruction},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": ..., "arguments": {...}}}]}],
     "tools": [function definitions]}        # omitted with tools_in_records=False

``messages`` plus ``tools`` is what TRL's SFT trainer and ``tokenizer.apply_chat_template(messages,
tools=tools)`` take as is; the shards load with ``datasets.load_dataset("json", data_files=...)``.

**Determinism.** Samples are drawn in fixed-size chunks; chunk ``i`` has its own seed derived from
``(seed, i)``, chunks are consumed in order, and JSON is written with fixed separators, key order
and ``ensure_ascii=False``. The same grammar, recordings, options and seed give byte-identical
shards and manifest whatever ``workers`` is (workers only compute chunks ahead).

With ``strategy="coverage"``, chunk 0 is the **covering head**: one coverage-guided stream, run
in-process and written as it comes, until every target is covered or given up (or ``n``). Its
state is the corpus's, so the head covers what one stream covers, not what a chunk of 1,000 does.
The chunks after it are independent coverage-guided chunks, computed by the workers, each
steering toward all targets again (a chunk must not depend on the chunks before it). With
``until_covered=True`` (``--until-covered``) the corpus is the head alone; the manifest's
``covering_head`` says how it ended.

**Deduplication** drops a record whose instruction was already written, exactly or after
normalization (case folded, whitespace collapsed, no space before punctuation, no trailing
punctuation). Each key is an 8-byte digest kept in a fixed open-addressing table allocated once:
``16 * capacity`` bytes for the two tables, with ``capacity`` the power of two at least ``2 * n``
(32 MiB for a million instructions) or ``dedup_capacity``. Past 90% load the tables stop admitting
keys (``dedup.saturated`` in the manifest); until then deduplication is exact up to 64-bit digest
collisions.

**Splits** hold out whole (tool, phrasing) combinations: a share ``heldout`` of the call
expansions (each tool keeps at least one phrasing in train), chosen by a hash of ``seed`` among
the phrasings no recorded instruction uses. A sample that uses any held-out phrasing goes to
``heldout``, every other to ``train``, so no held-out combination ever appears in train, and a
model trained on the split has seen every phrasing the recordings show.

**Memory** stays flat: samples are serialized as they come, shards are appended to, and every
cache in the pipeline is bounded.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CorpusFormatError, InvalidArgument, SamplingError
from .generation import gen_tables
from .sampling import (
    DEFAULT_SENTENCE_CASE,
    DEFAULT_SESSION_LENGTH,
    SampleStream,
    SamplingStrategy,
    _strategy_factory,
    recorded_defaults,
    sample,
    verifier_for,
)
from .slots import SlotKind

if TYPE_CHECKING:
    from .grammar import Grammar

__all__ = [
    "DigestSet",
    "corpus_seed",
    "dedup_key",
    "grammar_hash",
    "heldout_phrasings",
    "read_corpus",
    "recorded_phrasings",
    "write_corpus",
]

FORMAT = "grammar-engine-corpus/1"
_SEPARATORS = (",", ":")


# -- dedup ------------------------------------------------------------------------------------------


class DigestSet:
    """A fixed-size set of 8-byte digests (open addressing, linear probing) that never grows.

    Parameters
    ----------
    capacity
        Slots, rounded up to a power of two; memory is ``8 * capacity`` bytes, allocated once.
    max_load
        Share of slots that may be filled; past it :meth:`add` admits nothing and :attr:`saturated`
        turns True.
    """

    def __init__(self, capacity: int, *, max_load: float = 0.9) -> None:
        size = 1
        while size < max(capacity, 8):
            size <<= 1
        self.mask = size - 1
        self.table = array("Q", bytes(8 * size))
        self.limit = int(size * max_load)
        self.count = 0
        self.saturated = False

    @staticmethod
    def digest(text: str) -> int:
        """The 8-byte digest of ``text`` (never 0, which marks an empty slot)."""
        value = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
        return value or 1

    def add(self, digest: int) -> bool:
        """Insert ``digest``; False when it was already there (or the set is saturated and lacks it)."""
        table, mask = self.table, self.mask
        i = digest & mask
        while True:
            slot = table[i]
            if slot == 0:
                break
            if slot == digest:
                return False
            i = (i + 1) & mask
        if self.count >= self.limit:
            self.saturated = True
            return True
        table[i] = digest
        self.count += 1
        return True

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, int):
            return False
        table, mask = self.table, self.mask
        i = digest & mask
        while table[i]:
            if table[i] == digest:
                return True
            i = (i + 1) & mask
        return False

    def __len__(self) -> int:
        return self.count


def dedup_key(text: str) -> str:
    """The normalized form two instructions share when they differ only in case, spacing or
    trailing punctuation.

    >>> dedup_key("Normalize ,  then PCA.") == dedup_key("normalize, then pca")
    True
    """
    folded = " ".join(text.casefold().split())
    for mark in ",;:.?!)":
        folded = folded.replace(" " + mark, mark)
    return folded.replace("( ", "(").rstrip(".!?;, ")


# -- splits -----------------------------------------------------------------------------------------


def _hash_int(*parts: Any) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest(), "little")


def _call_phrasings(grammar: Grammar) -> dict[int, tuple[str, str]]:
    """Expansion index -> (phrasing id such as ``call_pca#2``, tool) for every usable call phrasing."""
    t = gen_tables(grammar)
    usable = {e for exps in t.alts.values() for e in exps}
    out: dict[int, tuple[str, str]] = {}
    for e in sorted(usable):
        x = t.exps[e]
        if x.user and x.typed is not None and x.typed.kind is SlotKind.CALL:
            out[e] = (x.node_id, x.target)
    return out


def recorded_phrasings(grammar: Grammar, recordings: Any = None) -> frozenset[str]:
    """Call phrasings (``call_pca#2``) that the recorded instructions use.

    ``recordings`` is what the weighted sampler takes (a JSONL path or instructions; default: the
    domain's ``recorded.jsonl``); instructions that do not parse contribute nothing.
    """
    from .weights import expansion_weights

    counts = expansion_weights(grammar, recordings=recordings).counts
    return frozenset(p for e, (p, _tool) in _call_phrasings(grammar).items() if counts.get(e))


def heldout_phrasings(grammar: Grammar, fraction: float, seed: int, *, keep: Iterable[str] = ()) -> list[str]:
    """Call expansions (``call_pca#2``) to hold out: about ``fraction`` of them, every tool keeping one.

    Phrasings in ``keep`` are never held out (:func:`write_corpus` keeps those the recordings use,
    so a model trained on the split still sees every phrasing people wrote); the quota is a share of
    all call phrasings, so it may be short when ``keep`` covers most of them. The choice depends only
    on the grammar, ``fraction``, ``seed`` and ``keep``.
    """
    if not 0 <= fraction < 1:
        raise InvalidArgument(f"heldout must be in [0, 1), got {fraction!r}")
    kept_in_train = frozenset(keep)
    by_tool: dict[str, list[str]] = {}
    for phrasing, tool in _call_phrasings(grammar).values():
        by_tool.setdefault(tool, []).append(phrasing)
    everything = sorted((p, tool) for tool, ps in by_tool.items() for p in ps)
    quota = round(fraction * len(everything))
    kept = {tool: len(ps) for tool, ps in by_tool.items()}
    chosen: list[str] = []
    for phrasing, tool in sorted(everything, key=lambda pt: _hash_int(seed, pt[0])):
        if len(chosen) >= quota:
            break
        if kept[tool] > 1 and phrasing not in kept_in_train:
            kept[tool] -= 1
            chosen.append(phrasing)
    return sorted(chosen)


# -- chunks -------------------------------------------------------------------------------------------


def corpus_seed(seed: int, chunk: int) -> int:
    """The seed of chunk ``chunk`` of a corpus seeded with ``seed``."""
    return _hash_int("grammar-engine-corpus", seed, chunk) & ((1 << 63) - 1)


_STATE: dict[str, Any] = {}


def _stream(index: int, size: int, **extra: Any) -> SampleStream:
    st = _STATE
    return sample(st["grammar"], size, strategy=st["strategy"], seed=corpus_seed(st["seed"], index),
                  **st["options"], **extra)


def _records(stream: SampleStream, errors: list[str]) -> Iterator[tuple[int, int, str, str]]:
    """Serialize the stream's samples (``(exact digest, normalized digest, split, body)``); a
    :class:`SamplingError` ends the records and goes to ``errors``."""
    heldout = _STATE["heldout"]
    domain_json = json.dumps(_STATE["grammar"].domain, ensure_ascii=False)
    try:
        for item in stream:
            split = "heldout" if heldout and any(p in heldout for p in item.phrasing) else "train"
            calls_json = json.dumps(item.calls, ensure_ascii=False, separators=_SEPARATORS)
            text_json = json.dumps(item.instruction, ensure_ascii=False)
            tool_calls = json.dumps(
                [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in item.calls],
                ensure_ascii=False, separators=_SEPARATORS,
            )
            body = (
                f'"domain":{domain_json},"instruction":{text_json},"calls":{calls_json},"split":"{split}",'
                f'"phrasing":{json.dumps(list(item.phrasing), separators=_SEPARATORS)},'
                f'"messages":[{{"role":"user","content":{text_json}}},'
                f'{{"role":"assistant","content":"","tool_calls":{tool_calls}}}]'
            )
            yield DigestSet.digest(item.instruction), DigestSet.digest(dedup_key(item.instruction)), split, body
    except SamplingError as exc:
        errors.append(str(exc))


def _summary(index: int, stream: SampleStream, errors: list[str]) -> dict[str, Any]:
    report = stream.report
    return {"index": index, "attempts": report.attempts, "samples": report.samples,
            "rejected": dict(report.rejected), "error": errors[0] if errors else None,
            "generate_seconds": report.generate_seconds, "verify_seconds": report.verify_seconds,
            **({"coverage": report.progress()} if report.progress is not None else {})}


def _run_chunk(index: int) -> dict[str, Any]:
    """Sample one chunk and serialize its records (runs in a worker, or in-process)."""
    stream = _stream(index, _STATE["chunk_size"])
    errors: list[str] = []
    records = list(_records(stream, errors))
    return {**_summary(index, stream, errors), "records": records}


def _covering_head(budget: int) -> dict[str, Any]:
    """Chunk 0 of a coverage corpus: one coverage-guided stream that runs until every target is
    covered or given up (or ``budget`` samples), written as it comes; ``summary()`` after it."""
    stream = _stream(0, budget, until_covered=True)
    errors: list[str] = []
    return {"index": 0, "records": _records(stream, errors), "summary": lambda: _summary(0, stream, errors)}


def _chunks(workers: int, start_method: str | None, first: int = 0) -> Iterator[dict[str, Any]]:
    """Chunk results in index order from ``first``, computed by ``workers`` processes (or in-process for 1)."""
    if workers <= 1:
        index = first
        while True:
            yield _run_chunk(index)
            index += 1
    context = multiprocessing.get_context(start_method or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"))
    if context.get_start_method() != "fork":
        raise InvalidArgument("workers > 1 needs the 'fork' start method (Linux, macOS with fork)")
    with context.Pool(workers) as pool:
        pending: deque[Any] = deque()
        index = first
        while True:
            while len(pending) < 2 * workers:
                pending.append(pool.apply_async(_run_chunk, (index,)))
                index += 1
            yield pending.popleft().get()


# -- writing ------------------------------------------------------------------------------------------


def _file_hash(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def grammar_hash(grammar: Grammar) -> str:
    """SHA-256 over the grammar's files (main and imported, by name and text) and its tool schemas."""
    digest = hashlib.sha256()
    for source in sorted(grammar.files, key=lambda f: (Path(f.path).name, f.text)):
        digest.update(Path(source.path).name.encode() + b"\0" + source.text.encode("utf-8") + b"\0")
    tools_path = Path(grammar.tools.source)
    if tools_path.is_file():
        digest.update(tools_path.read_bytes())
    else:
        digest.update(json.dumps(grammar.tools.function_definitions(), sort_keys=True).encode())
    return digest.hexdigest()


class _Shards:
    def __init__(self, out_dir: Path, shard_size: int) -> None:
        self.out_dir = out_dir
        self.shard_size = shard_size
        self.open: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
        self.done: list[dict[str, Any]] = []
        self.index: Counter[str] = Counter()

    def write(self, split: str, line: str) -> None:
        entry = self.open.get(split)
        if entry is None or entry[2]["records"] >= self.shard_size:
            if entry is not None:
                self._close(split)
            name = f"{split}-{self.index[split]:05d}.jsonl"
            self.index[split] += 1
            handle = open(self.out_dir / name, "w", encoding="utf-8", newline="\n")
            entry = (handle, hashlib.sha256(), {"file": name, "split": split, "records": 0})
            self.open[split] = entry
        data = line + "\n"
        entry[0].write(data)
        entry[1].update(data.encode("utf-8"))
        entry[2]["records"] += 1

    def _close(self, split: str) -> None:
        handle, digest, info = self.open.pop(split)
        handle.close()
        info["sha256"] = digest.hexdigest()
        self.done.append(info)

    def close(self) -> list[dict[str, Any]]:
        for split in list(self.open):
            self._close(split)
        return sorted(self.done, key=lambda s: s["file"])


def _molecule_lexicon(grammar: Grammar) -> dict[str, str]:
    """Name -> SMILES of the grammar's lexicon when its tools take molecules (else empty)."""
    if grammar.lexicon is None or not grammar.tools.takes_molecules:
        return {}
    return {name: smiles for name in grammar.lexicon.names if (smiles := grammar.lexicon.smiles(name))}


def write_corpus(
    grammar: Grammar,
    out_dir: str | Path,
    *,
    n: int,
    strategy: SamplingStrategy | str = SamplingStrategy.WEIGHTED,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
    chunk_size: int = 1000,
    shard_size: int = 100_000,
    heldout: float = 0.1,
    heldout_keep: Iterable[str] | None = None,
    tools_in_records: bool = True,
    dedup: bool = True,
    dedup_capacity: int | None = None,
    max_idle_chunks: int = 20,
    start_method: str | None = None,
    until_covered: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Write a verified, deduplicated, split corpus of ``n`` instructions to ``out_dir``.

    The CLI ``grammar-engine sample DOMAIN_DIR -n N --strategy S --seed SEED --output DIR
    [--workers W]`` should call ``write_corpus(grammar, DIR, n=N, strategy=S, seed=SEED, workers=W,
    progress=True)`` and print the returned ``counts`` (and ``run`` for speed).

    Parameters
    ----------
    grammar
        The domain grammar.
    out_dir
        Folder for the shards and ``manifest.json`` (created; existing shards are overwritten).
    n
        Records to write (fewer when the grammar's language runs out: ``exhausted`` in the manifest).
    strategy, seed
        As for :func:`grammar_engine.sampling.sample`.
    workers
        Processes computing chunks ahead (output is identical for any value).
    progress
        Show a tqdm progress bar on stderr.
    chunk_size
        Samples per chunk, at most ``n`` (part of the output's identity: keep it fixed to reproduce
        a corpus).
    shard_size
        Records per shard file.
    heldout
        Share of call phrasings held out (0 disables the heldout split).
    heldout_keep
        Call phrasings never held out. None (default): those the recordings use (``recordings`` in
        ``options``, else the domain's ``recorded.jsonl``), so the train split has every phrasing
        people wrote and the held-out split measures phrasings nobody recorded; ``()``: any
        phrasing may be held out.
    tools_in_records
        Repeat the function definitions in every record (the manifest always has them).
    dedup
        Drop exact and normalized duplicates.
    dedup_capacity
        Slots per dedup table (default: the power of two at least ``2 * n``).
    max_idle_chunks
        Stop after this many consecutive chunks add no new record.
    start_method
        Multiprocessing start method (default ``fork``).
    until_covered
        Coverage strategy only: write the covering head alone, ending once every target is
        covered or given up (``n`` is then a budget; ``covering_head`` in the manifest says how it ended).
    **options
        Passed to :func:`~grammar_engine.sampling.sample` (``verify``, ``temperature``, ...).

    Returns
    -------
    dict
        The manifest as written, plus ``run`` (seconds and rates, not written, since they vary).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise InvalidArgument(f"n must be a whole number >= 0, got {n!r}")
    if not isinstance(workers, int) or workers < 1:
        raise InvalidArgument(f"workers must be a whole number >= 1, got {workers!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidArgument(f"chunk_size must be a whole number >= 1, got {chunk_size!r}")
    chunk_size = min(chunk_size, max(n, 1))  # a small corpus does not draw a whole default chunk
    if not isinstance(shard_size, int) or shard_size < 1:
        raise InvalidArgument(f"shard_size must be a whole number >= 1, got {shard_size!r}")
    key = strategy.value if isinstance(strategy, SamplingStrategy) else str(strategy)
    _strategy_factory(key)  # unknown strategy: fail before any work
    covering = key == SamplingStrategy.COVERAGE.value
    if not isinstance(until_covered, bool):
        raise InvalidArgument(f"until_covered must be True or False, got {until_covered!r}")
    if until_covered and not covering:
        raise InvalidArgument(f"until_covered (--until-covered) needs the coverage strategy (--strategy coverage), not {key!r}")
    options.setdefault("session_length", DEFAULT_SESSION_LENGTH)  # recorded in the manifest
    options.setdefault("sentence_case", DEFAULT_SENTENCE_CASE)
    for name, value in recorded_defaults(key).items():  # session_start, casing; None asks for the default
        if options.get(name) is None:
            options[name] = value
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("train-*.jsonl")) + list(out.glob("heldout-*.jsonl")):
        old.unlink()
    if heldout and heldout_keep is None:
        heldout_keep = recorded_phrasings(grammar, options.get("recordings"))
    held = heldout_phrasings(grammar, heldout, seed, keep=heldout_keep or ()) if heldout else []
    verify = options.get("verify", "auto")
    verifier = verifier_for(grammar, verify) if verify != "off" else None
    # warm the per-grammar caches (weights, coverage tables, value sources) before workers fork
    sample(grammar, 1, strategy=key, seed=seed, **options).attempt()
    tools = grammar.tools.function_definitions()
    tools_json = json.dumps(tools, ensure_ascii=False, separators=_SEPARATORS)
    _STATE.clear()
    _STATE.update(grammar=grammar, chunk_size=chunk_size, strategy=key, seed=seed, options=options,
                  heldout=frozenset(held))
    capacity = dedup_capacity or max(2 * n, 1024)
    exact, normal = DigestSet(capacity), DigestSet(capacity)
    counts: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    shards = _Shards(out, shard_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, file=sys.stderr, unit="instr", desc=f"sample {grammar.domain}")
    started = time.perf_counter()
    generate = verify_s = 0.0
    idle = 0
    exhausted = False
    head: dict[str, Any] | None = None
    prefix = json.dumps(f"{grammar.domain}-{seed}-", ensure_ascii=False)[:-1]
    try:
        if n:
            chunks: Iterator[dict[str, Any]] = (
                itertools.chain([_covering_head(n)], () if until_covered else _chunks(workers, start_method, 1))
                if covering else _chunks(workers, start_method))
            for chunk in chunks:
                streamed = "summary" in chunk  # the covering head: written as it comes, summed up after
                added = 0
                for exact_digest, norm_digest, split, body in chunk["records"]:
                    if dedup:
                        if not exact.add(exact_digest):
                            counts["duplicates_exact"] += 1
                            continue
                        if not normal.add(norm_digest):
                            counts["duplicates_normalized"] += 1
                            continue
                    line = f'{{"id":{prefix}{counts["written"]:08d}",{body}' + (
                        f',"tools":{tools_json}}}' if tools_in_records else "}"
                    )
                    shards.write(split, line)
                    counts["written"] += 1
                    counts[split] += 1
                    added += 1
                    if bar is not None and streamed:
                        bar.update(1)
                    if counts["written"] >= n:
                        break
                stats = chunk["summary"]() if streamed else chunk
                if bar is not None and not streamed:
                    bar.update(added)
                counts["chunks"] += 1
                counts["attempts"] += stats["attempts"]
                counts["generated"] += stats["samples"]
                rejected.update(stats["rejected"])
                generate += stats["generate_seconds"]
                verify_s += stats["verify_seconds"]
                if streamed:
                    head = {**stats["coverage"], "samples": stats["samples"], "until_covered": until_covered}
                if stats["error"] and not stats["samples"]:
                    raise SamplingError(f"chunk {stats['index']} produced nothing: {stats['error']}")
                if counts["written"] >= n:
                    break
                idle = 0 if added else idle + 1
                if idle >= max_idle_chunks:
                    exhausted = True
                    break
    finally:
        if bar is not None:
            bar.close()
        shard_list = shards.close()
        _STATE.clear()
    elapsed = time.perf_counter() - started
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "domain": grammar.domain,
        "grammar_hash": grammar_hash(grammar),
        "recordings_hash": _file_hash(grammar.recorded_path),
        "strategy": key,
        "seed": seed,
        "n": n,
        "options": {k: v for k, v in sorted(options.items()) if isinstance(v, (str, int, float, bool, type(None)))},
        "chunk_size": chunk_size,
        "heldout_fraction": heldout,
        "heldout_phrasings": held,
        "counts": {
            "written": counts["written"], "train": counts["train"], "heldout": counts["heldout"],
            "generated": counts["generated"], "attempts": counts["attempts"], "chunks": counts["chunks"],
        },
        "rejected": dict(sorted(rejected.items())),
        "dedup": {
            "enabled": dedup, "exact": counts["duplicates_exact"], "normalized": counts["duplicates_normalized"],
            "capacity": exact.mask + 1, "saturated": exact.saturated or normal.saturated,
        },
        "exhausted": exhausted,
        **({"covering_head": head} if head is not None else {}),
        "verifier": verifier.describe() if verifier is not None else {"kind": "off"},
        "shards": shard_list,
        "tools": tools,
    }
    molecules = _molecule_lexicon(grammar)
    if molecules:
        manifest["molecules"] = molecules
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    run = {
        "seconds": round(elapsed, 3), "workers": workers,
        "written_per_second": round(counts["written"] / elapsed, 1) if elapsed else 0.0,
        "raw_per_second": round(counts["attempts"] / generate, 1) if generate else 0.0,
        "verified_per_second_per_worker": round(counts["generated"] / (generate + verify_s), 1) if generate + verify_s else 0.0,
    }
    return {**manifest, "run": run}


def read_corpus(out_dir: str | Path, *, split: str | None = None) -> Iterator[dict[str, Any]]:
    """Iterate the records of a corpus written by :func:`write_corpus` (shard order, line order).

    Raises
    ------
    CorpusFormatError
        For a line that is not a JSON object.
    """
    folder = Path(out_dir)
    names = sorted(p for p in folder.glob("*.jsonl") if split is None or p.name.startswith(f"{split}-"))
    for path in names:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusFormatError(f"{path}:{number}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise CorpusFormatError(f"{path}:{number}: a record must be a JSON object")
                yield record
