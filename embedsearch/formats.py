"""Standard word-vector file formats, read and written without pickle.

- ``glove``: text, ``word v1 ... vd`` per line, no header.
- ``word2vec`` and ``fasttext-vec``: the same with a ``count dim`` header line.
- ``word2vec-bin``: the header, then per word its UTF-8 bytes, a space and ``dim``
  little-endian float32 values (an optional newline follows each vector).
- ``fasttext-bin``: fastText's own model file, read and written by the fasttext library.

Readers stop at the first problem with a :class:`ModelFormatError` that names the line (or
the byte offset for binary files).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from embedsearch.errors import ModelFormatError

TEXT_FORMATS = ("glove", "word2vec", "fasttext-vec")
FORMATS = ("glove", "word2vec", "word2vec-bin", "fasttext-bin", "fasttext-vec")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ModelFormatError(f"unknown vectors format {fmt!r}; choose one of {', '.join(FORMATS)}")


def read_text_vectors(path: Path, fmt: str, *, encoding: str = "utf-8") -> tuple[list[str], np.ndarray]:
    """Read a GloVe (no header) or word2vec/fastText ``.vec`` (header) text file."""
    check_format(fmt)
    path = Path(path)
    header = fmt != "glove"
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = declared = None
    with open(path, "rb") as fh:
        head = fh.read(4096)
        if not head.strip():
            raise ModelFormatError(f"{path}: the file is empty")
        if b"\x00" in head:
            raise ModelFormatError(f"{path}: looks binary (NUL bytes); is it word2vec-bin or fasttext-bin?")
        fh.seek(0)
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise ModelFormatError(f"{path}:{lineno}: not valid {encoding} ({exc.reason})") from None
            if not line.strip():
                continue
            parts = line.rstrip().split(" ")
            if header and lineno == 1:
                try:
                    declared, dim = (int(x) for x in parts)
                except ValueError:
                    raise ModelFormatError(
                        f"{path}:1: expected a 'count dim' header for {fmt} format, got {line[:60]!r}"
                        + (" (GloVe files have no header: use --format glove)" if len(parts) > 2 else "")
                    ) from None
                if dim < 1 or declared < 0:
                    raise ModelFormatError(f"{path}:1: header declares {declared} words of dimension {dim}")
                continue
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise ModelFormatError(f"{path}:{lineno}: a word with no values")
            if len(parts) - 1 != dim:
                raise ModelFormatError(
                    f"{path}:{lineno}: {parts[0]!r} has {len(parts) - 1} values, expected {dim} "
                    f"({'from the header' if header else 'as on the first line'})"
                )
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError:
                raise ModelFormatError(f"{path}:{lineno}: {parts[0]!r} has a value that is not a number") from None
            words.append(parts[0])
    if not words:
        raise ModelFormatError(f"{path}: no vectors in the file")
    if declared is not None and declared != len(words):
        raise ModelFormatError(f"{path}: the header declares {declared} words but the file holds {len(words)}")
    _check_unique(path, words)
    return words, np.vstack(rows)


def _check_unique(path: Path, words: list[str]) -> None:
    seen: set[str] = set()
    for w in words:
        if w in seen:
            raise ModelFormatError(f"{path}: the word {w!r} appears twice")
        seen.add(w)


def write_text_vectors(path: Path, words: list[str], vectors: np.ndarray, fmt: str) -> None:
    """Write GloVe text (no header) or word2vec/fastText ``.vec`` text (with header)."""
    check_format(fmt)
    check_writable_words(words)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        if fmt != "glove":
            fh.write(f"{len(words)} {vectors.shape[1]}\n")
        # nine significant digits identify a float32 exactly: reading back gives the same bits
        row = " ".join(["%.9g"] * vectors.shape[1])
        for word, vec in zip(words, vectors, strict=True):
            fh.write(word + " " + row % tuple(vec.tolist()) + "\n")


def check_writable_words(words: list[str]) -> None:
    for w in words:
        if not w or any(c in w for c in " \n\r\t"):
            raise ModelFormatError(f"the word {w!r} cannot be written in a space-separated vectors format")


def read_word2vec_binary(path: Path, *, encoding: str = "utf-8") -> tuple[list[str], np.ndarray]:
    """Read the original word2vec binary format."""
    path = Path(path)
    data = path.read_bytes()
    if not data.strip():
        raise ModelFormatError(f"{path}: the file is empty")
    nl = data.find(b"\n")
    try:
        count, dim = (int(x) for x in data[:nl].split())
    except ValueError:
        raise ModelFormatError(f"{path}: expected a 'count dim' header line, got {data[:40]!r}") from None
    if count < 1 or dim < 1:
        raise ModelFormatError(f"{path}: the header declares {count} words of dimension {dim}")
    pos = nl + 1
    words: list[str] = []
    vectors = np.empty((count, dim), dtype=np.float32)
    width = 4 * dim
    for i in range(count):
        while pos < len(data) and data[pos : pos + 1] in (b"\n", b" "):
            pos += 1
        end = data.find(b" ", pos)
        if end < 0 or end - pos > 10_000:
            raise ModelFormatError(f"{path}: byte {pos}: word {i + 1} of {count} is cut off or not followed by a space")
        try:
            words.append(data[pos:end].decode(encoding))
        except UnicodeDecodeError:
            raise ModelFormatError(f"{path}: byte {pos}: word {i + 1} is not valid {encoding}") from None
        pos = end + 1
        if pos + width > len(data):
            raise ModelFormatError(
                f"{path}: byte {pos}: the vector of word {i + 1} ({words[-1]!r}) is cut off: {len(data) - pos} bytes "
                f"left, {width} needed for {dim} float32 values"
            )
        vectors[i] = np.frombuffer(data, dtype="<f4", count=dim, offset=pos)
        pos += width
    if data[pos:].strip():
        raise ModelFormatError(f"{path}: byte {pos}: data after the {count} words the header declares")
    _check_unique(path, words)
    return words, vectors


def write_word2vec_binary(path: Path, words: list[str], vectors: np.ndarray) -> None:
    check_writable_words(words)
    vectors = np.asarray(vectors, dtype="<f4")
    buf = io.BytesIO()
    buf.write(f"{len(words)} {vectors.shape[1]}\n".encode())
    for word, vec in zip(words, vectors, strict=True):
        buf.write(word.encode("utf-8") + b" " + vec.tobytes() + b"\n")
    Path(path).write_bytes(buf.getvalue())


def read_vectors(path: Path, fmt: str) -> tuple[list[str], np.ndarray]:
    """Words and vectors from any format but ``fasttext-bin``."""
    check_format(fmt)
    if not Path(path).is_file():
        raise ModelFormatError(f"{path}: no such file")
    if fmt == "word2vec-bin":
        return read_word2vec_binary(path)
    if fmt == "fasttext-bin":
        raise ModelFormatError("fasttext-bin files are models, not plain vectors; import them as a model")
    return read_text_vectors(path, fmt)


def write_vectors(path: Path, words: list[str], vectors: np.ndarray, fmt: str) -> None:
    check_format(fmt)
    if fmt == "word2vec-bin":
        write_word2vec_binary(path, words, vectors)
    elif fmt == "fasttext-bin":
        raise ModelFormatError("only FastText models can be exported as fasttext-bin")
    else:
        write_text_vectors(path, words, vectors, fmt)
