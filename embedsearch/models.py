"""Model directories written by embedsearch: ``manifest.json`` plus weights in safe formats.

No pickle is ever loaded. The manifest's ``kind`` says what the directory holds:

- ``word-vectors``: ``vectors.npy`` (float32, loaded with ``allow_pickle=False``), ``vocab.txt``
  (one word per line, row order) and, when known, ``counts.npy`` (corpus counts, int64).
- ``fasttext``: ``model.bin`` in fastText's own format (words plus character n-grams).
- ``sentence-transformers``: a sentence-transformers model with safetensors weights.
- ``static``: a static student distilled from a sentence model (``embedsearch train distill``): a
  sentence-transformers directory whose one input module is ``StaticEmbedding`` (a vector per
  token in safetensors, plus the teacher's ``tokenizer.json``), run by :class:`StaticEmbedder`.

Word models also carry ``sif_pc.npy``, the common direction that SIF pooling removes.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.embedders.base import Embedder
from embedsearch.errors import EmbedsearchError, ModelFormatError, ModelOutsideModelsDir, OutputExists, UnknownModel
from embedsearch.files import atomic_temp, atomic_temp_dir, fsync_path
from embedsearch.wordvectors import FastTextVectors, WordVectors, load_fasttext_bin

MANIFEST = "manifest.json"
WORD_KINDS = ("word-vectors", "fasttext")
#: SIF's smoothing constant a in a / (a + p(w)) (Arora, Liang and Ma 2017)
SIF_A = 1e-3
SIF_SAMPLE_DOCS = 20000


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and minimally validate a model directory's manifest."""
    try:
        data = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnknownModel(f"{path}: no {MANIFEST}; not an embedsearch model directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnknownModel(f"{path}/{MANIFEST}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict) or "kind" not in data:
        raise UnknownModel(f"{path}/{MANIFEST}: manifest has no 'kind'")
    return data


