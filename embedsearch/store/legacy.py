"""Collections written before segments: one ``vectors-<generation>.faiss`` file per collection.

That container is a magic string, a JSON header (generation, spec, checksum), the HNSW
tombstones, and the FAISS bytes. Such a collection is **read as it is** (the whole file is
loaded and served as one in-memory segment) until its **first write migrates it**: the FAISS
index inside becomes a plain sealed segment file, its tombstones become tombstone rows, an IVF
or SQ index yields the collection's trained template, and the old file is removed after the
commit. Nothing is re-embedded or re-encoded.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np

from embedsearch.errors import IndexCorrupted

MAGIC = b"ESVECS01"
LEGACY_FILE_RE = re.compile(r"^vectors-(\d{12})\.faiss$")


def legacy_file(generation: int) -> str:
    return f"vectors-{generation:012d}.faiss"


def read_legacy(path: Path) -> tuple[object, np.ndarray, dict]:
    """(FAISS index, tombstone ids, header) of a pre-segment vector file, checking magic,
    length and checksum."""
    import faiss

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise IndexCorrupted(f"{path}: vector file is missing") from None
    where = str(path)
    if len(data) < len(MAGIC) + 4 or not data.startswith(MAGIC):
        raise IndexCorrupted(f"{where}: not an embedsearch vector file (bad magic or truncated)")
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = json.loads(data[start : start + hlen])
        ntomb = int(header["tombstones"])
        plen = int(header["payload_bytes"])
    except (ValueError, KeyError, TypeError):
        raise IndexCorrupted(f"{where}: unreadable header (truncated or corrupted)") from None
    body = data[start + hlen :]
    if len(body) != 8 * ntomb + plen:
        raise IndexCorrupted(f"{where}: truncated ({len(body)} of {8 * ntomb + plen} body bytes)")
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise IndexCorrupted(f"{where}: checksum mismatch (the file is corrupted)")
    tomb = np.sort(np.frombuffer(body[: 8 * ntomb], dtype="<i8").astype(np.int64))
    try:
        index = faiss.deserialize_index(np.frombuffer(body[8 * ntomb :], dtype=np.uint8))
    except RuntimeError as exc:
        raise IndexCorrupted(f"{where}: FAISS could not read the index ({str(exc).splitlines()[0]})") from None
    if index.d != int(header["dim"]):
        raise IndexCorrupted(f"{where}: index dimension {index.d} != header dimension {header['dim']}")
    return index, tomb, header


def template_of(index):
    """The trained, empty index a legacy IVF or SQ index was built from (None for the rest)."""
    import faiss

    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap2) else index)
    if not isinstance(inner, (faiss.IndexIVF, faiss.IndexScalarQuantizer)):
        return None
    template = faiss.clone_index(index)
    template.reset()
    if isinstance(inner, faiss.IndexIVF):
        faiss.extract_index_ivf(template).set_direct_map_type(faiss.DirectMap.NoMap)
    return template


def load_legacy_view(coll):
    """Serve a pre-segment collection as it is: its one file, loaded into memory, as one segment."""
    from embedsearch.errors import InconsistentCollection
    from embedsearch.store.segment_files import SegmentMeta
    from embedsearch.store.segments import Segment
    from embedsearch.store.specs import describe
    from embedsearch.store.view import SegmentSet

    gen = coll.generation
    path = coll.dir / legacy_file(gen)
    hint = f"; run `embedsearch index repair {coll.name}`"
    if not path.exists():
        raise InconsistentCollection(f"collection {coll.name!r}: vector file for generation {gen} is missing{hint}")
    try:
        index, tomb, header = read_legacy(path)
    except IndexCorrupted as exc:
        raise IndexCorrupted(f"collection {coll.name!r}: {exc}{hint}") from None
    if header["generation"] != gen:
        raise InconsistentCollection(
            f"collection {coll.name!r}: vector file generation {header['generation']} != SQL generation {gen}{hint}"
        )
    spec = describe(index)
    meta = SegmentMeta(
        0, "sealed", path.name, spec, None, int(index.ntotal), 0, int(coll.row["next_row_id"]), path.stat().st_size, None, gen
    )
    view = SegmentSet(coll.dir, coll.dim, coll.metric)
    view.legacy = True
    view.sealed = {0: Segment(meta, index, coll.dim)}
    view.metas = [meta]
    view.dead = tomb
    view.generation = gen
    return view


def migrate_legacy(coll) -> None:
    """Turn a pre-segment collection into segments (the caller holds the writer lock): the index
    in the old container becomes a plain sealed segment file, HNSW tombstones become tombstone
    rows, and an IVF/SQ index yields the trained template. One commit; the old file goes after."""

    from embedsearch.files import fsync_path
    from embedsearch.store import manifest
    from embedsearch.store.commit import commit
    from embedsearch.store.crashpoints import crash_point
    from embedsearch.store.growing import create_log, growing_meta
    from embedsearch.store.segment_files import SegmentMeta, checksum, segment_file, write_index_file, write_sealed
    from embedsearch.store.specs import describe

    view = load_legacy_view(coll)
    legacy = view.sealed[0]
    gen = coll.generation
    new_gen = gen + 1
    index = legacy.index
    training = None
    template = template_of(index)
    if template is not None:
        tid = manifest.new_id()
        tfile = f"trained-{tid}.faiss"
        write_index_file(template, coll.dir / tfile)
        fsync_path(coll.dir)
        _, sha = checksum(coll.dir, [tfile])
        training = manifest.Training(tid, describe(index), tfile, int(index.ntotal), int(index.ntotal), sha, new_gen)
    sealed = None
    if index.ntotal:
        sid = manifest.new_id()
        sealed = SegmentMeta(
            sid,
            "sealed",
            segment_file(sid),
            describe(index),
            training.train_id if training else None,
            int(index.ntotal),
            0,
            int(coll.row["next_row_id"]),
            0,
            None,
            new_gen,
        )
        write_sealed(coll.dir, sealed, index, None)
    growing = growing_meta(manifest.new_id(), int(coll.row["next_row_id"]), new_gen)
    create_log(coll.dir / growing.file)
    crash_point("migrate-files")
    with commit(coll, crash="migrate-", sync=False) as c:  # the view is reopened from segments next
        if training is not None:
            manifest.insert_training(c.conn, coll.id, training)
        if sealed is not None:
            manifest.insert_segment(c.conn, coll.id, sealed)
        manifest.insert_segment(c.conn, coll.id, growing)
        manifest.add_tombstones(c.conn, coll.id, view.dead, new_gen)
        c.obsolete.append(legacy_file(gen))
    coll.forget_view()
