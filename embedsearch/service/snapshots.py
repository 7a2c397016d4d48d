"""``POST /collections/{name}/snapshot``: a hot snapshot of a collection, streamed as its file.

The same function as ``embedsearch index snapshot`` (:func:`embedsearch.store.snapshot.take_snapshot`):
the collection as of its last commit, taken while writers and merges go on. It is written to a
temporary file in the data directory (``.snapshots/``), streamed, and deleted once sent. Restore is
a CLI operation (``embedsearch index restore FILE``), run where the data directory is.
"""

from __future__ import annotations

import os
import secrets

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from embedsearch.service.schemas import WRITE, CollectionName, errors
from embedsearch.service.state import Writer

router = APIRouter()

_TAR = {"schema": {"type": "string", "format": "binary"}}


@router.post(
    "/collections/{name}/snapshot",
    response_class=FileResponse,
    response_model=None,
    responses={
        200: {
            "description": "The snapshot file (tar, or tar compressed with zstd); `embedsearch index restore FILE` restores it. "
            "Header X-Embedsearch-Generation: the generation it is of.",
            "content": {"application/x-tar": _TAR, "application/zstd": _TAR},
        },
        **errors(*WRITE),
    },
)
def snapshot(
    name: CollectionName,
    state: Writer,
    zstd: bool = Query(False, description="Compress the tar with zstd."),  # noqa: FBT001 - a query flag
) -> FileResponse:
    from embedsearch.store import deleter
    from embedsearch.store.snapshot import take_snapshot

    coll = state.collection(name)
    work = state.store.settings.data_dir / ".snapshots" / f"http-{os.getpid()}-{secrets.token_hex(6)}"  # see remove_stale
    work.mkdir(parents=True)
    suffix = ".tar.zst" if zstd else ".tar"
    try:
        result = take_snapshot(coll, work / f"{name}{suffix}")
    except BaseException:
        deleter.remove_directory(work)
        raise
    return FileResponse(
        result["file"],
        media_type="application/zstd" if zstd else "application/x-tar",
        filename=f"{name}-generation-{result['generation']}{suffix}",
        headers={"X-Embedsearch-Generation": str(result["generation"])},
        background=BackgroundTask(deleter.remove_directory, work),
    )