def write_manifest(model_dir: Path, manifest: dict[str, Any]) -> None:
    (Path(model_dir) / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            fsync_path(p)
    fsync_path(path)


def publish_dir(src: Path, dst: Path, *, overwrite: bool) -> None:
    """Move a finished model directory into place. With ``overwrite`` the new directory and
    the old one swap places in one atomic exchange (Linux ``renameat2``), so the name always
    names a complete model; the old one is deleted afterwards. Where the exchange is not
    available, the old directory is moved aside first, and a run killed between the two renames
    is recovered by the next one (:func:`sweep_leftovers`)."""
    _fsync_tree(src)
    sweep_leftovers(dst)
    if dst.exists():
        if not overwrite:
            raise OutputExists(f"{dst} already exists; pass --overwrite to replace it")
        if _exchange(src, dst):
            fsync_path(dst.parent)
            shutil.rmtree(src, ignore_errors=True)  # now the old model
            return
        aside = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.rename(dst, aside)
        try:
            os.rename(src, dst)
        except OSError:
            os.rename(aside, dst)
            raise
        fsync_path(dst.parent)
        shutil.rmtree(aside, ignore_errors=True)
        return
    os.rename(src, dst)
    fsync_path(dst.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def work_dir_prefix(out: Path) -> str:
    """Prefix of the hidden directory a model is built in, beside its destination; it names the
    building process so that :func:`sweep_leftovers` can tell abandoned ones."""
    return f".{out.name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers(out: Path) -> list[str]:
    """Clean up after killed runs that wrote ``out``: hidden work directories of processes that
    are gone are deleted, and a model moved aside by an overwrite that never finished is put
    back when nothing took its name (or deleted when something did)."""
    parent = out.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(?:(\d+)\..*\.tmp|old-(\d+))$")
    done = []
    for entry in sorted(parent.iterdir()):
        m = pattern.match(entry.name)
        if not m or not entry.is_dir():
            continue
        pid = int(m.group(1) or m.group(2))
        if pid == os.getpid() or _alive(pid):
            continue
        if m.group(2) and not out.exists():
            os.rename(entry, out)
            done.append(f"restored {out} from {entry.name}")
        else:
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed {entry.name}")
    return done


# --- word vectors on disk ---------------------------------------------------------------


def save_word_vectors(model_dir: Path, words: list[str], vectors: np.ndarray, counts: np.ndarray | None) -> None:
    """Write ``vectors.npy``, ``vocab.txt`` and (when known) ``counts.npy``."""
    from embedsearch.formats import check_writable_words

    model_dir = Path(model_dir)
    check_writable_words(words)
    np.save(model_dir / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    (model_dir / "vocab.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    if counts is not None:
        np.save(model_dir / "counts.npy", np.asarray(counts, dtype=np.int64), allow_pickle=False)


def load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ModelFormatError(f"{path} is missing") from None
    except ValueError as exc:  # includes "Object arrays cannot be loaded when allow_pickle=False"
        raise ModelFormatError(f"{path}: unreadable ({exc})") from None


def load_word_vectors(path: Path, manifest: dict[str, Any] | None = None, *, root: Path | None = None) -> WordVectors:
    """Load a word model directory (``word-vectors`` or ``fasttext`` kind). With ``root`` (the
    service's models directory) every file it would load must lie inside it (:func:`confine_model_dir`)."""
    path = Path(path)
    if root is not None:
        from embedsearch.model_files import confine_model_dir

        confine_model_dir(path, root)
    manifest = manifest or read_manifest(path)
    kind = manifest["kind"]
    if kind == "fasttext":
        bin_path = path / "model.bin"
        if not bin_path.is_file():
            raise ModelFormatError(f"{bin_path} is missing")
        try:
            return FastTextVectors(load_fasttext_bin(bin_path))
        except ValueError as exc:
            raise ModelFormatError(f"{bin_path}: not a fastText model ({exc})") from None
    if kind != "word-vectors":
        raise UnknownModel(f"{path} is a {kind} model, not a word-vector model; word queries need word vectors")
    vectors = load_npy(path / "vectors.npy")
    try:
        words = (path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    except FileNotFoundError:
        raise ModelFormatError(f"{path / 'vocab.txt'} is missing") from None
    if vectors.ndim != 2 or vectors.shape[0] != len(words) or vectors.dtype != np.float32:
        raise ModelFormatError(f"{path}: vectors.npy is {vectors.dtype} {vectors.shape} but vocab.txt lists {len(words)} words")
    counts = load_npy(path / "counts.npy") if (path / "counts.npy").exists() else None
    if counts is not None and counts.shape != (len(words),):
        raise ModelFormatError(f"{path}: counts.npy has shape {counts.shape}, expected ({len(words)},)")
    return WordVectors(words, vectors, counts)


def word_probabilities(wv: WordVectors) -> tuple[np.ndarray, str]:
    """p(w) for SIF weights: corpus counts when known; otherwise a Zipf estimate from the
    row order (vector files list words most frequent first)."""
    if wv.counts is not None and wv.counts.sum() > 0:
        return wv.counts / wv.counts.sum(), "corpus counts"
    ranks = np.arange(1, len(wv) + 1, dtype=np.float64)
    zipf = 1.0 / ranks
    return zipf / zipf.sum(), "Zipf estimate from the row order (the file had no counts)"


def sif_weights(wv: WordVectors, a: float = SIF_A) -> np.ndarray:
    p, _ = word_probabilities(wv)
    return (a / (a + p)).astype(np.float32)


def write_sif_component(model_dir: Path, kind: str, sample_docs: list[list[str]] | None) -> dict[str, Any]:
    """Compute and save the first principal component that SIF pooling removes.

    From a sample of the training documents (their SIF-weighted averages) when there is a
    corpus, as in Arora et al.; for imported vectors, from the SIF-weighted vectors of the
    most frequent words, each scaled by sqrt(p(w)) so frequent words count as they would in text.
    """
    wv = load_word_vectors(model_dir, {"kind": kind})
    weights = sif_weights(wv)
    if sample_docs:
        rows = []
        for doc in sample_docs:
            ids = [wv.index[t] for t in doc if t in wv.index]
            if ids:
                rows.append((weights[ids, None] * wv.vectors[ids]).mean(axis=0))
        source = f"{len(rows)} training documents"
        matrix = np.vstack(rows) if rows else None
    else:
        matrix = None
    if matrix is None:
        p, _ = word_probabilities(wv)
        top = min(len(wv), 20000)
        matrix = wv.vectors[:top] * (weights[:top] * np.sqrt(p[:top]))[:, None].astype(np.float32)
        source = f"the {top} most frequent words"
    # uncentred, as TruncatedSVD in the reference implementation
    _, _, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    np.save(Path(model_dir) / "sif_pc.npy", vt[0].astype(np.float32), allow_pickle=False)
    return {"a": SIF_A, "component_from": source, "probabilities": word_probabilities(wv)[1]}


# --- import / export --------------------------------------------------------------------


def import_vectors(src: Path, fmt: str, out_dir: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Turn a vectors file in a standard format into a model directory."""
    from embedsearch.formats import check_format, read_vectors
    from embedsearch.trainers.base import check_output_dir

    check_format(fmt)
    src = Path(src)
    out_dir = Path(out_dir).expanduser().absolute()
    check_output_dir(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    model_dir = atomic_temp_dir(out_dir)  # published by a rename: give it the umask's mode, not 0700
    try:
        if fmt == "fasttext-bin":
            if not src.is_file():
                raise ModelFormatError(f"{src}: no such file")
            shutil.copyfile(src, model_dir / "model.bin")
            kind = "fasttext"
            try:
                wv = load_word_vectors(model_dir, {"kind": kind})
            except ModelFormatError:
                raise ModelFormatError(f"{src}: not a fastText .bin model") from None
        else:
            words, vectors = read_vectors(src, fmt)
            kind = "word-vectors"
            save_word_vectors(model_dir, words, vectors, None)
            wv = WordVectors(words, vectors)
        manifest = {
            "format": 1,
            "kind": kind,
            "algorithm": "imported",
            "imported_from": {"path": str(src.absolute()), "format": fmt, "bytes": src.stat().st_size},
            "dim": wv.dim,
            "vocab_size": len(wv),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        manifest["sif"] = write_sif_component(model_dir, kind, None)
        write_manifest(model_dir, manifest)
        publish_dir(model_dir, out_dir, overwrite=overwrite)
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)  # gone already when published
    return manifest


def export_model(model_dir: Path, fmt: str, out_path: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write a word model's vectors in a standard format (atomically: temp file, then rename)."""
    from embedsearch.formats import check_format, write_vectors

    check_format(fmt)
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise OutputExists(f"{out_path} already exists; pass --overwrite to replace it")
    fd, tmp = atomic_temp(out_path)  # the export gets the umask's mode, not mkstemp's 0600
    os.close(fd)
    try:
        if fmt == "fasttext-bin":
            if manifest["kind"] != "fasttext":
                raise ModelFormatError(
                    f"{model_dir} holds plain word vectors; fasttext-bin needs a FastText model (with subwords)"
                )
            shutil.copyfile(model_dir / "model.bin", tmp)
            words = load_word_vectors(model_dir, manifest).words
        else:
            wv = load_word_vectors(model_dir, manifest)
            words = wv.words
            write_vectors(Path(tmp), wv.words, wv.vectors, fmt)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"path": str(out_path), "format": fmt, "words": len(words), "kind": manifest["kind"]}


# --- embedders --------------------------------------------------------------------------


def load_model_embedder(
    path: Path,
    *,
    device: str | None = None,
    batch_size: int = 32,
    options: dict[str, Any] | None = None,
    cache_dir: Path | None = None,
) -> Embedder:
    """Build the embedder a model directory's manifest asks for (``options["backend"]``: onnx
    or int8 for sentence-transformers models)."""
    manifest = read_manifest(path)
    kind = manifest["kind"]
    options = dict(options or {})
    backend = options.pop("backend", None)
    if backend not in (None, "torch") and kind != "sentence-transformers":
        what = "a static model already runs in numpy" if kind == "static" else "it applies to sentence-transformers models"
        raise UnknownModel(f"{path}: --backend {backend} does not apply to a {kind} model ({what})")
    if kind == "sentence-transformers":
        if options:
            raise UnknownModel(f"{path}: --pooling/--oov apply to word-vector models only")
        if backend not in (None, "torch"):
            if manifest.get("pretokenize"):
                raise UnknownModel(f"{path}: --backend {backend} does not apply to a model that reads pre-tokenised words")
            from embedsearch.embedders import sentence_backend

            return sentence_backend(Path(path), backend, device=device, batch_size=batch_size, cache_dir=cache_dir)
        from embedsearch.embedders.sentence import SentenceEmbedder

        return SentenceEmbedder(path, device=device, batch_size=batch_size, pretokenize=manifest.get("pretokenize"))
    if kind == "static":
        if options:
            raise UnknownModel(f"{path}: --pooling/--oov apply to word-vector models only (a static model mean-pools tokens)")
        from embedsearch.embedders.static import StaticEmbedder

        return StaticEmbedder(Path(path), manifest)
    if kind in WORD_KINDS:
        from embedsearch.embedders.word_vectors import WordVectorEmbedder

        return WordVectorEmbedder(Path(path), manifest, **(options or {}))
    raise UnknownModel(f"{path}: model kind {kind!r} is not supported by this version of embedsearch")


def list_models(root: Path, *, confined: bool = False) -> list[dict[str, Any]]:
    """Model directories directly under ``root`` (those with a readable manifest). ``confined``
    (the service): only those with every file inside ``root`` (:func:`confine_model_dir`)."""
    from embedsearch.model_files import confine_model_dir

    out = []
    for p in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        if not (p.is_dir() and (p / MANIFEST).exists()):
            continue
        if confined:
            try:
                confine_model_dir(p, root)
            except ModelOutsideModelsDir:
                continue
            except EmbedsearchError:
                pass  # broken, not outside: listed, and loading it says what is wrong
        try:
            m = read_manifest(p)
        except UnknownModel:
            continue
        out.append({"path": str(p), "kind": m["kind"], "algorithm": m.get("algorithm"), "dim": m.get("dim"),
                    "vocab_size": m.get("vocab_size"), "created_at": m.get("created_at")})  # fmt: skip
    return out
