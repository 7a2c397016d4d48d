"""Distributed ingest: ``index add ... --ray``. The documents become a Ray Dataset, embedded in a
pool of actors (one model per actor, loaded once; one GPU each when the cluster has GPUs), and
the vectors come back to this process, which commits them into the collection in one
transaction (rows, passages, the segment list), exactly as a local ``index add`` would.

What it guarantees:

* The result equals a local ``index add`` of the same input: the same documents are added,
  updated or skipped (same id and content hash: unchanged), the last version of a repeated id
  wins, and each vector is the one the local embedder makes (same model, checked by
  fingerprint in every actor; the same passages with chunking).
* A failed or cancelled job leaves the collection as it was: nothing is committed until every
  document is embedded, and the commit is one transaction.
* The collection's writer lock is held for the job, as a local ``index add`` holds it.

What it does not do (yet): workers do not write segment files themselves, so this process
holds the new vectors of one job in memory (4 x dim bytes each) before it commits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np

from embedsearch.cluster import connect, has_gpus
from embedsearch.corpus import Document


class EmbedWorker:
    """One actor of the pool: the collection's model, loaded once, checked by fingerprint."""

    def __init__(self, spec: str, options: dict, fingerprint: str, chunking: dict | None, batch_size: int) -> None:
        from embedsearch.embedders import load_embedder
        from embedsearch.errors import FingerprintMismatch
        from embedsearch.passages import Chunking

        self.embedder = load_embedder(spec, options=options, batch_size=batch_size)
        if self.embedder.fingerprint != fingerprint:
            raise FingerprintMismatch(
                f"model {spec} on this Ray worker (fingerprint {self.embedder.fingerprint[:12]}) is not the collection's "
                f"({fingerprint[:12]}): every node must see the same model files"
            )
        self.chunking = Chunking.from_dict(chunking)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from embedsearch.passages import embed_texts

        texts = [str(t) for t in batch["text"]]
        if os.environ.get("EMBEDSEARCH_TEST_CRASH_AT") == "ray-embed" and any("\N{COLLISION SYMBOL}" in t for t in texts):
            raise RuntimeError("injected embedding failure (EMBEDSEARCH_TEST_CRASH_AT=ray-embed)")
        vectors, spans, truncated = embed_texts(self.embedder, self.chunking, texts)
        counts = [1] * len(texts) if spans is None else [len(s) for s in spans]
        cut = ([truncated] + [0] * (len(texts) - 1)) if texts else []  # the batch's count, on its first row
        out_vec, at = [], 0
        for n in counts:
            out_vec.append(np.ascontiguousarray(vectors[at : at + n], dtype=np.float32).tobytes())
            at += n
        return {
            "i": np.asarray(batch["i"], dtype=np.int64),
            "n": np.asarray(counts, dtype=np.int64),
            "vec": np.asarray(out_vec, dtype=object),
            "spans": np.asarray([json.dumps(s) for s in (spans or [None] * len(texts))], dtype=object),
            "truncated": np.asarray(cut, dtype=np.int64),
        }


def add_documents_on_ray(
    coll,
    docs: Iterable[Document],
    *,
    address: str | None = "auto",
    workers: int = 2,
    batch_size: int = 64,
    progress: bool = False,
):
    """Embed ``docs`` on a Ray cluster and add them to ``coll`` in one commit; returns the
    :class:`~embedsearch.store.collection.AddResult` a local add would."""
    from embedsearch.errors import InvalidArgument

    if not 1 <= workers <= 1024:
        raise InvalidArgument("workers must be between 1 and 1024")
    ray = connect(address)
    return coll.add_embedded(docs, lambda texts: _embed_on_ray(ray, coll, texts, workers, batch_size, progress))


def _embed_on_ray(ray, coll, texts: list[str], workers: int, batch_size: int, progress: bool):
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx.execution_options.preserve_order = True
    chunking = coll.chunking
    blocks = max(1, min(len(texts) // max(1, batch_size), 4 * workers))
    ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=blocks)
    out = ds.map_batches(
        EmbedWorker,
        fn_constructor_kwargs={
            "spec": coll.model,
            "options": coll.embedder_options,
            "fingerprint": coll.model_fingerprint,
            "chunking": None if chunking is None else chunking.to_dict(),
            "batch_size": 32,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=1 if has_gpus(ray) else 0,
    )
    vec_of: dict[int, np.ndarray] = {}
    spans_of: dict[int, list] = {}
    truncated = 0
    for batch in out.iter_batches(batch_format="numpy", batch_size=None):
        for i, n, vec, sp, cut in zip(batch["i"], batch["n"], batch["vec"], batch["spans"], batch["truncated"], strict=True):
            vec_of[int(i)] = np.frombuffer(vec, dtype=np.float32).reshape(int(n), coll.dim)
            spans_of[int(i)] = json.loads(sp)
            truncated += int(cut)
    if len(vec_of) != len(texts):
        from embedsearch.errors import ClusterUnavailable

        raise ClusterUnavailable(f"the Ray job returned {len(vec_of)} of {len(texts)} documents; nothing was committed")
    vectors = np.vstack([vec_of[i] for i in range(len(texts))])
    spans = None if chunking is None else [[tuple(x) for x in spans_of[i]] for i in range(len(texts))]
    return vectors, spans, truncated
