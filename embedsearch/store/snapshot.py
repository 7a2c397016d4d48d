"""Hot snapshots: one collection as of one committed generation, written as one file
(store/snapshot_format.py) while writers and merges go on.

How it stays at one generation without blocking writers for longer than a commit:

1. holding the collection's writer locks (store/locks.py: the writer lock, then the write lock
   file; a merge commits under the same locks, so nothing commits meanwhile), it opens a read
   transaction that sees generation G (SQLite: a read transaction on a WAL database is a
   snapshot; PostgreSQL: REPEATABLE READ), reads the segment list and trainings at G, and
   hard-links every file G names into a staging directory in the data directory (copies when
   the filesystem cannot link). Then it lets go of the locks;
2. later commits and merges may delete those files (store/deleter.py): the links keep them; a
   growing log only grows past the committed count G recorded, and the snapshot copies only
   that prefix;
3. it reads the rows (documents, passages, tombstones, ...) in the same read transaction, so
   they are those of G however many commits land meanwhile, and writes the file (a temp file
   beside the target, renamed: a failure such as a full disk leaves no file).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select

from embedsearch.errors import InvalidArgument
from embedsearch.store import deleter, manifest, search_settings
from embedsearch.store.growing import record_dtype
from embedsearch.store.locks import file_lock
from embedsearch.store.metadata import (
    collections,
    documents,
    passages,
    payload_fields,
    public_row,
    snapshots_taken,
    tombstones,
)
from embedsearch.store.segment_files import SegmentMeta, segment_files
from embedsearch.store.snapshot_format import (
    FORMAT,
    FORMAT_VERSION,
    file_sha256,
    remove_stale,
    write_jsonl,
    write_tar,
)

_BATCH = 2000


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or one without hard links
        shutil.copyfile(src, dst)


def _copy_prefix(src: Path, dst: Path, size: int) -> None:
    with open(src, "rb") as f, open(dst, "wb") as out:
        left = size
        while left:
            chunk = f.read(min(left, 1 << 22))
            if not chunk:
                raise InvalidArgument(f"{src.name}: shorter than its committed records")
            out.write(chunk)
            left -= len(chunk)


def _read_connection(engine):
    """A connection whose reads all see one committed state until it is closed."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.begin()
    else:  # pysqlite begins no transaction for a SELECT: begin one, so that the reads share one WAL snapshot
        conn.exec_driver_sql("BEGIN")
    return conn


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _rows(conn, table, cid: int, order) -> Any:
    """A table's rows of the collection, in batches of ``_BATCH`` by ``order`` (bounded memory)."""
    last = None
    while True:
        query = select(table).where(table.c.collection_id == cid)
        if last is not None:
            query = query.where(order > last)
        batch = conn.execute(query.order_by(order).limit(_BATCH)).mappings().all()
        for row in batch:
            out = dict(row)
            out.pop("collection_id", None)
            yield _jsonable(out)
        if len(batch) < _BATCH:
            return
        last = batch[-1][order.name]


@dataclass
class Pinned:
    """One committed generation of a collection, held: an open read transaction at it (``conn``)
    and links to every file it names (``files``), which later merges cannot take away."""

    conn: Any
    row: dict[str, Any]
    metas: list[SegmentMeta]
    trainings: list[manifest.Training]
    files: Path

    @property
    def generation(self) -> int:
        return int(self.row["generation"])


@contextmanager
def pinned(coll, staging: Path) -> Iterator[Pinned]:
    """Pin ``coll``'s committed generation (see the module docstring): holds its writer locks
    only while the read transaction starts and the files are linked into ``staging``/files
    (the growing log cut to its committed prefix)."""
    store = coll.store
    (staging / "files").mkdir(parents=True)
    conn = None
    try:
        with coll.writer_lock(), file_lock(store.lock_path(coll.name)):
            conn = _read_connection(store.engine)
            row = conn.execute(select(collections).where(collections.c.id == coll.id)).mappings().first()
            if row is None:
                raise InvalidArgument(f"collection {coll.name!r} no longer exists")
            if not manifest.has_segments(conn, coll.id):
                raise InvalidArgument(
                    f"collection {coll.name!r} is in the single-file format of older versions; "
                    f"run `embedsearch index optimize {coll.name}` once first"
                )
            metas = manifest.read_segments(conn, coll.id)
            trains = manifest.read_trainings(conn, coll.id)
            for meta in metas:
                for name in segment_files(meta):
                    _link_or_copy(coll.dir / name, staging / "files" / name)
            for t in trains:
                _link_or_copy(coll.dir / t.file, staging / "files" / t.file)
        # the locks are free again: the rest reads the transaction's snapshot and the linked files
        rec = record_dtype(int(row["dim"])).itemsize
        for meta in metas:
            if meta.state == "growing":  # only the committed prefix of the log
                linked = staging / "files" / meta.file
                _copy_prefix(linked, staging / "files" / f"{meta.file}.prefix", meta.count * rec)
                os.replace(staging / "files" / f"{meta.file}.prefix", linked)
        yield Pinned(conn, dict(row), metas, trains, staging / "files")
    finally:
        if conn is not None:
            conn.close()


