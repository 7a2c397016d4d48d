"""Triplet-loss fine-tuning of a sentence encoder: sentence-transformers modules and its
TripletLoss, driven by a plain PyTorch loop (the library's trainer needs ``datasets`` and
``accelerate``, which this project does not otherwise use).

Loss: max(0, d(a, p) - d(a, n) + margin), the TripletLoss of sentence-transformers, with
cosine distance (1 - cos, in [0, 2]; default margin 0.5, a quarter of the range) or
euclidean distance (default margin 1.0: MiniLM's outputs are unit-length, so distances lie
in [0, 2] there too; sentence-transformers' own default of 5 suits unnormalised encoders).

Bases: ``minilm``, any sentence-transformers directory, or one of our word-vector models,
wrapped as word embeddings (frozen) + mean pooling + a trainable dense layer, which trains
in seconds on a CPU. That model reads embedsearch's own word tokens (``corpus.tokenize``,
joined by spaces; the manifest says ``pretokenize``), every word kept, so before training it
computes exactly the mean of word vectors the word-vector embedder gives. Held-out triplet
accuracy and label retrieval are measured before and after; training stops early when
held-out accuracy stops improving, and stops with an error when the embeddings collapse
against the base model's own spread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import EmbedsearchError, InvalidArgument, UnknownModel
from embedsearch.trainers.base import check_output_dir, check_params, param, torch_device
from embedsearch.trainers.triplets import MINING, Triplet, mine_triplets, split_labelled
from embedsearch.versions import library_versions

DISTANCES = ("cosine", "euclidean")
DEFAULT_MARGIN = {"cosine": 0.5, "euclidean": 1.0}
# Collapse is judged against the base model, not by a fixed cosine: mean-pooled word vectors
# share a large common direction, so a healthy word2vec base already has a mean pairwise
# cosine of 0.9999+. The embeddings have collapsed when their spread (1 - mean pairwise
# cosine) has shrunk this many times below the base model's.
COLLAPSE_SHRINK = 10.0


class TrainingCollapsed(EmbedsearchError):
    """Every text maps to nearly the same vector: further training would be wasted."""

    code = "training_collapsed"


@dataclass
class TripletParams:
    base: str = param("minilm", "model to start from: minilm, a sentence-transformers directory, or a word-vector model of ours")
    distance: str = param("cosine", "distance in the loss", choices=DISTANCES)
    margin: float = param(0.0, "triplet margin (0: 0.5 for cosine, 1.0 for euclidean)", min=0)
    epochs: int = param(1, "passes over the training triplets", min=1)
    batch_size: int = param(16, "triplets per step", min=1)
    lr: float = param(0.0, "learning rate (0: 2e-5 for transformers, 1e-2 for the dense layer of word-vector bases)", min=0)
    warmup: float = param(0.1, "share of the steps with a linear learning-rate warm-up", min=0)
    mine: str = param("random", "negatives for labelled data: random, hard or semi-hard", choices=MINING)
    per_anchor: int = param(1, "triplets mined per training document", min=1)
    held_out: float = param(0.2, "share of documents (or triplets) held out for evaluation", min=0)
    patience: int = param(2, "evaluations without improvement before stopping early", min=1)
    eval_every: int = param(0, "steps between evaluations (0: once per epoch)", min=0)
    max_seq_length: int = param(128, "longest training input in tokens (the published model keeps the base's length)", min=8)
    dense_dim: int = param(0, "word-vector bases: output size of the trained dense layer (0: the word vectors' size)", min=0)
    seed: int = param(1, "random seed", min=0)
    device: str = param("auto", "cpu, cuda, or auto (cuda when available)")

    def validate(self) -> None:
        check_params(self)
        if self.held_out >= 1:
            raise InvalidArgument("--held-out must be below 1")

    def resolved_margin(self) -> float:
        return self.margin or DEFAULT_MARGIN[self.distance]


# --- models ------------------------------------------------------------------------------------


@dataclass
class Base:
    """The model being trained, its kind ("transformer", "word-vectors" or "static") and how texts are
    turned into its inputs (``pretokenize``: None for raw text, or a value of
    ``embedders.sentence.PRETOKENIZERS``, recorded in the manifest for whoever loads it)."""

    model: Any
    kind: str
    pretokenize: str | None = None

    def inputs(self, texts: list[str]) -> list[str]:
        from embedsearch.embedders.sentence import PRETOKENIZE_WORDS, pretokenize_words

        if self.pretokenize == PRETOKENIZE_WORDS:
            return pretokenize_words(texts)
        return list(texts)


def load_base(spec: str, device: str, *, dense_dim: int = 0, seed: int = 1) -> Base:
    """The model to start from, for a base spec."""
    import torch
    from sentence_transformers import SentenceTransformer

    from embedsearch.embedders.sentence import (
        PRETOKENIZE_WORDS,
        PRETOKENIZERS,
        bundled_minilm_path,
        is_sentence_transformers_dir,
        load_sentence_transformer,
    )

    if spec == "minilm":
        return Base(load_sentence_transformer(bundled_minilm_path(), device=device), "transformer")
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise UnknownModel(f"base model {spec!r}: not minilm and no such directory")
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    kind = manifest.get("kind")
    if kind in ("word-vectors", "fasttext"):
        from sentence_transformers.sentence_transformer.modules import Dense, Pooling, WordEmbeddings
        from sentence_transformers.sentence_transformer.modules.tokenizer import WhitespaceTokenizer

        from embedsearch.models import load_word_vectors

        wv = load_word_vectors(path)  # FastText bases use their vocabulary's vectors
        torch.manual_seed(seed)
        out_dim = dense_dim or wv.dim
        # The model is fed embedsearch's tokens joined by spaces (Base.inputs), so splitting on
        # whitespace gives back exactly the word-vector embedder's tokens; no stop words are
        # dropped (the library's default drops 386), and unknown words are skipped as there.
        tokenizer = WhitespaceTokenizer(vocab=wv.words, stop_words=set(), do_lower_case=True)
        words = WordEmbeddings(tokenizer, wv.vectors, update_embeddings=False)
        # start as the identity (or a random projection when the size changes), so the
        # untrained model is the mean of word vectors the base already gives
        init = torch.eye(out_dim, wv.dim) if out_dim == wv.dim else None
        dense = Dense(wv.dim, out_dim, activation_function=torch.nn.Identity(), init_weight=init,
                      init_bias=torch.zeros(out_dim) if init is not None else None)  # fmt: skip
        model = SentenceTransformer(modules=[words, Pooling(wv.dim, "mean"), dense], device=device)
        return Base(model, "word-vectors", PRETOKENIZE_WORDS)
    if kind == "static":  # a student from `train distill`: a trainable token table, trained like word vectors
        return Base(load_sentence_transformer(path, device=device), "static")
    if kind == "sentence-transformers" or is_sentence_transformers_dir(path):
        pretokenize = manifest.get("pretokenize")  # a model trained here on a word-vector base
        if pretokenize is not None and pretokenize not in PRETOKENIZERS:
            raise UnknownModel(f"base model {spec}: unknown pretokenize {pretokenize!r} in its manifest")
        return Base(load_sentence_transformer(path, device=device), "transformer", pretokenize)
    raise UnknownModel(f"base model {spec}: neither a sentence-transformers model nor a word-vector model")


def encode(model, texts: list[str], batch_size: int = 64) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        out = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


# --- evaluation --------------------------------------------------------------------------------


def evaluate(model, triplets: list[Triplet], docs: list[Document], label_field: str | None, distance: str) -> dict:
    """Held-out triplet accuracy, label retrieval (when documents are labelled) and the mean
    pairwise cosine that signals collapse. Texts are the model's inputs (see Base.inputs)."""
    from embedsearch.evaluation.retrieval import label_retrieval, mean_pairwise_cosine, triplet_accuracy

    texts = sorted({t for tr in triplets for t in (tr.anchor, tr.positive, tr.negative)} | {d.text for d in docs})
    vecs = dict(zip(texts, encode(model, texts), strict=True))
    out: dict[str, Any] = {}
    if triplets:
        a, p, n = (np.stack([vecs[getattr(t, f)] for t in triplets]) for f in ("anchor", "positive", "negative"))
        out["triplet_accuracy"] = triplet_accuracy(a, p, n, distance)
    if docs and label_field:
        out.update(label_retrieval(np.stack([vecs[d.text] for d in docs]), [str(d.metadata[label_field]) for d in docs]))
    out["mean_pairwise_cosine"] = mean_pairwise_cosine(np.stack(list(vecs.values())))
    return out


