"""The files a model directory's loader opens, and the check that keeps every one of them inside
a root (the service's ``--models-dir``).

A model directory is more than its ``manifest.json``: word vectors load ``vectors.npy``,
``vocab.txt``, ``counts.npy`` and ``sif_pc.npy``; fastText models ``model.bin``; sentence-transformers
and static models whatever the libraries pick by name in the directory and in each module directory
``modules.json`` lists (configuration, safetensors shards, tokenizer files). Any of them may be a
symbolic link, and a link may lead anywhere. :func:`confine_model_dir` resolves each file
(``Path.resolve(strict=True)``: every link followed, a link to nothing refused) and refuses the model
when one lies outside the root, before anything is loaded. It also refuses what would make the
libraries read from elsewhere without a link: a module path with ``..`` or an absolute one in
``modules.json``, and the configuration entries that name another model or tokenizer location.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from embedsearch.errors import BrokenModel, ModelOutsideModelsDir, UnknownModel

MANIFEST = "manifest.json"
#: what the loaders of embedsearch's own word models open (models.load_word_vectors, WordVectorEmbedder)
WORD_MODEL_FILES = {
    "word-vectors": ("vectors.npy", "vocab.txt", "counts.npy", "sif_pc.npy"),
    "fasttext": ("model.bin", "sif_pc.npy"),
}
#: configuration entries that make sentence-transformers or transformers read another directory
#: (sentence_bert_config.json: a Transformer module's tokenizer or weights from elsewhere, a cache
#: or a GGUF file by absolute path; adapter_config.json: a PEFT adapter's base model)
REDIRECTING_KEYS = {
    "sentence_bert_config.json": ("tokenizer_name_or_path", "model_name_or_path", "cache_dir", "cache_folder", "gguf_file"),
    "adapter_config.json": ("base_model_name_or_path",),
}
#: entries walked in one sentence-transformers directory tree before giving up (a model has tens)
MAX_ENTRIES = 100_000


def confine_model_dir(path: Path, root: Path) -> list[Path]:
    """Check that the model directory ``path`` loads nothing from outside ``root``; returns the
    files (resolved) that its loader may open.

    The directory, its manifest and every file its kind's loader opens must resolve inside the
    resolved ``root``. For sentence-transformers and static models (and directories without a
    manifest) that is every file and subdirectory of the tree, followed through links into
    directories, since the libraries choose among them by name. Raises
    :class:`ModelOutsideModelsDir` naming the first file that leaves ``root`` (the target itself is
    not named: it is outside what the caller may see), :class:`BrokenModel` for a link to nothing,
    and :class:`UnknownModel` when ``root`` or ``path`` does not exist."""
    try:
        top = Path(root).resolve(strict=True)
    except OSError:
        raise UnknownModel(f"the models directory {root} does not exist") from None
    path = Path(path)
    real = _inside(path, top, path)
    if not real.is_dir():
        raise UnknownModel(f"{path}: not a model directory")
    if os.path.lexists(path / MANIFEST):
        _inside(path / MANIFEST, top, path)  # before it is read
    kind = _kind(path)
    if kind in WORD_MODEL_FILES:
        names = (MANIFEST, *WORD_MODEL_FILES[kind])
        return [_inside(path / name, top, path) for name in names if os.path.lexists(path / name)]
    _check_module_paths(path)
    return _walk(path, top)


def _kind(path: Path) -> str | None:
    """The manifest's kind (None without a readable one: the tree is checked whole)."""
    manifest = path / MANIFEST
    if not os.path.lexists(manifest):
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the loader reports it; the whole tree is checked meanwhile
    return data.get("kind") if isinstance(data, dict) else None


def _inside(file: Path, top: Path, model: Path) -> Path:
    """``file`` resolved, when it lies inside ``top``."""
    try:
        real = file.resolve(strict=True)
    except (OSError, RuntimeError):  # a link to nothing, or a loop of links (RuntimeError before Python 3.13)
        raise BrokenModel(f"{file}: a link to nothing (or a loop of links); the model directory {model} is broken") from None
    if not real.is_relative_to(top):
        raise ModelOutsideModelsDir(
            f"{file}: links outside the models directory {top}; a model is served only when every file it loads lies inside it"
        )
    return real


def _check_module_paths(path: Path) -> None:
    """modules.json may name module directories; none may climb out with '..' or start at '/'."""
    modules = path / "modules.json"
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # missing or unreadable: check_sentence_dir says so when the model loads
    for m in entries if isinstance(entries, list) else []:
        where = m.get("path") if isinstance(m, dict) else None
        if isinstance(where, str) and (os.path.isabs(where) or ".." in Path(where).parts):
            raise ModelOutsideModelsDir(f"{modules}: module path {where!r} leads out of the model directory")


def _walk(path: Path, top: Path) -> list[Path]:
    """Every file under ``path``, through links into directories (each real directory once),
    each checked before it is opened or walked into; configuration files that redirect a
    loader are refused."""
    files: list[Path] = []
    seen: set[Path] = set()
    stack = [path]
    count = 0
    while stack:
        folder = stack.pop()
        real_folder = _inside(folder, top, path)
        if real_folder in seen:
            continue
        seen.add(real_folder)
        for entry in sorted(folder.iterdir()):
            count += 1
            if count > MAX_ENTRIES:
                raise BrokenModel(f"{path}: more than {MAX_ENTRIES} files; not a model directory")
            real = _inside(entry, top, path)
            if real.is_dir():
                stack.append(entry)
                continue
            files.append(real)
            if entry.name in REDIRECTING_KEYS:
                _check_redirects(entry, REDIRECTING_KEYS[entry.name])
    return files


def _check_redirects(file: Path, keys: tuple[str, ...]) -> None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # check_sentence_dir names a broken configuration file
    found = sorted(_keys_set(data, set(keys)))
    if found:
        raise ModelOutsideModelsDir(
            f"{file}: {', '.join(found)} would make the model load files from another place; "
            "a served model loads only from its own directory"
        )


def _keys_set(data: object, keys: set[str]) -> set[str]:
    """The ``keys`` given a value (not null) anywhere in a JSON document."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key in keys and value is not None:
                found.add(key)
            found |= _keys_set(value, keys)
    elif isinstance(data, list):
        for value in data:
            found |= _keys_set(value, keys)
    return found
