"""What a collection holds (``index info``) and whether SQL and the segments agree (``index
verify``); ``store/repair.py`` makes them agree again.

Leftovers of interrupted writes (files the segment list does not name, a log tail past the
committed count) are not problems: the next writer removes them. ``verify`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from embedsearch.errors import InconsistentCollection, IndexCorrupted
from embedsearch.store import manifest
from embedsearch.store.growing import read_records
from embedsearch.store.legacy import legacy_file, read_legacy
from embedsearch.store.metadata import documents
from embedsearch.store.segment_files import checksum, segment_files
from embedsearch.store.segments import Segment
from embedsearch.store.specs import parse_spec


@dataclass
class VerifyReport:
    name: str
    ok: bool
    generation: int
    sql_count: int
    faiss_count: int | None
    problems: list[str] = field(default_factory=list)
    needs_rebuild: bool = False
    leftovers: list[str] = field(default_factory=list)
    bad_segments: list[int] = field(default_factory=list)
    bad_metadata: list[int] = field(default_factory=list)  # row ids whose metadata is not strict JSON
    bad_payload: dict[str, int] = field(default_factory=dict)  # indexed field -> entries that disagree
    model_changed: bool = False  # fixed only by `index repair NAME --rebuild`
    bad_trainings: list[int] = field(default_factory=list)  # trained templates missing or damaged
    database_damaged: bool = False  # SQLite's page check failed: repair cannot fix that

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def describe(coll) -> dict[str, Any]:
    """``index info``: the collection row, its segments, tombstones, training and bytes on disk."""
    from embedsearch.store.metadata import public_row

    out = public_row(coll.row)
    out["path"] = str(coll.dir)
    try:
        view = coll.view()
    except (IndexCorrupted, InconsistentCollection) as exc:
        out["error"] = str(exc)
        return out
    out["format"] = "single file (pre-segment; migrated on the first write)" if view.legacy else "segments"
    out["faiss_count"] = view.live()
    out["tombstones"] = len(view.dead)
    out["segments"] = [
        {
            "id": s.meta.seg_id,
            "state": s.meta.state,
            "spec": s.meta.spec,
            "vectors": s.meta.count,
            "tombstones": len(view.dead_in(s)),
            "rows": [s.meta.row_lo, s.meta.row_hi],
            "bytes": s.meta.bytes,
        }
        for s in view.segments()
    ]
    t = view.training
    extra = (coll.dir / t.file).stat().st_size if t is not None and (coll.dir / t.file).exists() else 0
    out["index_bytes"] = sum(s.meta.bytes for s in view.segments()) + extra
    out["training"] = None if t is None else {"spec": t.spec, "trained_on": t.trained_on, "sample": t.sample}
    requested = coll.row["index_spec"]
    if t is None and requested != "auto" and parse_spec(requested, coll.dim).needs_training:
        need = parse_spec(requested, coll.dim).min_train_points()
        out["pending"] = f"{requested} is trained once the collection holds {need} vectors; exact Flat until then"
    out["seal_at"] = coll.seal_at
    out["index_fields"] = coll.index_fields()
    out["lexical"] = _lexical_info(coll)
    out["passages"] = _passage_count(coll)
    out["search"] = {k: v for k, v in coll.search_settings().items() if k != "lexical"}  # None: library default
    return out


def _passage_count(coll) -> int | None:
    """Passages (vectors) of a chunked collection; None without chunking."""
    if coll.chunking is None:
        return None
    from embedsearch.store import passage_rows

    with coll.store.engine.connect() as conn:
        return passage_rows.count(conn, coll.id)


def _lexical_info(coll) -> dict[str, Any] | None:
    from embedsearch.store import lexical

    with coll.store.engine.connect() as conn:
        if not lexical.enabled(conn, coll.id):
            return None
        return {"documents": lexical.row_count(conn, coll.id), "bytes": lexical.size_bytes(conn, coll.id)}


def document_row_ids(coll) -> np.ndarray:
    with coll.store.engine.connect() as conn:
        rows = conn.execute(select(documents.c.row_id).where(documents.c.collection_id == coll.id))
        return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64))


def expected_vectors(coll, sql_ids: np.ndarray) -> np.ndarray:
    """The vector ids the segments must hold: one per document, or one per passage."""
    if coll.chunking is None:
        return sql_ids
    from embedsearch.store import passage_rows

    with coll.store.engine.connect() as conn:
        return passage_rows.vector_ids(conn, coll.id)


def documents_without_passages(coll, sql_ids: np.ndarray) -> np.ndarray:
    if coll.chunking is None:
        return np.zeros(0, dtype=np.int64)
    from embedsearch.store import passage_rows

    with coll.store.engine.connect() as conn:
        return np.setdiff1d(sql_ids, passage_rows.document_ids(conn, coll.id))


def documents_of(coll, vector_ids: np.ndarray) -> np.ndarray:
    """The documents the given expected vectors belong to (themselves without chunking)."""
    if coll.chunking is None or not len(vector_ids):
        return vector_ids
    from embedsearch.store import passage_rows

    where = passage_rows.lookup(coll.store.engine, coll.store.dialect, coll.id, vector_ids)
    return np.unique(np.asarray([d for d, _, _ in where.values()], dtype=np.int64))


def verify(coll, check_model: bool = True) -> VerifyReport:
    coll.refresh()
    sql_ids = document_row_ids(coll)
    expected = expected_vectors(coll, sql_ids)
    unit = "documents" if coll.chunking is None else "passages"
    report = VerifyReport(coll.name, True, coll.generation, len(sql_ids), None)
    if coll.is_legacy():
        stored, dead = _verify_legacy(coll, report)
    else:
        stored, dead = _verify_segments(coll, report)
    if stored is not None:
        live = np.setdiff1d(stored, dead)
        report.faiss_count = len(live)
        only_sql = np.setdiff1d(expected, live)
        only_faiss = np.setdiff1d(live, expected)
        if len(only_sql):
            report.problems.append(f"{len(only_sql)} {unit} have no vector (row ids {preview(only_sql)})")
        if len(only_faiss):
            report.problems.append(f"{len(only_faiss)} vectors have no {unit[:-1]} (row ids {preview(only_faiss)})")
        dup = stored[1:][stored[1:] == stored[:-1]]
        if len(dup):
            report.problems.append(f"{len(dup)} row ids are stored twice (row ids {preview(dup)})")
        dead_live = np.intersect1d(dead, expected)
        if len(dead_live):
            report.problems.append(f"{len(dead_live)} live {unit} are marked deleted (row ids {preview(dead_live)})")
    bare = documents_without_passages(coll, sql_ids)
    if len(bare):
        report.problems.append(f"{len(bare)} documents have no passages (row ids {preview(bare)})")
    _check_database(coll, report)
    if not report.bad_metadata:  # SQLite's JSON functions cannot read such rows
        _check_payload(coll, report)
    _check_lexical(coll, report)
    if coll.row["doc_count"] != len(sql_ids):
        report.problems.append(f"collection row says {coll.row['doc_count']} documents, SQL holds {len(sql_ids)}")
    if check_model:
        from embedsearch.embedders import model_fingerprint

        try:
            fp = model_fingerprint(coll.row["model"], coll.embedder_options)
            if fp != coll.row["model_fingerprint"]:
                report.model_changed = True
                report.problems.append(
                    f"model {coll.row['model']} changed on disk (fingerprint {fp[:12]} != {coll.row['model_fingerprint'][:12]}): "
                    f"`embedsearch index repair {coll.name} --rebuild` re-embeds every document with it"
                )
        except Exception as exc:  # the model may be gone; that is a finding, not a crash
            report.problems.append(f"model {coll.row['model']} cannot be checked: {exc}")
    report.ok = not report.problems
    return report


def _check_lexical(coll, report: VerifyReport) -> None:
    """The lexical index holds one row per document (both are written in one transaction)."""
    from embedsearch.store import lexical

    with coll.store.engine.connect() as conn:
        if not lexical.enabled(conn, coll.id):
            return
        rows = lexical.row_count(conn, coll.id)
        counted = lexical.counted_docs(conn, coll.id)
    if counted is not None and counted != rows:
        report.problems.append(
            f"the lexical index's BM25 statistics count {counted} documents, the index holds {rows}: "
            f"`embedsearch index repair {coll.name} --lexical` rebuilds it"
        )
    if rows != report.sql_count:
        report.problems.append(
            f"the lexical index holds {rows} documents, SQL {report.sql_count}: "
            f"`embedsearch index repair {coll.name} --lexical` rebuilds it"
        )


def _check_database(coll, report: VerifyReport) -> None:
    """SQLite's own page check, and metadata that is not strict JSON (NaN / Infinity written by
    earlier versions: SQLite's JSON functions fail on such rows, so every filter would)."""
    engine = coll.store.engine
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL checks its pages itself and jsonb refuses NaN
    from sqlalchemy import func, text

    with engine.connect() as conn:
        problems = [r[0] for r in conn.execute(text("PRAGMA quick_check(5)"))]
        if problems != ["ok"]:
            report.database_damaged = True
            report.problems.append(
                f"the SQLite database fails its integrity check ({'; '.join(problems)}): restore "
                f"{engine.url.database} from a backup, or recover what is readable with "
                "`sqlite3 embedsearch.db .recover | sqlite3 recovered.db`, point --db at the result and run "
                f"`embedsearch index repair {coll.name} --rebuild`"
            )
            return
        rows = conn.execute(
            select(documents.c.row_id).where(documents.c.collection_id == coll.id, func.json_valid(documents.c.meta) == 0)
        )
        report.bad_metadata = [int(r[0]) for r in rows]
    if report.bad_metadata:
        ids = np.asarray(report.bad_metadata)
        report.problems.append(
            f"{len(ids)} documents have metadata that is not strict JSON (NaN or Infinity; row ids {preview(ids)}): "
            f"`embedsearch index repair {coll.name}` replaces those values with null"
        )


