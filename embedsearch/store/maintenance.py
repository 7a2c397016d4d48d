"""Background work on a collection's segments: training templates and running merges.

Merges read immutable sealed segments without the writer lock (writers go on appending and
sealing meanwhile) and take it only for the commit that swaps the merged segment in. Tombstones
recorded while a merge ran stay in SQL and still apply to the merged segment, whose row-id
range covers the ids they name.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from embedsearch.files import fsync_path
from embedsearch.store import manifest
from embedsearch.store.commit import commit
from embedsearch.store.crashpoints import crash_point
from embedsearch.store.locks import file_lock
from embedsearch.store.merging import MergePlan, build_merged, plan_merge
from embedsearch.store.segment_files import (
    SegmentMeta,
    checksum,
    segment_file,
    segment_files,
    write_index_file,
    write_sealed,
)
from embedsearch.store.specs import IndexSpec, new_faiss_index, parse_spec, target_spec
from embedsearch.store.view import SegmentSet

RETRAIN_GROWTH = 4  # retrain once the collection holds this many times what it was trained on


def sample_vectors(view: SegmentSet, extra: np.ndarray | None, size: int, seed: int = 0) -> np.ndarray:
    """A uniform sample of up to ``size`` live vectors (plus ``extra`` ones not committed yet)."""
    rng = np.random.default_rng(seed)
    pools = []
    for seg in view.segments():
        dead = view.dead_in(seg)
        ids = np.setdiff1d(seg.ids(), dead, assume_unique=True) if len(dead) else seg.ids()
        pools.append((seg, ids))
    total = sum(len(ids) for _, ids in pools) + (len(extra) if extra is not None else 0)
    frac = min(1.0, size / max(total, 1))
    parts = []
    for seg, ids in pools:
        take = int(round(len(ids) * frac))
        if take:
            parts.append(seg.vectors(np.sort(rng.choice(ids, size=take, replace=False))))
            seg.release()
    if extra is not None and len(extra):
        take = int(round(len(extra) * frac))
        parts.append(np.asarray(extra, dtype=np.float32)[np.sort(rng.choice(len(extra), size=take, replace=False))])
    return np.vstack(parts) if parts else np.zeros((0, view.dim), dtype=np.float32)


def train_template(coll, view: SegmentSet, spec: IndexSpec, n: int, extra: np.ndarray | None) -> manifest.Training:
    """Train ``spec`` on a sample of the collection and write its empty index as
    ``trained-<id>.faiss`` (uncommitted: the caller's transaction records it)."""
    sample = sample_vectors(view, extra, spec.max_train_points())
    template = new_faiss_index(coll.dim, spec, coll.metric, train=sample)
    tid = manifest.new_id()
    file = f"trained-{tid}.faiss"
    write_index_file(template, coll.dir / file)
    fsync_path(coll.dir)
    _, sha = checksum(coll.dir, [file])
    return manifest.Training(tid, spec.text, file, int(n), len(sample), sha, coll.generation + 1)


def retrain_due(coll, view: SegmentSet) -> IndexSpec | None:
    """The spec to retrain now, if the collection outgrew its training: it holds
    ``RETRAIN_GROWTH`` times the vectors it was trained on and a new training would see more
    data (a larger sample, or more lists for ``auto``)."""
    t = view.training
    live = view.live()
    if t is None or live < RETRAIN_GROWTH * t.trained_on:
        return None
    spec = target_spec(coll.row["index_spec"], live, coll.dim)
    if spec.needs_training and (t.sample < spec.max_train_points() and t.sample < live or spec.text != t.spec):
        return spec
    return None


def run_merges(coll, *, force: bool = False, retrain: bool = False, progress: bool = False) -> dict[str, Any]:
    """Retrain if due (or asked), then merge until the policy has nothing left (the caller
    holds the merge lock)."""
    done: list[dict[str, Any]] = []
    view = coll.view()
    if view.legacy:
        return {"merges": done, "skipped": "collection is in the pre-segment format until its first write"}
    spec = retrain_due(coll, view)
    if retrain and spec is None and view.training is not None:
        spec = target_spec(coll.row["index_spec"], view.live(), coll.dim)
    if spec is not None and spec.needs_training:
        retrain_template(coll, view, spec)
        done.append({"retrained": spec.text, "on": view.live()})
    while True:
        view = coll.view()
        sealed = [m for m in view.metas if m.state == "sealed"]
        dead = {m.seg_id: len(view.dead_in(view.sealed[m.seg_id])) for m in sealed}
        t = view.training
        stale = {m.seg_id for m in sealed if t is not None and m.train_id != t.train_id}
        plan = plan_merge(sealed, dead, stale=stale, seal_at=coll.seal_at, max_vectors=coll.max_segment_vectors, force=force)
        if plan is None:
            break
        result = _merge_one(coll, view, plan)
        done.append(result)
        if progress:
            print(f"merged {len(plan.seg_ids)} segments ({plan.reason}): {result['vectors']} vectors", file=sys.stderr)
    return {"merges": done}


def retrain_template(coll, view: SegmentSet, spec: IndexSpec) -> None:
    """Train ``spec`` on a sample of the stored vectors and commit it as the live template
    (segments of older trainings become stale: merges rebuild them)."""
    training = train_template(coll, view, spec, view.live(), None)
    with coll.writer_lock(), file_lock(coll.store.lock_path(coll.name)):
        coll.refresh()
        with commit(coll, crash="retrain-") as c:
            training.created_gen = c.generation
            manifest.insert_training(c.conn, coll.id, training)


def _merge_one(coll, view: SegmentSet, plan: MergePlan) -> dict[str, Any]:

    inputs = [view.sealed[s] for s in plan.seg_ids]
    lo, hi = inputs[0].meta.row_lo, inputs[-1].meta.row_hi
    a, b = np.searchsorted(view.dead, [lo, hi])
    dead = view.dead[a:b]
    spec_text = coll.segment_spec(view.training)
    spec = parse_spec(spec_text, coll.dim)
    train_id = view.training.train_id if spec.needs_training else None
    template = coll.dir / view.training.file if spec.needs_training else None
    index, full = build_merged(inputs, dead, spec, coll.dim, coll.metric, template, train_id)
    sid = manifest.new_id()
    meta = SegmentMeta(sid, "sealed", segment_file(sid), spec_text, train_id, int(index.ntotal), lo, hi, 0, None, 0)
    if meta.count:
        write_sealed(coll.dir, meta, index, full)
    crash_point("merge-file")
    with coll.writer_lock(), file_lock(coll.store.lock_path(coll.name)):
        coll.refresh()
        with commit(coll, crash="merge-") as c:  # then the inputs go, and the view opens the new segment
            conn = c.conn
            current = {m.seg_id for m in manifest.read_segments(conn, coll.id)}
            if not set(plan.seg_ids) <= current:  # cannot happen under the merge lock; never commit a lost race
                raise RuntimeError("merge inputs changed underneath the merge")
            meta.created_gen = c.generation
            manifest.delete_segments(conn, coll.id, plan.seg_ids)
            if meta.count:
                manifest.insert_segment(conn, coll.id, meta)
            manifest.drop_tombstones(conn, coll.id, dead)
            keep = {m.train_id for m in manifest.read_segments(conn, coll.id)} | {
                view.training.train_id if view.training else None
            }
            for t in manifest.read_trainings(conn, coll.id):
                if t.train_id not in keep:
                    manifest.delete_training(conn, coll.id, t.train_id)
                    c.obsolete.append(t.file)
            c.obsolete += [name for seg in inputs for name in segment_files(seg.meta)]
    return {
        "segments": plan.seg_ids,
        "into": sid if meta.count else None,
        "vectors": meta.count,
        "purged": len(dead),
        "reason": plan.reason,
    }