# --- data --------------------------------------------------------------------------------------


@dataclass
class TripletData:
    train: list[Triplet]
    held_out: list[Triplet]
    held_out_docs: list[Document]
    label_field: str | None
    fingerprint: str
    skipped: list[str]

    def as_inputs(self, inputs: Callable[[list[str]], list[str]]) -> TripletData:
        """The same data with every text turned into the model's input (the fingerprint stays
        that of the original data)."""

        def triplets(ts: list[Triplet]) -> list[Triplet]:
            flat = inputs([x for t in ts for x in (t.anchor, t.positive, t.negative)])
            return [Triplet(*flat[i : i + 3]) for i in range(0, len(flat), 3)]

        texts = inputs([d.text for d in self.held_out_docs])
        docs = [dataclasses.replace(d, text=t) for d, t in zip(self.held_out_docs, texts, strict=True)]
        return dataclasses.replace(self, train=triplets(self.train), held_out=triplets(self.held_out), held_out_docs=docs)


def _fingerprint(items: list[str]) -> str:
    h = hashlib.sha256()
    for s in items:
        h.update(s.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def data_from_triplets(triplets: list[Triplet], params: TripletParams) -> TripletData:
    """Hold out a share of the triplets; training triplets sharing any text with them are dropped."""
    rng = np.random.default_rng(params.seed)
    order = rng.permutation(len(triplets))
    n_test = int(round(len(triplets) * params.held_out))
    test = [triplets[i] for i in order[:n_test]]
    seen = {t for tr in test for t in (tr.anchor, tr.positive, tr.negative)}
    train = [triplets[i] for i in order[n_test:] if not ({triplets[i].anchor, triplets[i].positive, triplets[i].negative} & seen)]
    if not train:
        raise InvalidArgument("no training triplets left after holding out evaluation texts; lower --held-out")
    fp = _fingerprint([x for t in triplets for x in (t.anchor, t.positive, t.negative)])
    return TripletData(train, test, [], None, fp, [])


def data_from_labels(docs: list[Document], label_field: str, params: TripletParams, base: Base, on_skip=None) -> TripletData:
    split = split_labelled(docs, label_field, held_out=params.held_out, seed=params.seed, on_skip=on_skip)
    emb = encode(base.model, base.inputs([d.text for d in split.train])) if params.mine != "random" else None
    train = mine_triplets(split.train, label_field, strategy=params.mine, embeddings=emb,
                          margin=params.resolved_margin(), per_anchor=params.per_anchor, seed=params.seed)  # fmt: skip
    test = (
        mine_triplets(split.held_out, label_field, strategy="random", per_anchor=params.per_anchor, seed=params.seed + 1)
        if split.held_out
        else []
    )
    fp = _fingerprint([f"{d.metadata.get(label_field)}\t{d.text}" for d in docs])
    return TripletData(train, test, split.held_out, label_field, fp, split.skipped_labels)


# --- training ----------------------------------------------------------------------------------


def fit(
    model,
    kind: str,
    data: TripletData,
    params: TripletParams,
    device: str,
    progress: bool,
    checkpoint_dir: Path,
    base_cosine: float | None = None,
) -> dict:
    """Train in place on ``data`` (already the model's inputs); returns the loss curve,
    evaluations and the reason training stopped. The best model by held-out triplet accuracy
    is checkpointed and restored at the end. ``base_cosine``: the untrained model's mean
    pairwise cosine on the held-out texts, which collapse is judged against (measured here
    when not given)."""
    import torch

    from embedsearch.progress import bar as progress_bar

    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    margin = params.resolved_margin()
    lr = params.lr or (1e-2 if kind in ("word-vectors", "static") else 2e-5)
    current = getattr(model, "max_seq_length", None) or params.max_seq_length
    try:
        model.max_seq_length = min(params.max_seq_length, current)
    except AttributeError:  # a static model (StaticEmbedding, from `train distill`) has no length to set
        pass
    from sentence_transformers.sentence_transformer.losses import TripletDistanceMetric, TripletLoss

    metric = TripletDistanceMetric.COSINE if params.distance == "cosine" else TripletDistanceMetric.EUCLIDEAN
    loss_fn = TripletLoss(model, distance_metric=metric, triplet_margin=margin)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    steps_per_epoch = math.ceil(len(data.train) / params.batch_size)
    total = steps_per_epoch * params.epochs
    warm = max(1, int(total * params.warmup))

    def schedule(s: int) -> float:  # linear warm-up, then linear decay to zero
        return (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    eval_every = params.eval_every or steps_per_epoch
    held_out = bool(data.held_out or data.held_out_docs)
    if held_out and base_cosine is None:
        base_cosine = evaluate(model, data.held_out, data.held_out_docs, data.label_field, params.distance)[
            "mean_pairwise_cosine"
        ]
    curve, evals = [], []
    best, best_step, waited, stopped = -1.0, 0, 0, "finished all epochs"
    step = 0
    bar = progress_bar(total, "triplet", "step", enabled=progress)
    started = time.perf_counter()
    try:
        for epoch in range(params.epochs):
            order = rng.permutation(len(data.train))
            for b in range(steps_per_epoch):
                batch = [data.train[i] for i in order[b * params.batch_size : (b + 1) * params.batch_size]]
                model.train()
                with autocast:
                    emb = [model(_features(model, [getattr(t, f) for t in batch], device))["sentence_embedding"]
                           for f in ("anchor", "positive", "negative")]  # fmt: skip
                    loss = loss_fn.compute_loss_from_embeddings(emb, None)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                curve.append({"step": step, "epoch": epoch + 1, "loss": float(loss.detach())})
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
                if step % eval_every == 0 or step == total:
                    if held_out:
                        m = evaluate(model, data.held_out, data.held_out_docs, data.label_field, params.distance)
                        m["step"] = step
                        evals.append(m)
                        _collapse_check(m, curve[-eval_every:], margin, base_cosine=base_cosine, lr=lr, mine=params.mine)
                        score = m.get("triplet_accuracy", m.get("recall@10", 0.0))
                        if score > best:
                            best, best_step, waited = score, step, 0
                            _checkpoint(model, checkpoint_dir)
                        else:
                            waited += 1
                            if waited >= params.patience:
                                stopped = f"early stop: no held-out improvement in {params.patience} evaluations"
                                raise _Stop
    except _Stop:
        pass
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    if best_step and best_step != step:
        restored = _restore(checkpoint_dir, device)
        model.load_state_dict(restored.state_dict())
    return {"loss_curve": curve, "evaluations": evals, "stopped": stopped, "best_step": best_step or step, "steps": step,
            "train_seconds": round(seconds, 3), "examples_per_second": round(step * params.batch_size / max(seconds, 1e-9), 2),
            "lr": lr, "margin": margin}  # fmt: skip


class _Stop(Exception):
    pass


def _features(model, texts: list[str], device: str) -> dict:
    feats = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)  # tokenize: deprecated in 6
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in feats.items()}