def _check_payload(coll, report: VerifyReport) -> None:
    """Payload index entries against what the documents hold (store/payload.py)."""
    from embedsearch.store import payload

    with coll.store.engine.connect() as conn:
        report.bad_payload = payload.disagreements(conn, coll.id)
    for f, n in report.bad_payload.items():
        report.problems.append(
            f"the payload index on {f!r} disagrees with the documents ({n} entries missing or extra): "
            f"`embedsearch index repair {coll.name}` rebuilds it"
        )


def _verify_legacy(coll, report: VerifyReport):
    path = coll.dir / legacy_file(coll.generation)
    report.leftovers = sorted(p.name for p in coll.dir.glob("vectors-*.faiss") if p.name != path.name)
    if not path.exists():
        report.problems.append(f"vector file for generation {coll.generation} is missing")
        report.needs_rebuild = True
        return None, None
    try:
        index, tomb, header = read_legacy(path)
    except IndexCorrupted as exc:
        report.problems.append(str(exc))
        report.needs_rebuild = True
        return None, None
    if header["generation"] != coll.generation:
        report.problems.append(f"vector file says generation {header['generation']}, SQL says {coll.generation}")
    seg = Segment(_legacy_meta(index), index, coll.dim)
    return seg.ids(), tomb


def _legacy_meta(index):
    from embedsearch.store.segment_files import SegmentMeta
    from embedsearch.store.specs import describe as describe_index

    return SegmentMeta(0, "sealed", "", describe_index(index), None, int(index.ntotal), 0, 0, 0, None, 0)


