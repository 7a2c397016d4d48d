"""Retrieval results in MTEB's results layout, which MTEB's own loader reads:

    DIR/results/<model>/<revision>/<Task>.json       one TaskResult per model and task
    DIR/results/<model>/<revision>/model_meta.json   the model's ModelMeta fields

DIR is what MTEB calls its cache folder: ``mteb.ResultCache(DIR).load_results()`` reads it
(it skips a revision folder without ``model_meta.json`` unless told not to), and
``DIR/results/*`` can be copied into a clone of MTEB's results repository. A model is named
``embedsearch/LABEL`` (ModelMeta wants an ``organization/name``; a label that has a ``/`` is
kept as it is), in the folder ``embedsearch__LABEL``; its revision is the model's fingerprint
(a hash of its weights and configuration), ``no_revision_available`` for bm25.

A TaskResult holds ``dataset_revision``, ``task_name``, ``mteb_version``, ``scores`` (split ->
a list of one entry per subset: ``main_score``, ``hf_subset``, ``languages`` and the metrics),
``evaluation_time``, ``kg_co2_emissions`` and ``date`` (mteb 2.x ``TaskResult``). Ours:

- ``mteb_version`` is null: MTEB did not compute the scores (a version below 1.12.48 would make
  MTEB re-derive pair-classification scores by looking the task up in its registry, where a
  task of your own is not).
- ``dataset_revision``: ``sha256:`` and the hash of the BEIR files read (the split's qrels).
- ``hf_subset`` is ``default``; ``languages`` is the one given (a BEIR directory does not say
  which; ``eng-Latn`` by default). MTEB's ``get_score`` counts only entries with a language.
- the metrics are MTEB's names at MTEB's cut-offs (``ndcg_at_10``, ``recall_at_100``...; see
  :mod:`embedsearch.evaluation.trec`), unrounded; ``main_score`` is ``ndcg_at_10``, MTEB's for
  retrieval. MTEB's nAUC scores are not computed.
- ``embedsearch``: what ran (the contender, the retrieved depth, the query counts); MTEB's
  loader ignores keys it does not know.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from embedsearch.errors import InvalidArgument

MAIN_SCORE = "ndcg_at_10"
NO_REVISION = "no_revision_available"  # MTEB's own placeholder
DEFAULT_LANGUAGE = "eng-Latn"
ORGANIZATION = "embedsearch"
_TASK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}-[A-Z][a-z]{3}")


def check_task_name(name: str) -> str:
    """A task name that can be a file name (MTEB's are like ``SciFact``)."""
    if not _TASK_RE.fullmatch(name) or name.endswith(".json"):
        raise InvalidArgument(f"task name {name!r}: use letters, digits, '_', '.' and '-' (give one with --task-name)")
    return name


def check_language(code: str) -> str:
    """An ISO 639 language and ISO 15924 script, as MTEB writes them (``eng-Latn``, ``deu-Latn``)."""
    if not _LANGUAGE_RE.fullmatch(code):
        raise InvalidArgument(f"language {code!r}: give an ISO 639-3 code and a script, as MTEB does (eng-Latn, deu-Latn)")
    return code


def model_name(label: str) -> str:
    """The name MTEB's ModelMeta accepts (``organization/name``)."""
    return label if "/" in label else f"{ORGANIZATION}/{label}"


def path_name(label: str) -> str:
    """A model name as MTEB writes it in a path (``ModelMeta.model_name_as_path``)."""
    return label.replace("/", "__").replace(" ", "_")


def task_result(
    task_name: str,
    split: str,
    scores: dict[str, float],
    *,
    dataset_revision: str,
    evaluation_time: float | None,
    about: dict[str, Any],
    language: str = DEFAULT_LANGUAGE,
) -> dict[str, Any]:
    """One TaskResult as MTEB writes it to disk."""
    entry = {**scores, "main_score": scores[MAIN_SCORE], "hf_subset": "default", "languages": [check_language(language)]}
    return {
        "dataset_revision": dataset_revision,
        "task_name": check_task_name(task_name),
        "mteb_version": None,
        "scores": {split: [entry]},
        "evaluation_time": evaluation_time,
        "kg_co2_emissions": None,
        "date": time.time(),
        "embedsearch": about,
    }


def model_meta(label: str, revision: str, *, dim: int | None, kind: str | None, mode: str) -> dict[str, Any]:
    """ModelMeta's fields for one of our contenders (unknowns left null, as ModelMeta allows).
    ``kind`` is the model's kind as a comparison reports it; None for bm25."""
    if kind is None:
        framework: list[str] = []
    elif "ONNX" in kind:
        framework = ["ONNX"]
    elif kind.startswith("sentence model"):
        framework = ["Sentence Transformers", "PyTorch"]
    else:
        framework = ["NumPy"]
    return {
        "name": model_name(label),
        "revision": revision,
        "release_date": None,
        "languages": None,
        "n_parameters": None,
        "memory_usage_mb": None,
        "max_tokens": None,
        "embed_dim": dim,
        "license": None,
        "open_weights": None,
        "public_training_code": None,
        "public_training_data": None,
        "framework": framework,
        "reference": None,
        "similarity_fn_name": "cosine" if mode != "lexical" else None,
        "use_instructions": False,
        "training_datasets": None,
        "modalities": ["text"],
        "model_type": [{"dense": "dense", "lexical": "sparse", "hybrid": "hybrid"}[mode]],
        "loader": None,
        "loader_kwargs": {},
    }


def write_result(directory: Path, result: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``result`` and ``meta`` under ``directory/results/<model>/<revision>/``; returns
    the task file. An earlier result for the same model, revision and task is replaced."""
    folder = Path(directory) / "results" / path_name(meta["name"]) / meta["revision"]
    folder.mkdir(parents=True, exist_ok=True)
    written = None
    for name, data in ((f"{result['task_name']}.json", result), ("model_meta.json", meta)):
        path = folder / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        written = written or path
    return written