def staging_dir(coll, kind: str) -> Path:
    """A new staging directory in the data directory (hard links need the same filesystem)."""
    root = coll.store.settings.data_dir / ".snapshots"
    remove_stale(root)
    return root / f"{kind}-{coll.name}-{os.getpid()}-{secrets.token_hex(4)}"


def take_snapshot(coll, target: Path) -> dict[str, Any]:
    """Write a snapshot of ``coll`` to ``target`` (``.tar``, or ``.tar.zst``); returns what it
    wrote: file, generation, counts, bytes, seconds."""
    started = time.monotonic()
    target = Path(target)
    if target.is_dir():
        raise InvalidArgument(f"{target}: is a directory; give the snapshot's file name")
    if not target.parent.is_dir():
        raise InvalidArgument(f"{target.parent}: no such directory")
    staging = staging_dir(coll, "snapshot")
    try:
        with pinned(coll, staging) as pin:
            conn, row, metas, trains = pin.conn, pin.row, pin.metas, pin.trainings
            (staging / "rows").mkdir()
            def rows(table, order):
                return _rows(conn, table, coll.id, order)

            counts = {
                "documents": rows(documents, documents.c.row_id),
                "passages": rows(passages, passages.c.row_id),
                "tombstones": rows(tombstones, tombstones.c.row_id),
                "segments": (m.to_row() for m in metas),
                "trainings": (dict(t.__dict__) for t in trains),
                "payload_fields": rows(payload_fields, payload_fields.c.field),
            }
            counts = {name: write_jsonl(staging / "rows" / f"{name}.jsonl", it) for name, it in counts.items()}
            settings = search_settings.read(conn, coll.id)
            lexical = bool(settings.pop("lexical"))
            stored = [settings] if any(v is not None for v in settings.values()) else []
            write_jsonl(staging / "rows" / "search_settings.jsonl", stored)
        members = {}
        for kind in ("rows", "files"):
            for path in sorted((staging / kind).iterdir()):
                members[f"{kind}/{path.name}"] = path
        from embedsearch import __version__

        collection_row = public_row(row)
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "embedsearch_version": __version__,
            "created_at": datetime.now().astimezone().isoformat(),
            "collection": collection_row,
            "generation": int(row["generation"]),
            "lexical": lexical,
            "counts": counts,
            "members": {},
        }
        for name, path in members.items():
            size, digest = file_sha256(path)
            doc["members"][name] = {"bytes": size, "sha256": digest}
        size = write_tar(target, doc, members)
    finally:
        deleter.remove_directory(staging)
    return {
        "collection": coll.name,
        "file": str(target),
        "generation": doc["generation"],
        "counts": counts,
        "bytes": size,
        "seconds": round(time.monotonic() - started, 3),
    }


def record_snapshot(coll, result: dict[str, Any]) -> None:
    """Remember ``result`` (what :func:`take_snapshot` returned) as the collection's last snapshot."""
    with coll.store.engine.begin() as conn:
        conn.execute(delete(snapshots_taken).where(snapshots_taken.c.collection_id == coll.id))
        conn.execute(
            insert(snapshots_taken).values(
                collection_id=coll.id,
                taken_at=datetime.now().astimezone(),
                generation=result["generation"],
                file=str(Path(result["file"]).resolve()),
                bytes=result["bytes"],
            )
        )


def last_snapshot(coll) -> dict[str, Any] | None:
    """The last snapshot taken through the CLI: time, generation, file, bytes (None: none yet)."""
    with coll.store.engine.connect() as conn:
        row = conn.execute(select(snapshots_taken).where(snapshots_taken.c.collection_id == coll.id)).mappings().first()
    if row is None:
        return None
    out = {k: row[k] for k in ("taken_at", "generation", "file", "bytes")}
    out["taken_at"] = out["taken_at"].isoformat()
    return out