def _verify_segments(coll, report: VerifyReport):
    with coll.store.engine.connect() as conn:
        metas = manifest.read_segments(conn, coll.id)
        trainings = manifest.read_trainings(conn, coll.id)
        dead = manifest.read_tombstones(conn, coll.id)
    named = {f for m in metas for f in segment_files(m)} | {t.file for t in trainings}
    report.leftovers = sorted(p.name for p in coll.dir.iterdir() if p.is_file() and p.name not in named)
    for t in trainings:
        try:
            if checksum(coll.dir, [t.file])[1] != t.sha256:
                report.problems.append(f"trained index {t.file}: checksum mismatch")
                report.bad_trainings.append(t.train_id)
        except FileNotFoundError:
            report.problems.append(f"trained index {t.file} is missing")
            report.bad_trainings.append(t.train_id)
    parts = []
    for m in metas:
        try:
            if m.state == "growing":
                rec = read_records(coll.dir / m.file, coll.dim, 0, m.count)
                parts.append(np.asarray(rec["id"], dtype=np.int64))
                continue
            size, sha = checksum(coll.dir, segment_files(m))
            if sha != m.sha256:
                raise IndexCorrupted(f"segment {m.file}: checksum mismatch ({size} bytes; the file is corrupted)")
            seg = Segment.open(coll.dir, m, coll.dim)
            parts.append(seg.ids())
        except FileNotFoundError as exc:
            report.problems.append(f"segment file {exc.filename and exc.filename.split('/')[-1]} is missing")
            report.bad_segments.append(m.seg_id)
        except IndexCorrupted as exc:
            report.problems.append(str(exc))
            report.bad_segments.append(m.seg_id)
        else:
            ids = parts[-1]
            if len(ids) and (ids.min() < m.row_lo or ids.max() >= m.row_hi):
                report.problems.append(f"segment {m.file} holds row ids outside its range [{m.row_lo}, {m.row_hi})")
                report.bad_segments.append(m.seg_id)
                parts.pop()
    if not any(m.state == "growing" for m in metas):
        report.problems.append("the segment list has no growing segment")
        report.needs_rebuild = True
    stored = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
    return stored, dead


def preview(ids: np.ndarray, n: int = 5) -> str:
    """The first ``n`` ids, for a message."""
    head = ", ".join(str(int(i)) for i in ids[:n])
    return head + (", ..." if len(ids) > n else "")