def _collapse_check(
    metrics: dict, recent: list[dict], margin: float, *, base_cosine: float, lr: float, mine: str = "random"
) -> None:
    """Stop when the spread of the embeddings (1 - mean pairwise cosine) has shrunk
    COLLAPSE_SHRINK times below the base model's, or the loss sits at the margin."""
    advice = f"try --lr {lr / 10:g}" + (", or --mine semi-hard or random instead of hard" if mine == "hard" else "")
    base_spread, spread = 1.0 - base_cosine, 1.0 - metrics["mean_pairwise_cosine"]
    if base_spread > 0 and spread < base_spread / COLLAPSE_SHRINK:
        now = f"{spread:.3g}, {base_spread / spread:.3g} times smaller" if spread > 1e-12 else "0: every text points the same way"
        raise TrainingCollapsed(
            f"the embeddings collapsed at learning rate {lr:g}: their spread (1 - mean pairwise cosine) fell from "
            f"{base_spread:.3g} in the base model to {now}; {advice}"
        )
    losses = [p["loss"] for p in recent]
    if len(losses) >= 5 and all(abs(x - margin) < 1e-3 for x in losses):
        raise TrainingCollapsed(
            f"the loss is stuck at the margin ({margin}) at learning rate {lr:g}: every triplet is tied; {advice}"
        )


