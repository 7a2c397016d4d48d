"""Export and import documents with their vectors: Parquet or JSONL files other tools can read.

One row per document: ``id``, ``text``, ``metadata`` (a JSON string column in Parquet, an object
in JSONL) and ``vector`` (Parquet: fixed_size_list<float32>[dim], readable as-is by pandas,
DuckDB and LanceDB). In a collection with passages, ``vector`` is absent and ``passages`` holds
each document's passages as a list of {start, end, vector} (its text[start:end]).

What model made the vectors travels with them: Parquet file metadata ``embedsearch`` (JSON:
model, model_fingerprint, dim, metric, collection, generation); in JSONL a first line
``{"embedsearch_export": {...}}``. An export is of one committed generation (store/snapshot.py
pins it; writers go on) and streams in batches, so memory stays bounded. Vectors are those
stored: exact for Flat, HNSW, IVF-Flat and refined specs; decoded (approximate) for SQ and PQ.

Import uses the vectors as they are when the file's model fingerprint is the target
collection's (or the target is created from the file's model), without calling the model;
otherwise it re-embeds the text with the target's model, and says so. The whole file is
checked (dimension, NaN and infinity) before anything is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from embedsearch.errors import InvalidArgument
from embedsearch.store import deleter
from embedsearch.store.filters import parse_filter
from embedsearch.store.growing import read_records
from embedsearch.store.metadata import documents, passages
from embedsearch.store.segments import Segment
from embedsearch.store.snapshot import pinned, staging_dir

BATCH = 2000
HEADER = "embedsearch_export"


def file_kind(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise InvalidArgument(f"{path}: give a .parquet or .jsonl file name")


class _Vectors:
    """Stored vectors by row id, from the pinned generation's files."""

    def __init__(self, pin, dim: int) -> None:
        self.metas = pin.metas
        self.lows = np.array([m.row_lo for m in pin.metas], dtype=np.int64)
        self.files, self.dim = pin.files, dim
        self.open: dict[int, Any] = {}

    def _segment(self, i: int):
        if i not in self.open:
            meta = self.metas[i]
            if meta.state == "growing":
                rec = read_records(self.files / meta.file, self.dim, 0, meta.count)
                self.open[i] = (rec["id"], rec["v"])
            else:
                self.open[i] = Segment.open(self.files, meta, self.dim)
        return self.open[i]

    def get(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        where = np.searchsorted(self.lows, ids, side="right") - 1
        for i in np.unique(where):
            mask = where == i
            seg = self._segment(int(i))
            if isinstance(seg, tuple):
                pos = np.searchsorted(seg[0], ids[mask])
                out[mask] = seg[1][pos]
            else:
                out[mask] = seg.vectors(ids[mask])
        return out


def _header(coll, pin) -> dict[str, Any]:
    from embedsearch import __version__

    row = pin.row
    return {"model": row["model"], "model_fingerprint": row["model_fingerprint"], "dim": int(row["dim"]),
            "metric": row["metric"], "collection": coll.name, "generation": pin.generation,
            "chunked": coll.chunking is not None, "embedsearch_version": __version__, "format_version": 1}  # fmt: skip


def _batches(coll, pin, where) -> Iterator[list[dict[str, Any]]]:
    """The pinned generation's documents (matching ``where``) with their vectors, in batches."""
    conn = pin.conn
    spec = parse_filter(where) or None
    cond = coll.filter_condition(conn, spec) if spec else None
    vectors = _Vectors(pin, int(pin.row["dim"]))
    last = -1
    while True:
        query = select(documents.c.row_id, documents.c.external_id, documents.c.text, documents.c.meta).where(
            documents.c.collection_id == coll.id, documents.c.row_id > last
        )
        if cond is not None:
            query = query.where(cond)
        rows = conn.execute(query.order_by(documents.c.row_id).limit(BATCH)).all()
        if not rows:
            return
        last = rows[-1][0]
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        out = [{"id": r[1], "text": r[2], "metadata": r[3]} for r in rows]
        if coll.chunking is None:
            for d, v in zip(out, vectors.get(ids), strict=True):
                d["vector"] = v
        else:
            prow = conn.execute(
                select(passages.c.doc_row_id, passages.c.row_id, passages.c.char_start, passages.c.char_end)
                .where(passages.c.collection_id == coll.id, passages.c.doc_row_id.in_([int(i) for i in ids]))
                .order_by(passages.c.row_id)
            ).all()
            pvec = vectors.get(np.array([p[1] for p in prow], dtype=np.int64))
            by_doc: dict[int, list] = {}
            for p, v in zip(prow, pvec, strict=True):
                by_doc.setdefault(p[0], []).append({"start": p[2], "end": p[3], "vector": v})
            for d, rid in zip(out, ids.tolist(), strict=True):
                d["passages"] = by_doc.get(rid, [])
        yield out


def export(coll, target: Path, where: dict | str | None = None) -> dict[str, Any]:
    """Write ``coll``'s documents (matching ``where``) with their vectors to ``target``
    (.parquet or .jsonl; a temp file renamed at the end). Returns counts and the header."""
    target = Path(target)
    kind = file_kind(target)
    staging = staging_dir(coll, "export")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with pinned(coll, staging) as pin:
            head = _header(coll, pin)
            write = _parquet_writer if kind == "parquet" else _jsonl_writer
            with write(tmp, head, coll.chunking is not None) as put:
                for batch in _batches(coll, pin, where):
                    put(batch)
                    n += len(batch)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        deleter.remove_directory(staging)
    return {"collection": coll.name, "file": str(target), "documents": n, **{k: head[k] for k in ("model", "dim", "generation")}}


class _Writer:
    def __init__(self, close: Callable[[], None], put: Callable[[list], None]) -> None:
        self.close, self.put = close, put

    def __enter__(self):
        return self.put

    def __exit__(self, *exc) -> None:
        self.close()


def _jsonl_writer(path: Path, head: dict, chunked: bool) -> _Writer:
    f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the writer
    f.write(json.dumps({HEADER: head}) + "\n")

    def put(batch: list) -> None:
        for d in batch:
            if chunked:
                d = {**d, "passages": [{**p, "vector": p["vector"].tolist()} for p in d["passages"]]}
            else:
                d = {**d, "vector": d["vector"].tolist()}
            f.write(json.dumps(d, ensure_ascii=False, allow_nan=False) + "\n")

    return _Writer(f.close, put)


def arrow_schema(dim: int, chunked: bool, head: dict | None = None):
    import pyarrow as pa

    vec = pa.list_(pa.float32(), dim)
    fields = [pa.field("id", pa.string()), pa.field("text", pa.string()), pa.field("metadata", pa.string())]
    if chunked:
        fields.append(pa.field("passages", pa.list_(pa.struct([("start", pa.int32()), ("end", pa.int32()), ("vector", vec)]))))
    else:
        fields.append(pa.field("vector", vec))
    return pa.schema(fields, metadata={"embedsearch": json.dumps(head)} if head else None)


def _parquet_writer(path: Path, head: dict, chunked: bool) -> _Writer:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(head["dim"], chunked, head)
    writer = pq.ParquetWriter(str(path), schema)

    def put(batch: list) -> None:
        cols = {
            "id": [d["id"] for d in batch],
            "text": [d["text"] for d in batch],
            "metadata": [json.dumps(d["metadata"], ensure_ascii=False) for d in batch],
        }
        if chunked:
            cols["passages"] = [[{**p, "vector": p["vector"]} for p in d["passages"]] for d in batch]
        else:
            flat = pa.array(np.stack([d["vector"] for d in batch]).reshape(-1), pa.float32())
            cols["vector"] = pa.FixedSizeListArray.from_arrays(flat, head["dim"])
        writer.write_table(pa.table(cols, schema=schema))

    return _Writer(writer.close, put)
