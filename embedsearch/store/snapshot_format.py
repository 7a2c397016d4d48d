"""The snapshot file: one tar (``.tar``, or ``.tar.zst`` when the name says so) holding
``manifest.json`` first, then the collection's SQL rows as JSONL (``rows/<table>.jsonl``) and its
files (``files/<name>``: sealed segments, trained templates, the growing log's committed prefix).

The manifest records the format version, the embedsearch version, the collection row, the
generation the snapshot is of, counts, and the size and sha256 of every other member. Reading
(:func:`read_members`) checks all of that as it streams, so a corrupted or truncated file is
refused naming the member that fails, before anything is restored from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from embedsearch.errors import EmbedsearchError

FORMAT = "embedsearch-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: the SQL tables a snapshot carries, as rows/<table>.jsonl; payload entries and the lexical
#: index are rebuilt from the documents on restore (only which fields / whether it exists is kept)
TABLES = ("documents", "passages", "segments", "tombstones", "trainings", "payload_fields", "search_settings")
_MEMBER_RE = re.compile(r"^(rows/[a-z_]+\.jsonl|files/(seg|growing|trained)-[0-9]{1,20}\.(faiss|ids\.npy|vectors\.npy|log))$")
_CHUNK = 1 << 20


class SnapshotError(EmbedsearchError):
    """A snapshot file that cannot be read or restored: another format, a damaged member."""


def is_zstd(path: Path) -> bool:
    return path.name.endswith((".zst", ".zstd"))


def valid_member(name: str) -> bool:
    return name == MANIFEST or bool(_MEMBER_RE.fullmatch(name))


def file_sha256(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def write_tar(target: Path, manifest: dict[str, Any], members: dict[str, Path]) -> int:
    """Write the snapshot file: a temp file beside ``target``, fsynced, then renamed over it, so
    a failure (a full disk) leaves no file. Returns its size in bytes."""
    from embedsearch.files import fsync_path

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    body = json.dumps(manifest, ensure_ascii=False, indent=1, allow_nan=False).encode()
    try:
        with open(tmp, "wb") as raw:
            out: IO[bytes] = raw
            zstd = None
            if is_zstd(target):
                import zstandard

                zstd = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
                out = zstd
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo(MANIFEST)
                info.size = len(body)
                tar.addfile(info, _Bytes(body))
                for name, path in members.items():
                    tar.add(str(path), arcname=name, recursive=False)
            if zstd is not None:
                zstd.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
        fsync_path(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target.stat().st_size


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out = self.data[self.pos : end]
        self.pos += len(out)
        return out


def check_manifest(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{MANIFEST}: not an embedsearch snapshot")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{MANIFEST}: snapshot format version {version!r}; this embedsearch reads version {FORMAT_VERSION} "
            f"(the snapshot was written by embedsearch {manifest.get('embedsearch_version')!r})"
        )
    members = manifest.get("members")
    if not isinstance(members, dict) or not all(valid_member(m) and m != MANIFEST for m in members):
        raise SnapshotError(f"{MANIFEST}: bad member list")
    for key in ("collection", "generation", "counts"):
        if key not in manifest:
            raise SnapshotError(f"{MANIFEST}: no {key!r}")
    return manifest


def read_members(path: Path, sink: Callable[[str, Iterator[bytes]], None] | None = None) -> dict[str, Any]:
    """Stream the snapshot at ``path``: check the manifest, then each member's name, size and
    sha256 against it (``sink(name, chunks)`` receives each member's bytes as they are read, e.g.
    to extract it). Returns the manifest; raises :class:`SnapshotError` naming the failing member."""
    current = MANIFEST
    try:
        with open(path, "rb") as raw:
            src: IO[bytes] = raw
            if is_zstd(path):
                import zstandard

                src = zstandard.ZstdDecompressor().stream_reader(raw)
            with tarfile.open(fileobj=src, mode="r|") as tar:
                first = tar.next()
                if first is None or first.name != MANIFEST or not first.isfile() or first.size > 16 << 20:
                    raise SnapshotError(f"{path.name}: no {MANIFEST} at its start: not an embedsearch snapshot")
                try:
                    manifest = check_manifest(json.loads(tar.extractfile(first).read()))
                except (ValueError, UnicodeDecodeError):
                    raise SnapshotError(f"{MANIFEST}: not valid JSON") from None
                expected = manifest["members"]
                seen = set()
                while (member := tar.next()) is not None:
                    current = member.name
                    if current not in expected or current in seen or not member.isfile():
                        raise SnapshotError(f"member {current!r}: not listed in the manifest")
                    seen.add(current)
                    h = hashlib.sha256()
                    size = 0
                    f = tar.extractfile(member)

                    def chunks(f=f, h=h):
                        nonlocal size
                        while chunk := f.read(_CHUNK):
                            h.update(chunk)
                            size += len(chunk)
                            yield chunk

                    if sink is None:
                        for _ in chunks():
                            pass
                    else:
                        sink(current, chunks())
                    want = expected[current]
                    if size != want["bytes"] or h.hexdigest() != want["sha256"]:
                        raise SnapshotError(f"member {current!r}: checksum mismatch (the snapshot is damaged)")
                current = "end of file"
                missing = sorted(set(expected) - seen)
                if missing:
                    raise SnapshotError(f"member {missing[0]!r}: missing (the snapshot is truncated)")
    except (tarfile.TarError, EOFError) as exc:
        raise SnapshotError(f"member {current!r}: truncated or unreadable ({exc})") from None
    except OSError as exc:
        if "zstd" in type(exc).__module__.lower() or exc.errno is None:
            raise SnapshotError(f"member {current!r}: truncated or unreadable ({exc})") from None
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("zstandard"):
            raise SnapshotError(f"member {current!r}: truncated or unreadable ({exc})") from None
        raise
    return manifest


_STAGING_RE = re.compile(r"-(\d+)-[0-9a-f]+$")


def remove_stale(directory: Path) -> list[str]:
    """Remove the staging directories under ``directory`` (``<data dir>/.snapshots``) of snapshots,
    exports and restores whose process is gone (killed: their hard links would keep old segment
    files on the disk). Their names end in ``-<pid>-<hex>``."""
    import shutil

    gone = []
    if not directory.is_dir():
        return gone
    for path in directory.iterdir():
        m = _STAGING_RE.search(path.name)
        if m is None or not path.is_dir():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        shutil.rmtree(path, ignore_errors=True)
        gone.append(path.name)
    return gone


def write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
            f.write("\n")
            n += 1
    return n


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
