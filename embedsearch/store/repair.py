"""Making SQL and the segments agree again (``index repair``), crash-atomically.

A repair first fixes what lives in SQL alone (metadata that is not strict JSON, payload
entries, the single-file format of old collections), each in its own transaction. Then, when
vectors are missing, damaged or (``--rebuild``) to be made anew, it builds every replacement
file first (re-embedded documents as sealed segments, the kept growing segment sealed so the
new segments follow it in row-id order), and swaps them in with **one** commit that also
renumbers the re-embedded documents, tombstones vectors without documents and forgets damaged
templates. A ``kill -9`` anywhere before that commit leaves the collection as it was (the
files written are leftovers the next writer removes); after it, the repaired state. The old
segments stay live until their replacements are committed.

A repair ends by verifying again: what it could not fix is raised as
:class:`~embedsearch.errors.RepairIncomplete` (exit 1), never reported as done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select, update

from embedsearch.corpus import Document
from embedsearch.embedders.base import Embedder
from embedsearch.errors import DatabaseDamaged, FingerprintMismatch, RepairIncomplete
from embedsearch.store import batch_rows, manifest
from embedsearch.store.commit import commit
from embedsearch.store.crashpoints import crash_point
from embedsearch.store.growing import create_log, read_records
from embedsearch.store.locks import file_lock
from embedsearch.store.metadata import documents
from embedsearch.store.segment_files import SegmentMeta, segment_file, segment_files, write_sealed
from embedsearch.store.segments import Segment, build_index
from embedsearch.store.specs import parse_spec
from embedsearch.store.verify import (
    document_row_ids,
    documents_of,
    documents_without_passages,
    expected_vectors,
    verify,
)

_EMBED_BATCH = 1024  # documents embedded (and read back in the commit) at a time
_DOC_COLUMNS = (documents.c.row_id, documents.c.external_id, documents.c.text, documents.c.meta, documents.c.content_hash)


@dataclass
class _Plan:
    """What the one repair commit changes."""

    drop: list[SegmentMeta]
    add: list[SegmentMeta] = field(default_factory=list)
    growing: SegmentMeta | None = None  # a new growing segment (the old one was dropped or sealed)
    drop_tombstones: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    orphans: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    drop_trainings: list[int] = field(default_factory=list)
    moved: list[tuple[np.ndarray, np.ndarray, list | None]] = field(default_factory=list)  # (old ids, new ids, spans)
    next_row_id: int = 0
    kept_growing: SegmentMeta | None = None  # the growing segment, when it is readable
    kept_live: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # live vectors that stay


def repair(coll, embedder: Embedder | None, *, rebuild: bool = False, progress: bool = False) -> dict[str, Any]:
    """Fix every problem :func:`verify` reports, or raise saying what is left (see the module
    docstring). Returns what was done."""
    from embedsearch.store.legacy import migrate_legacy

    actions: list[str] = []
    retrain_after = False
    with coll.writer_lock(), file_lock(coll.store.lock_path(coll.name)):
        coll.refresh()
        report = verify(coll, check_model=not rebuild and embedder is None)
        if report.database_damaged:
            raise DatabaseDamaged(next(p for p in report.problems if "integrity check" in p))
        if report.model_changed and not rebuild:
            raise FingerprintMismatch(
                f"model {coll.row['model']} changed on disk since collection {coll.name!r} was built; "
                f"`embedsearch index repair {coll.name} --rebuild` re-embeds every document with it"
            )
        if report.bad_metadata:
            fixed = _fix_metadata(coll, report.bad_metadata)
            actions.append(f"replaced NaN/Infinity with null in the metadata of {fixed} documents")
            report = verify(coll, check_model=False)
        if report.bad_payload:
            from embedsearch.store import payload

            with coll.store.engine.begin() as conn:
                written = payload.rebuild(conn, coll.id, sorted(report.bad_payload), coll.generation)
            coll.forget_selections()
            actions.append(f"rebuilt the payload index on {', '.join(sorted(report.bad_payload))} ({written} entries)")
            report = verify(coll, check_model=False)
        legacy = coll.is_legacy()
        if legacy and not report.needs_rebuild and not rebuild:
            migrate_legacy(coll)
            coll.refresh()
            legacy = False
            actions.append("converted the single vector file into segments")
            report = verify(coll, check_model=False)
        if not rebuild and report.ok:
            coll.remove_leftovers()
            return {"repaired": bool(actions), "actions": actions or ["nothing to repair"], "generation": coll.generation}
        if embedder is None:
            from embedsearch.embedders import load_embedder

            # not the per-process cache: a model that changed on disk must be read as it is now
            embedder = load_embedder(coll.row["model"], options=coll.embedder_options, cache=False)
        if not rebuild:
            coll.check_embedder(embedder)  # partial repairs mix old and new vectors: the same model only
        everything = rebuild or report.needs_rebuild or legacy
        plan, todo = _plan(coll, report, everything, legacy)
        plan.drop_trainings = sorted(set(plan.drop_trainings) | set(report.bad_trainings))
        retrain_after = bool(report.bad_trainings) and not everything
        if len(todo):
            _reembed(coll, embedder, todo, plan, everything, progress)
        crash_point("repair-files")
        values = _commit(coll, embedder, plan, everything)
        coll.forget_view()  # segments may have changed under open files: reopen from the commit
        for m in plan.drop:
            if m.state == "sealed":
                actions.append(f"dropped segment {m.file} ({m.count} vectors)")
        if plan.drop_trainings:
            actions.append(f"dropped {len(plan.drop_trainings)} damaged or replaced trained templates")
        if len(plan.orphans):
            actions.append(f"marked {len(plan.orphans)} vectors without documents as deleted")
        if len(todo):
            actions.append(f"re-embedded {len(todo)} documents" + (" with " + embedder.name if everything else ""))
        coll.remove_leftovers()
    if retrain_after:
        done = coll.retrain_now()
        if done:
            actions.append(f"retrained the {done} template from the stored vectors")
    after = verify(coll, check_model=False)
    if not after.ok:
        raise RepairIncomplete(
            f"collection {coll.name!r}: repair did {'; '.join(actions) or 'nothing'}, but these problems remain: "
            + "; ".join(after.problems)
        )
    return {"repaired": True, "actions": actions or ["nothing to repair"], "generation": values["generation"]}


def _plan(coll, report, everything: bool, legacy: bool) -> tuple[_Plan, np.ndarray]:
    """Which segments go, which vectors are orphans, which documents are re-embedded."""
    with coll.store.engine.connect() as conn:
        metas = [] if legacy else manifest.read_segments(conn, coll.id)
        dead = manifest.read_tombstones(conn, coll.id)
        trainings = manifest.read_trainings(conn, coll.id)
    drop = [m for m in metas if everything or m.seg_id in report.bad_segments]
    keep = [m for m in metas if m not in drop]
    stored = []
    for m in keep:  # every kept segment is readable (verify checked them)
        if m.state == "growing":
            stored.append(np.asarray(read_records(coll.dir / m.file, coll.dim, 0, m.count)["id"], dtype=np.int64))
        else:
            stored.append(Segment.open(coll.dir, m, coll.dim).ids())
    stored = np.sort(np.concatenate(stored)) if stored else np.zeros(0, dtype=np.int64)
    live = np.setdiff1d(stored, dead)
    sql_ids = document_row_ids(coll)
    expected = expected_vectors(coll, sql_ids)
    plan = _Plan(drop=drop, next_row_id=int(coll.row["next_row_id"]))
    plan.orphans = np.setdiff1d(live, expected)  # vectors without documents (passages): tombstone them
    plan.kept_live = np.setdiff1d(live, plan.orphans)
    # documents with a missing vector (a missing passage) or no passages: re-embed them
    todo = np.union1d(documents_of(coll, np.setdiff1d(expected, live)), documents_without_passages(coll, sql_ids))
    if everything:
        plan.drop_tombstones = dead
        plan.drop_trainings = [t.train_id for t in trainings]
    plan.kept_growing = next((m for m in keep if m.state == "growing"), None)
    return plan, todo


def _segment_spec(coll, dim: int, everything: bool) -> str:
    """The spec re-embedded vectors are sealed as: the collection's, unless it needs a trained
    template (then exact Flat segments, which merges rebuild once a template is trained)."""
    requested = coll.row["index_spec"]
    if requested == "auto" or parse_spec(requested, dim).needs_training:
        if not everything and coll.row["active_spec"] and not parse_spec(coll.row["active_spec"], dim).needs_training:
            return coll.row["active_spec"]
        return "Flat"
    return requested


def _write(coll, dim: int, spec: str, ids: np.ndarray, vectors: np.ndarray) -> SegmentMeta:
    """A sealed segment file for ``ids`` (uncommitted: a leftover until the commit names it)."""
    sid = manifest.new_id()
    meta = SegmentMeta(sid, "sealed", segment_file(sid), spec, None, 0, int(ids[0]), int(ids[-1]) + 1, 0, None, 0)
    parsed = parse_spec(spec, dim)
    index = build_index(parsed, dim, coll.metric, None, vectors, ids)
    meta.count = int(index.ntotal)
    write_sealed(coll.dir, meta, index, (ids, vectors) if parsed.refine else None)
    return meta


def _reembed(coll, embedder: Embedder, todo: np.ndarray, plan: _Plan, everything: bool, progress: bool) -> None:
    """Embed the documents ``todo`` into new sealed segment files under fresh row ids, after
    sealing the kept growing segment (segments cover row-id ranges in order, the growing one
    last). Nothing is committed here."""
    dim = embedder.dim
    spec = _segment_spec(coll, dim, everything)
    g = plan.kept_growing
    if g is not None and g.count:
        with coll.store.engine.connect() as conn:
            dead = manifest.read_tombstones(conn, coll.id)
        rec = read_records(coll.dir / g.file, coll.dim, 0, g.count)
        ids = np.asarray(rec["id"], dtype=np.int64)
        gone = np.isin(ids, dead)
        if (~gone).any():
            meta = _write(coll, coll.dim, spec, ids[~gone], np.asarray(rec["v"], dtype=np.float32)[~gone])
            meta.row_lo, meta.row_hi = g.row_lo, g.row_hi
            plan.add.append(meta)
        plan.drop_tombstones = np.union1d(plan.drop_tombstones, ids[gone])
    if g is not None:
        plan.drop.append(g)
    first = plan.next_row_id
    buf_ids: list[np.ndarray] = []
    buf_vecs: list[np.ndarray] = []
    lo = first

    def seal() -> None:
        nonlocal lo
        if buf_ids:
            ids, vecs = np.concatenate(buf_ids), np.vstack(buf_vecs)
            meta = _write(coll, dim, spec, ids, vecs)
            meta.row_lo, meta.row_hi = lo, int(ids[-1]) + 1
            lo = meta.row_hi
            plan.add.append(meta)
            buf_ids.clear()
            buf_vecs.clear()

    at = first
    for start in range(0, len(todo), _EMBED_BATCH):
        part = todo[start : start + _EMBED_BATCH]
        rows = coll.fetch(part)
        texts = [rows[int(i)][1] for i in part]
        vectors, spans, _ = coll.embed_documents(embedder, texts, progress=progress)
        n = len(vectors)
        doc_ids = batch_rows.document_ids(at, n, spans, len(part))
        plan.moved.append((np.asarray(part, dtype=np.int64), doc_ids, spans))
        buf_ids.append(np.arange(at, at + n, dtype=np.int64))
        buf_vecs.append(np.asarray(vectors, dtype=np.float32))
        at += n
        if sum(len(b) for b in buf_ids) >= coll.seal_at:
            seal()
    seal()
    plan.next_row_id = at
    plan.growing = SegmentMeta(manifest.new_id(), "growing", "", "Flat", None, 0, at, at, 0, None, 0)


def _commit(coll, embedder: Embedder, plan: _Plan, everything: bool) -> dict[str, Any]:
    """The one transaction that swaps the repaired state in."""
    from embedsearch.store.growing import growing_file
    from embedsearch.store.metadata import embedder_config

    if plan.growing is None and plan.kept_growing is None:  # the growing segment was dropped (or never was)
        at = plan.next_row_id
        plan.growing = SegmentMeta(manifest.new_id(), "growing", "", "Flat", None, 0, at, at, 0, None, 0)
    gen = coll.generation
    new_gen = gen + 1
    if plan.growing is not None:
        plan.growing.file = growing_file(plan.growing.seg_id)
        plan.growing.created_gen = new_gen
        create_log(coll.dir / plan.growing.file)
    for m in plan.add:
        m.created_gen = new_gen
    values: dict[str, Any] = {"generation": new_gen, "next_row_id": plan.next_row_id}
    if everything:
        values.update(
            model=embedder.spec,
            model_fingerprint=embedder.fingerprint,
            embedder_config=embedder_config(embedder, coll.chunking, coll.shards),
            dim=embedder.dim,
            active_spec="Flat",
        )
    with commit(coll, crash="repair-", sync=False) as c:  # the caller reopens the view (the dimension may change)
        conn = c.conn
        c.values.update(values)
        manifest.delete_segments(conn, coll.id, [m.seg_id for m in plan.drop])
        for m in plan.add:
            manifest.insert_segment(conn, coll.id, m)
        if plan.growing is not None:
            manifest.insert_segment(conn, coll.id, plan.growing)
        for tid in plan.drop_trainings:
            manifest.delete_training(conn, coll.id, tid)
        manifest.drop_tombstones(conn, coll.id, plan.drop_tombstones)
        manifest.add_tombstones(conn, coll.id, plan.orphans, new_gen)
        for old, new, spans in plan.moved:
            docs = _documents(conn, coll.id, old)
            batch_rows.apply(
                conn,
                coll.id,
                removed=old,
                new_docs=docs,
                doc_ids=new,
                row_range=(int(new[0]), int(new[-1]) + (len(spans[-1]) if spans is not None else 1)),
                spans=spans,
                generation=new_gen,
                tombstone_removed=False,
                stored=plan.kept_live,
            )
        c.obsolete += [f for m in plan.drop for f in segment_files(m)]
    coll.refresh()
    return values


def _documents(conn, collection_id: int, row_ids: np.ndarray) -> list[tuple[Document, str]]:
    """(document, content hash) of ``row_ids``, in that order."""
    rows = {
        int(r[0]): (Document(r[1], r[2], r[3]), r[4])
        for r in conn.execute(
            select(*_DOC_COLUMNS).where(
                documents.c.collection_id == collection_id, documents.c.row_id.in_([int(i) for i in row_ids])
            )
        )
    }
    return [rows[int(i)] for i in row_ids]


def _fix_metadata(coll, row_ids: list[int]) -> int:
    """Replace NaN / Infinity in metadata with null (and the content hash with the new one)."""
    import math

    from embedsearch.corpus import Document

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    with coll.store.engine.begin() as conn:
        rows = conn.execute(
            select(documents.c.row_id, documents.c.external_id, documents.c.text, documents.c.meta).where(
                documents.c.collection_id == coll.id, documents.c.row_id.in_(row_ids)
            )
        ).all()
        for rid, ext, text_, meta in rows:  # Python's json reads NaN back as float('nan')
            meta = clean(meta)
            conn.execute(
                update(documents)
                .where(documents.c.collection_id == coll.id, documents.c.row_id == rid)
                .values(meta=meta, content_hash=Document(ext, text_, meta).content_hash)
            )
    return len(rows)