def _checkpoint(model, directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    model.save(str(directory), safe_serialization=True)


def _restore(directory: Path, device: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(directory), device=device)


def train_triplet(
    params: TripletParams,
    out_dir: Path,
    *,
    triplets: list[Triplet] | None = None,
    documents: list[Document] | None = None,
    label_field: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_skip=None,
) -> dict[str, Any]:
    """Fine-tune ``params.base`` on triplets (given, or mined from labelled ``documents``)
    and publish a sentence-transformers model with our manifest at ``out_dir``."""

    from embedsearch.models import publish_dir, sweep_leftovers, work_dir_prefix, write_manifest
    from embedsearch.trainers.portable import make_portable

    params.validate()
    if (triplets is None) == (documents is None):
        raise InvalidArgument("give either triplets or labelled documents")
    out_dir = Path(out_dir).expanduser().absolute()
    sweep_leftovers(out_dir)  # what killed runs left: their work directories, a model moved aside
    check_output_dir(out_dir, overwrite)
    if documents is not None and not label_field:
        raise InvalidArgument("labelled documents need --label-field")
    given = data_from_triplets(triplets, params) if triplets is not None else None  # before the base loads
    device = torch_device(params.device)
    base = load_base(params.base, device, dense_dim=params.dense_dim, seed=params.seed)
    model, kind = base.model, base.kind
    if given is not None:
        data = given
    else:
        data = data_from_labels(documents, label_field, params, base, on_skip=on_skip)
    if not data.train:
        raise InvalidArgument("no training triplets: the data is too small")
    data = data.as_inputs(base.inputs)
    held_out = bool(data.held_out or data.held_out_docs)
    before = evaluate(model, data.held_out, data.held_out_docs, data.label_field, params.distance) if held_out else {}
    base_length = getattr(model, "max_seq_length", None) if kind == "transformer" else None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=work_dir_prefix(out_dir), suffix=".tmp", dir=out_dir.parent) as tmp:
        result = fit(model, kind, data, params, device, progress, Path(tmp) / "checkpoint", before.get("mean_pairwise_cosine"))
        if base_length is not None:  # trained on --max-seq-length tokens; published with the base's length
            model.max_seq_length = base_length
        after = evaluate(model, data.held_out, data.held_out_docs, data.label_field, params.distance) if held_out else {}
        model_dir = Path(tmp) / "model"
        model.save(str(model_dir), safe_serialization=True)
        make_portable(model_dir, max_seq_length=base_length)  # loads in sentence-transformers 3.x to 6.x
        manifest = {
            "format": 1,
            "kind": "sentence-transformers",
            "algorithm": "triplet",
            "base": params.base,
            "base_kind": kind,
            "pretokenize": base.pretokenize,
            "params": dataclasses.asdict(params),
            "seed": params.seed,
            "dim": int(encode(model, ["x"]).shape[1]),
            "device": device,
            "data": {
                "fingerprint": data.fingerprint,
                "train_triplets": len(data.train),
                "held_out_triplets": len(data.held_out),
                "held_out_documents": len(data.held_out_docs),
                "label_field": data.label_field,
                "skipped_labels": data.skipped,
                "mining": params.mine if documents is not None else "given",
            },  # fmt: skip
            "metrics_before": before,
            "metrics_after": after,
            "versions": library_versions("sentence-transformers", "torch"),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **result,
        }
        write_manifest(model_dir, manifest)
        publish_dir(model_dir, out_dir, overwrite=overwrite)
    return manifest
