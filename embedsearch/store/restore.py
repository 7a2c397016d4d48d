"""Restore a snapshot (store/snapshot_format.py) into this store's database and data directory,
which may be another kind of database than the one it was taken from (SQLite -> PostgreSQL and
back is how a collection moves between them).

Nothing becomes visible before it is whole and verified:

1. the file is streamed once: the manifest is checked (format, version), every member's size
   and sha256 are checked as it is extracted into a staging directory of the data directory; a
   damaged or truncated file is refused naming the member, and the staging directory goes;
2. the collection's rows are inserted in one transaction under a temporary name
   (``restoring-<hex>``), its files moved into that name's directory; payload entries and the
   lexical index are rebuilt from the documents in the same transaction;
3. ``verify`` checks it (files, checksums, ids, counts; not the model, which this machine may
   not have: searching then says which model is needed);
4. it gets its name: the directory is renamed, then the row, in one transaction (a failure
   renames the directory back). With ``replace``, the old collection is dropped only now,
   after the new one is whole and verified, and the name is taken right after: for that
   moment the name is missing (not an atomic swap; readers that hold the old collection open
   keep their open files).

Any failure before 4 drops the temporary collection and its files: nothing is left behind.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from embedsearch.config import validate_collection_name
from embedsearch.errors import CollectionExists, InconsistentCollection
from embedsearch.store import deleter, lexical, payload, search_settings
from embedsearch.store.locks import file_lock
from embedsearch.store.metadata import collections, documents, passages, segments, tombstones, trainings
from embedsearch.store.snapshot_format import SnapshotError, read_jsonl, read_members, remove_stale

_BATCH = 2000
_ROW_KEYS = ("model", "model_fingerprint", "embedder_config", "dim", "metric", "index_spec", "active_spec",
             "generation", "next_row_id", "doc_count")  # fmt: skip


def verify_snapshot(path: Path) -> dict[str, Any]:
    """Check a snapshot file without restoring it; returns its manifest. Raises SnapshotError."""
    return read_members(Path(path))


def _extract(path: Path, staging: Path) -> dict[str, Any]:
    def sink(name: str, chunks) -> None:
        kind, _, base = name.partition("/")
        with open(staging / kind / base, "wb") as f:
            for chunk in chunks:
                f.write(chunk)

    (staging / "rows").mkdir(parents=True)
    (staging / "files").mkdir()
    return read_members(path, sink)


def _batches(rows, n: int = _BATCH):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert_rows(conn, cid: int, staging: Path, doc: dict[str, Any]) -> None:
    rows = staging / "rows"
    gen = int(doc["generation"])
    for table, file in ((documents, "documents"), (passages, "passages"), (tombstones, "tombstones"),
                        (segments, "segments"), (trainings, "trainings")):  # fmt: skip
        for batch in _batches(read_jsonl(rows / f"{file}.jsonl")):
            columns = set(table.c.keys())
            rows_ = [{**{k: v for k, v in r.items() if k in columns}, "collection_id": cid} for r in batch]
            conn.execute(insert(table), rows_)
    fields = [r["field"] for r in read_jsonl(rows / "payload_fields.jsonl")]
    if fields:
        payload.add_fields(conn, cid, fields, gen)
    if doc.get("lexical"):
        lexical.create(conn, cid, gen)
    for settings in read_jsonl(rows / "search_settings.jsonl"):
        search_settings.write(conn, cid, settings)


def restore(store, path: Path, name: str | None = None, *, replace: bool = False) -> dict[str, Any]:
    """Restore the snapshot at ``path`` as collection ``name`` (default: the name it was taken
    from); see the module docstring. Returns name, generation, counts, and what was replaced."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"{path}: no such file")
    data_dir = store.settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    remove_stale(data_dir / ".snapshots")
    staging = data_dir / ".snapshots" / f"restore-{os.getpid()}-{token}"
    temp = f"restoring-{token}"
    cid = None
    try:
        doc = _extract(path, staging)
        source = doc["collection"]
        missing = [k for k in ("name", *_ROW_KEYS) if not isinstance(source, dict) or k not in source]
        if missing:
            raise SnapshotError(f"manifest.json: the collection row has no {missing[0]!r}")
        name = validate_collection_name(name or source["name"])
        if not replace and store.exists(name):
            raise CollectionExists(f"collection {name!r} already exists (restore --as ANOTHER, or --replace)")
        directory = store.settings.collection_dir(temp)
        os.replace(staging / "files", directory)
        now = datetime.now().astimezone()
        created = source.get("created_at")
        with store.engine.begin() as conn:
            values = {k: source[k] for k in _ROW_KEYS}
            cid = conn.execute(
                insert(collections).values(
                    name=temp, **values, created_at=datetime.fromisoformat(created) if created else now, updated_at=now
                )
            ).inserted_primary_key[0]
            _insert_rows(conn, cid, staging, doc)
        coll = store.open(temp)
        report = coll.verify(check_model=False)
        if not report.ok:
            raise InconsistentCollection(f"the restored collection does not verify: {'; '.join(report.problems)}")
        replaced = False
        if replace and store.exists(name):
            store.drop(name)
            replaced = True
        _rename(store, cid, temp, name)
        cid = None
    except BaseException:
        if cid is not None:
            _discard(store, temp)
        deleter.remove_directory(store.settings.collection_dir(temp))
        raise
    finally:
        deleter.remove_directory(staging)
    return {
        "collection": name,
        "from": source["name"],
        "generation": int(doc["generation"]),
        "counts": doc["counts"],
        "model": source["model"],
        "replaced": replaced,
    }


def _rename(store, cid: int, temp: str, name: str) -> None:
    old, new = store.settings.collection_dir(temp), store.settings.collection_dir(name)
    with file_lock(store.lock_path(name)):  # what create holds while it makes a directory and a row
        if store.fetch_row(name) is not None:  # created meanwhile
            raise CollectionExists(f"collection {name!r} already exists (restore --as ANOTHER, or --replace)")
        if new.exists():  # left by an interrupted drop or create: no row names it
            deleter.remove_directory(new)
        os.replace(old, new)
        try:
            with store.engine.begin() as conn:
                conn.execute(update(collections).where(collections.c.id == cid).values(name=name))
        except BaseException:
            os.replace(new, old)
            raise
    store.forget(temp)


def _discard(store, temp: str) -> None:
    try:
        store.drop(temp)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def describe(doc: dict[str, Any]) -> dict[str, Any]:
    """What a snapshot holds, from its manifest (for verify-snapshot's output)."""
    c = doc["collection"]
    return {
        "collection": c["name"],
        "model": c["model"],
        "model_fingerprint": c["model_fingerprint"],
        "dim": c["dim"],
        "metric": c["metric"],
        "generation": doc["generation"],
        "embedsearch_version": doc.get("embedsearch_version"),
        "created_at": doc.get("created_at"),
        "counts": doc["counts"],
        "members": len(doc["members"]),
        "bytes": sum(m["bytes"] for m in doc["members"].values()),
    }


__all__ = ["SnapshotError", "describe", "restore", "verify_snapshot"]
