"""Model directories that every sentence-transformers release since 3.x loads.

sentence-transformers 6 saves its modules under new import paths
(``sentence_transformers.base.modules.transformer.Transformer``) and with new configuration keys
(``transformer_task``, ``pooling_mode: "mean"``, ``module_input_name``); 5.x and older cannot
import those paths, and 3.x/4.x refuse the keys. The long-standing names
(``sentence_transformers.models.Transformer``) and configuration files are what the models on the
Hugging Face Hub use, and 6.x still reads them. :func:`make_portable` rewrites a saved directory
into that form, keeps the base model's ``max_seq_length``, and gives every file the mode a plain
``open()`` would have (0666 less the umask; safetensors writes 0600).

The weights are not touched: their tensor names (``linear.weight``, ``emb_layer.weight``,
``embedding.weight``) are the same in every release. ``StaticEmbedding`` (the distilled
students) exists from sentence-transformers 3.3 on, and moves to its own directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from embedsearch.errors import EmbedsearchError
from embedsearch.files import current_umask

LEGACY = "sentence_transformers.models"
WHITESPACE_TOKENIZER = "sentence_transformers.models.tokenizer.WhitespaceTokenizer.WhitespaceTokenizer"
KNOWN = ("Transformer", "Pooling", "Dense", "Normalize", "WordEmbeddings", "StaticEmbedding")
POOLING_FLAGS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}
# the keys sentence-transformers 6 adds that name how modules pass features; only their defaults
# are what older releases do (anything else is a model they cannot run)
ROUTING_DEFAULTS = {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"}


class NotPortable(EmbedsearchError):
    """A saved model uses a module or setting older sentence-transformers releases do not have."""


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _drop_routing(config: dict, where: str) -> dict:
    for key, default in ROUTING_DEFAULTS.items():
        value = config.pop(key, default)
        if value != default:
            raise NotPortable(f"{where}: {key}={value!r} is not expressible for sentence-transformers before 6")
    return config


def _pooling(config: dict, where: str) -> dict:
    config = _drop_routing(config, where)
    if "word_embedding_dimension" in config:
        return config  # already the long-standing form
    mode = config.get("pooling_mode", "mean")
    modes = [mode] if isinstance(mode, str) else list(mode)
    unknown = [m for m in modes if m not in POOLING_FLAGS]
    rest = set(config) - {"embedding_dimension", "pooling_mode", "include_prompt"}
    if unknown or rest:
        raise NotPortable(f"{where}: pooling {unknown or sorted(rest)} has no sentence-transformers 3.x equivalent")
    out = {"word_embedding_dimension": int(config["embedding_dimension"])}
    out.update({flag: name in modes for name, flag in POOLING_FLAGS.items()})
    out["include_prompt"] = bool(config.get("include_prompt", True))
    return out


def _transformer(directory: Path, max_seq_length: int | None, do_lower_case: bool) -> None:
    config_path = directory / "sentence_bert_config.json"
    config = _read(config_path) if config_path.exists() else {}
    task = config.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise NotPortable(f"{config_path}: transformer_task {task!r} needs sentence-transformers 6")
    if max_seq_length is None:
        max_seq_length = config.get("max_seq_length")
    tokenizer_path = directory / "tokenizer_config.json"
    if tokenizer_path.exists():
        tokenizer = _read(tokenizer_path)
        if max_seq_length is None:
            max_seq_length = tokenizer.get("model_max_length")
        if max_seq_length is not None:
            tokenizer["model_max_length"] = int(max_seq_length)
        tokenizer.pop("max_length", None)  # a truncation default transformers 5 records; the model's length rules
        _write(tokenizer_path, tokenizer)
    lower = bool(config.get("do_lower_case", do_lower_case))
    out = {"max_seq_length": int(max_seq_length) if max_seq_length is not None else None, "do_lower_case": lower}
    _write(config_path, out)


def _move_static(directory: Path, name: str) -> str:
    """sentence-transformers before 5 builds a module saved at the model's root by calling its
    constructor with the path, which ``StaticEmbedding`` refuses; in its own directory (as the
    static models on the Hub have it) every release loads it through ``load``."""
    (directory / name).mkdir()
    for file in ("model.safetensors", "tokenizer.json"):
        os.replace(directory / file, directory / name / file)
    return name


def make_portable(directory: Path, *, max_seq_length: int | None = None, do_lower_case: bool = False) -> None:
    """Rewrite the sentence-transformers model saved in ``directory`` so that releases 3.x to 6.x
    load it (see the module's docstring). ``max_seq_length``: the length to record for a
    Transformer module (the base model's), else the saved one is kept."""
    directory = Path(directory)
    modules_path = directory / "modules.json"
    modules = _read(modules_path)
    for module in modules:
        cls = module["type"].rsplit(".", 1)[-1]
        if cls not in KNOWN:
            raise NotPortable(f"{modules_path}: module {module['type']} has no long-standing name")
        module["type"] = f"{LEGACY}.{cls}"
        if cls == "StaticEmbedding" and not module.get("path"):
            module["path"] = _move_static(directory, f"{module.get('idx', 0)}_StaticEmbedding")
        path = directory / module.get("path", "")
        where = str(path / "config.json")
        if cls == "Transformer":
            _transformer(path, max_seq_length, do_lower_case)
        elif cls == "Pooling":
            _write(path / "config.json", _pooling(_read(path / "config.json"), where))
        elif cls == "Dense":
            _write(path / "config.json", _drop_routing(_read(path / "config.json"), where))
        elif cls == "Normalize" and (path / "config.json").exists():
            _drop_routing(_read(path / "config.json"), where)
            (path / "config.json").unlink()  # the long-standing Normalize has no settings
        elif cls == "WordEmbeddings":
            config = _read(path / "wordembedding_config.json")
            if config.get("tokenizer_class", "").endswith(".WhitespaceTokenizer"):
                config["tokenizer_class"] = WHITESPACE_TOKENIZER
            _write(path / "wordembedding_config.json", config)
    _write(modules_path, modules)
    set_file_modes(directory)


def set_file_modes(directory: Path) -> None:
    """Every file under ``directory`` as ``open()`` makes it (0666 less the umask), every
    directory 0777 less the umask: a model is read by other users, containers, services."""
    umask = current_umask()
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(Path(root) / name, 0o777 & ~umask)
        for name in files:
            os.chmod(Path(root) / name, 0o666 & ~umask)
    os.chmod(directory, 0o777 & ~umask)
