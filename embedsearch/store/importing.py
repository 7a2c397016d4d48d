"""Import an export (store/portable.py describes the files) into a collection, using its vectors
as they are when they come from the target's model, re-embedding the text otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError, DimensionMismatch
from embedsearch.store.portable import BATCH, HEADER, file_kind

COMMIT_EVERY = 20_000  # documents an import commits at once (their vectors: 80 MB at 1,024 dimensions)


def read_header(path: Path) -> dict[str, Any] | None:
    """The export's record of its model (None when the file has none)."""
    if file_kind(path) == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(str(path)).schema_arrow.metadata or {}
        raw = meta.get(b"embedsearch")
        return json.loads(raw) if raw else None
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        doc = json.loads(first) if first.strip() else None
    except ValueError:
        return None
    return doc.get(HEADER) if isinstance(doc, dict) and isinstance(doc.get(HEADER), dict) else None


def _rows(path: Path) -> Iterator[list[dict[str, Any]]]:
    """The file's documents in batches: dicts with id, text, metadata (a dict), vector (or None)."""
    if file_kind(path) == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(str(path))
        names = pf.schema_arrow.names
        for missing in {"id", "text"} - set(names):
            raise CorpusError(f"{path.name}: no {missing!r} column")
        cols = [c for c in ("id", "text", "metadata", "vector") if c in names]
        line = 0
        for batch in pf.iter_batches(batch_size=BATCH, columns=cols):
            data = batch.to_pydict()
            out = []
            for i in range(batch.num_rows):
                line += 1
                meta = data["metadata"][i] if "metadata" in data else None
                out.append({"id": data["id"][i], "text": data["text"][i], "n": line,
                            "metadata": json.loads(meta) if isinstance(meta, str) else (meta or {}),
                            "vector": data["vector"][i] if "vector" in data else None})  # fmt: skip
            yield out
        return
    with open(path, encoding="utf-8") as f:
        out = []
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                raise CorpusError(f"{path.name}, line {n}: not JSON") from None
            if n == 1 and isinstance(doc, dict) and HEADER in doc:
                continue
            if not isinstance(doc, dict) or "id" not in doc or "text" not in doc:
                raise CorpusError(f"{path.name}, line {n}: a document needs 'id' and 'text'")
            out.append({**doc, "n": n, "metadata": doc.get("metadata") or {}, "vector": doc.get("vector")})
            if len(out) >= BATCH:
                yield out
                out = []
        if out:
            yield out


def _vectors(path: Path, batch: list[dict], dim: int) -> np.ndarray:
    where = "row" if file_kind(path) == "parquet" else "line"
    for d in batch:
        v = d["vector"]
        if v is None:
            raise DimensionMismatch(f"{path.name}, {where} {d['n']} (id {d['id']!r}): no vector")
        if not isinstance(v, (list, tuple, np.ndarray)) or not all(isinstance(x, (int, float)) for x in v):
            raise DimensionMismatch(f"{path.name}, {where} {d['n']} (id {d['id']!r}): the vector is not a list of numbers")
        if len(v) != dim:
            raise DimensionMismatch(
                f"{path.name}, {where} {d['n']} (id {d['id']!r}): a {len(v)}-d vector; the collection is {dim}-d"
            )
    vectors = np.asarray([d["vector"] for d in batch], dtype=np.float32).reshape(len(batch), dim)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        d = batch[int(np.argmax(bad))]
        raise DimensionMismatch(f"{path.name}, {where} {d['n']} (id {d['id']!r}): the vector holds NaN or infinity")
    return vectors


def import_file(store, path: Path, into: str, *, model: str | None = None, load_embedder=None, lexical: bool = True,
                progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Import ``path`` into collection ``into`` (created with ``model``, default the file's, when
    it does not exist). ``load_embedder(spec)`` loads a model (default: the registry's).
    Returns counts and whether the vectors were used as they are (``reused``) and why not."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    if load_embedder is None:
        from embedsearch.embedders import load_embedder
    head = read_header(path) or {}
    chunked_file = bool(head.get("chunked"))
    created = False
    embedder = None
    if store.exists(into):
        coll = store.open(into)
    else:
        spec = model or head.get("model")
        if not spec:
            raise CorpusError(f"{path.name} does not say which model made its vectors: give --model")
        embedder = load_embedder(spec)
        coll = None
    fingerprint = coll.model_fingerprint if coll is not None else embedder.fingerprint
    dim = coll.dim if coll is not None else embedder.dim
    reason = None
    if not head:
        reason = "the file does not record its model"
    elif head.get("model_fingerprint") != fingerprint:
        reason = f"the file's vectors are from {head.get('model')!r}, a different model (fingerprint) than the collection's"
    elif chunked_file:
        reason = "the file holds passage vectors; they are re-made with the collection's chunking"
    elif coll is not None and coll.chunking is not None:
        reason = "the collection splits documents into passages"
    reuse = reason is None
    if reuse:  # the whole file is checked before anything is written
        for batch in _rows(path):
            _vectors(path, batch, dim)
    if coll is None:
        coll = store.create(into, embedder, metric=head.get("metric") or "cosine", lexical=lexical)
        created = True
    total = 0
    if not reuse and embedder is None:
        embedder = coll.load_embedder()
    pending: list[dict] = []

    def flush() -> int:
        docs = [Document(str(d["id"]), d["text"], d["metadata"]) for d in pending]
        if reuse:
            coll.add_vectors(docs, _vectors(path, pending, dim))
        else:
            coll.add_documents(docs, embedder, progress=progress)
        pending.clear()
        return len(docs)

    for batch in _rows(path):  # commits of COMMIT_EVERY documents: fewer commits, memory still bounded
        pending.extend(batch)
        if len(pending) >= COMMIT_EVERY:
            total += flush()
    if pending:
        total += flush()
    return {"collection": into, "file": str(path), "documents": total, "reused_vectors": reuse,
            "re_embedded_because": reason, "created": created, "model": coll.model}  # fmt: skip
