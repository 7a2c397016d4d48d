"""Triplets (anchor, positive, negative) for the triplet-loss trainer: read from a file, or
built from labelled documents with random, hard or semi-hard negatives.

Held-out data is split by document and stratified by label, so no text of the evaluation
set is ever trained on. Hard negatives are the nearest wrong-label documents under the base
model, found with an exact FAISS inner-product search over normalised embeddings.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError, InvalidArgument

MINING = ("random", "hard", "semi-hard")
FIELDS = ("anchor", "positive", "negative")


@dataclass(frozen=True)
class Triplet:
    anchor: str
    positive: str
    negative: str


def read_triplets(path: Path, *, encoding: str = "utf-8") -> list[Triplet]:
    """Triplets from jsonl (objects with anchor, positive, negative) or csv/tsv (a header
    naming those columns). Errors name the line."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    suffix = path.suffix.lower()
    out: list[Triplet] = []
    try:
        with open(path, encoding=encoding, newline="") as fh:
            if suffix in (".csv", ".tsv"):
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
                if missing:
                    raise CorpusError(f"{path}:1: the header lacks {', '.join(missing)} (it needs anchor, positive, negative)")
                rows = ((reader.line_num, row) for row in reader)
                out = [_triplet(row, f"{path}:{n}") for n, row in rows]
            else:
                for n, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise CorpusError(f"{path}:{n}: malformed JSON ({exc.msg})") from None
                    out.append(_triplet(row, f"{path}:{n}"))
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not valid {encoding} ({exc.reason}); pass --encoding") from None
    if not out:
        raise CorpusError(f"{path}: no triplets in the file")
    return out


def _triplet(row: object, where: str) -> Triplet:
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: expected an object with anchor, positive and negative")
    values = []
    for f in FIELDS:
        v = row.get(f)
        if not isinstance(v, str) or not v.strip():
            raise CorpusError(f"{where}: {f!r} is missing or empty")
        values.append(v.strip())
    return Triplet(*values)


@dataclass
class LabelledSplit:
    train: list[Document]
    held_out: list[Document]
    skipped_labels: list[str]  # labels with a single document: no positive exists for them


def split_labelled(
    docs: Sequence[Document], label_field: str, *, held_out: float = 0.2, seed: int = 1, on_skip: Callable | None = None
) -> LabelledSplit:
    """Split by document, stratified by label. Each label puts about ``held_out`` of its
    documents in the held-out part (at least two once it has four, so held-out positive pairs
    exist) and always keeps two for training. Labels with one document are skipped and reported."""
    if not 0 <= held_out < 1:
        raise InvalidArgument("held_out must be in [0, 1)")
    by_label: dict[str, list[Document]] = defaultdict(list)
    for d in docs:
        label = d.metadata.get(label_field)
        if label is None or label == "":
            raise CorpusError(f"document {d.id!r} has no {label_field!r} label")
        by_label[str(label)].append(d)
    skipped = sorted(label for label, group in by_label.items() if len(group) < 2)
    for label in skipped:
        if on_skip is not None:
            on_skip(f"label {label!r} has only one document; skipped (a triplet needs two documents of a label)")
        del by_label[label]
    if len(by_label) < 2:
        raise CorpusError(
            f"triplets need at least two labels with two or more documents each; found {len(by_label)} "
            f"in the {label_field!r} field"
        )
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        n_test = int(round(len(group) * held_out))
        if held_out > 0 and len(group) >= 4:
            n_test = max(2, n_test)  # a held-out label needs two documents to form a positive pair
        n_test = min(n_test, len(group) - 2)  # training keeps a pair too
        test.extend(group[:n_test])
        train.extend(group[n_test:])
    return LabelledSplit(train, test, skipped)


def mine_triplets(
    docs: Sequence[Document],
    label_field: str,
    *,
    strategy: str = "random",
    embeddings: np.ndarray | None = None,
    margin: float = 0.5,
    per_anchor: int = 1,
    seed: int = 1,
) -> list[Triplet]:
    """One or more triplets per document: a same-label positive and a different-label negative.

    ``random`` draws the negative uniformly; ``hard`` takes the wrong-label document most
    similar to the anchor; ``semi-hard`` the most similar one that is still less similar
    than the positive, within ``margin`` of it (cosine), falling back to hard when none is.
    The mined strategies need ``embeddings`` (L2-normalised, one row per document).
    """
    if strategy not in MINING:
        raise InvalidArgument(f"unknown mining strategy {strategy!r}; choose one of {', '.join(MINING)}")
    if strategy != "random" and (embeddings is None or len(embeddings) != len(docs)):
        raise InvalidArgument(f"{strategy} mining needs one embedding per document")
    labels = np.array([str(d.metadata.get(label_field)) for d in docs])
    if len(set(labels)) < 2:
        raise CorpusError("mining needs at least two labels")
    rng = np.random.default_rng(seed)
    by_label: dict[str, np.ndarray] = {lab: np.flatnonzero(labels == lab) for lab in set(labels)}
    sims = None
    if strategy != "random":
        import faiss

        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        sims, order = index.search(x, len(docs))  # exact, every document ranked for every anchor
    out: list[Triplet] = []
    for i, doc in enumerate(docs):
        same = by_label[labels[i]]
        same = same[same != i]
        if same.size == 0:
            continue
        for _ in range(per_anchor):
            p = int(rng.choice(same))
            if strategy == "random":
                n = int(rng.choice(np.flatnonzero(labels != labels[i])))
            else:
                row_order, row_sims = order[i], sims[i]
                wrong = labels[row_order] != labels[i]
                n = int(row_order[np.argmax(wrong)])  # the most similar wrong-label document
                if strategy == "semi-hard":
                    sim_pos = float(embeddings[i] @ embeddings[p])
                    window = wrong & (row_sims < sim_pos) & (row_sims > sim_pos - margin)
                    if window.any():
                        n = int(row_order[np.argmax(window)])
            out.append(Triplet(doc.text, docs[p].text, docs[n].text))
    return out
