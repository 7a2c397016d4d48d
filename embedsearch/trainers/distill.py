"""Distil a sentence model into a static student: a vector per token, mean-pooled.

Model2Vec's method (Tulkens and van Dongen 2024), written out here because the ``model2vec``
package's distillation extra pins transformers<5.4 and would downgrade this project's stack:

1. every token of the teacher's vocabulary goes through the teacher alone, between its special
   tokens (``[CLS] token [SEP]``), mean-pooled as the teacher pools (no normalisation);
2. PCA (centred) to ``--dim`` dimensions;
3. each token vector is scaled by the SIF weight a / (a + p(token)), with p from Zipf's law
   over the vocabulary order (Model2Vec's estimate) or from the token counts of your corpus.

Then, with ``--epochs`` > 0, the token vectors are fine-tuned on your corpus: the student's
mean-pooled document vectors are pulled towards the teacher's embeddings of the same documents
(projected by the same PCA) with an MSE loss between unit vectors (= 2 - 2 cos), as
sentence-transformers' ``StaticEmbedding`` is trained with ``MSELoss``. A held-out share of
the documents measures the cosine to the teacher after each epoch; the best epoch is kept.

The student is a sentence-transformers directory (``StaticEmbedding`` + ``Normalize``, safetensors)
with our manifest (kind ``static``), so it loads as ``--model DIR`` everywhere and can be the
base of ``train triplet``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError, InvalidArgument
from embedsearch.trainers.base import check_output_dir, check_params, param, torch_device
from embedsearch.versions import library_versions

WEIGHTINGS = ("zipf", "corpus")
#: below these a corpus says too little to fit anything to: refused with the reason
MIN_DOCUMENTS = 20
MIN_TOKENS = 1000


@dataclass
class DistillParams:
    teacher: str = param("minilm", "teacher: minilm or a sentence-transformers directory")
    dim: int = param(256, "student dimension: PCA of the teacher's token vectors (at most the teacher's)", min=2)
    weighting: str = param("zipf", "token weight a/(a+p): p from Zipf's law over the vocabulary (Model2Vec) "
                           "or from your corpus's token counts", choices=WEIGHTINGS)  # fmt: skip
    sif_a: float = param(1e-4, "a in the token weight a / (a + p(token)) (Model2Vec's default)", min=0)
    epochs: int = param(0, "passes of MSE fine-tuning towards the teacher's embeddings of the corpus (0: Model2Vec alone)",
                        min=0)  # fmt: skip
    lr: float = param(0.01, "fine-tuning learning rate (Adam)", min=0)
    batch_size: int = param(32, "documents per fine-tuning step", min=1)
    max_documents: int = param(5000, "documents the teacher embeds for fine-tuning and evaluation (its speed bounds this)",
                               min=1)  # fmt: skip
    held_out: float = param(0.2, "share of those documents held out to measure the cosine to the teacher", min=0)
    seed: int = param(1, "random seed (document split and sampling)", min=0)
    device: str = param("auto", "where the teacher runs: cpu, cuda, or auto")

    def validate(self) -> None:
        check_params(self)
        if not 0 <= self.held_out < 1:
            raise InvalidArgument("--held-out must be in [0, 1)")


# --- the teacher ---------------------------------------------------------------------------------


class Teacher:
    """A sentence-transformers model run up to its pooled output (before any Normalize)."""

    def __init__(self, spec: str, device: str) -> None:
        from embedsearch.embedders.sentence import bundled_minilm_path, is_sentence_transformers_dir, load_sentence_transformer
        from embedsearch.errors import UnknownModel

        if spec == "minilm":
            path = bundled_minilm_path()
        else:
            path = Path(spec).expanduser()
            if not is_sentence_transformers_dir(path):
                raise UnknownModel(f"teacher {spec!r}: not minilm and not a sentence-transformers directory")
        self.spec = spec
        self.path = Path(path).absolute()
        self.model = load_sentence_transformer(self.path, device=device).eval()
        self.tokenizer = self.model.tokenizer
        if not getattr(self.tokenizer, "is_fast", False):
            raise UnknownModel(f"teacher {spec}: a static student needs a fast (Rust) tokenizer")
        probe = self._prepare(["probe"])
        self._extra = {k: v for k, v in probe.items() if not hasattr(v, "shape")}  # e.g. modality: "text"
        self._feature_names = [k for k, v in probe.items() if hasattr(v, "shape")]

    def _prepare(self, texts: list[str]) -> dict[str, Any]:
        prep = getattr(self.model, "preprocess", None) or self.model.tokenize
        return prep(texts)

    def _pooled(self, features: dict[str, Any]) -> np.ndarray:
        import torch
        from sentence_transformers.sentence_transformer.modules import Normalize

        device = self.model.device
        features = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in features.items()}
        with torch.no_grad():
            for module in self.model:
                if not isinstance(module, Normalize):
                    features = module(features)
        return features["sentence_embedding"].float().cpu().numpy()

    def token_vectors(self, progress: bool) -> np.ndarray:
        """Every vocabulary token alone between its special tokens, pooled (Model2Vec step 1)."""
        import torch

        size = len(self.tokenizer)
        backend = self.tokenizer.backend_tokenizer
        empty = backend.encode("").ids  # [CLS] [SEP] for BERT, <s> </s> for RoBERTa...
        text = backend.encode("a").ids
        cut = next((i for i, (x, y) in enumerate(zip(empty, text, strict=False)) if x != y), len(empty))
        ids = [empty[:cut] + [i] + empty[cut:] for i in range(size)]
        width = max(len(x) for x in ids)
        out = np.empty((size, self.dim), dtype=np.float32)
        bar = _bar(size, "token vectors", "token", progress)
        step = 512
        for start in range(0, size, step):
            chunk = ids[start : start + step]
            input_ids = torch.full((len(chunk), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, seq in enumerate(chunk):
                input_ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            feats = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(input_ids)}
            feats = {k: v for k, v in feats.items() if k in self._feature_names}
            out[start : start + len(chunk)] = self._pooled({**feats, **self._extra})
            bar.update(len(chunk))
        bar.close()
        return out

    def document_vectors(self, texts: list[str], progress: bool) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        bar = _bar(len(texts), "teacher", "doc", progress)
        for start in range(0, len(texts), 32):
            out[start : start + 32] = self._pooled(self._prepare(texts[start : start + 32]))
            bar.update(min(32, len(texts) - start))
        bar.close()
        return out

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get_dim())


def _bar(total: int, desc: str, unit: str, progress: bool):
    from embedsearch.progress import bar as progress_bar

    return progress_bar(total, desc, unit, enabled=progress)


# --- the recipe ------------------------------------------------------------------------------------


def pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, components (dim, d), explained variance share) of a centred PCA."""
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd((x - mean).astype(np.float64), full_matrices=False)
    share = float((s[:dim] ** 2).sum() / (s**2).sum())
    return mean.astype(np.float32), vt[:dim].astype(np.float32), share


def token_probabilities(weighting: str, vocab_size: int, corpus_ids: list[list[int]]) -> np.ndarray:
    """p(token): Zipf over the vocabulary order, or corpus counts (add-one smoothed)."""
    if weighting == "zipf":
        inv_rank = 1.0 / np.arange(2, vocab_size + 2, dtype=np.float64)  # as Model2Vec: ranks from 2
        return inv_rank / inv_rank.sum()
    counts = np.bincount(np.fromiter((i for ids in corpus_ids for i in ids), dtype=np.int64), minlength=vocab_size)
    counts = counts[:vocab_size].astype(np.float64) + 1.0
    return counts / counts.sum()


def fine_tune(vectors: np.ndarray, train: tuple[list[list[int]], np.ndarray], held: tuple[list[list[int]], np.ndarray],
              params: DistillParams, progress: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:  # fmt: skip
    """MSE between the unit student and unit (PCA-projected) teacher vectors; the best epoch by
    held-out cosine is kept (epoch 0 is the untuned student)."""
    import torch

    torch.manual_seed(params.seed)
    bag = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(vectors.copy()), freeze=False, mode="mean")
    opt = torch.optim.Adam(bag.parameters(), lr=params.lr)

    def batch(ids: list[list[int]]):
        flat = torch.tensor([i for seq in ids for i in seq], dtype=torch.long)
        offsets = torch.tensor(np.concatenate([[0], np.cumsum([len(s) for s in ids])[:-1]]), dtype=torch.long)
        return flat, offsets

    def held_cosine() -> float:
        if not held[0]:
            return float("nan")
        with torch.no_grad():
            s = torch.nn.functional.normalize(bag(*batch(held[0])), dim=1)
            t = torch.nn.functional.normalize(torch.from_numpy(held[1]), dim=1)
            return float((s * t).sum(1).mean())

    curve = [{"epoch": 0, "held_out_cosine": _rounded(held_cosine())}]
    best = (curve[0]["held_out_cosine"], bag.weight.detach().clone())
    rng = np.random.default_rng(params.seed)
    ids, targets = train
    bar = _bar(params.epochs, "fine-tuning", "epoch", progress)
    for epoch in range(1, params.epochs + 1):
        losses = []
        order = rng.permutation(len(ids))
        for start in range(0, len(ids), params.batch_size):
            rows = order[start : start + params.batch_size]
            s = torch.nn.functional.normalize(bag(*batch([ids[r] for r in rows])), dim=1)
            t = torch.nn.functional.normalize(torch.from_numpy(targets[rows]), dim=1)
            loss = ((s - t) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        cos = held_cosine()
        curve.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 6), "held_out_cosine": _rounded(cos)})
        if not held[0] or cos > best[0]:
            best = (cos, bag.weight.detach().clone())
        bar.update(1)
    bar.close()
    return best[1].numpy(), curve


# --- the driver --------------------------------------------------------------------------------------


def train_distill(params: DistillParams, documents: list[Document], out_dir: Path, *, overwrite: bool = False,
                  progress: bool = False, sources: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Distil ``params.teacher`` into a static student at ``out_dir`` (atomically); return the manifest."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    from embedsearch.models import publish_dir, sweep_leftovers, work_dir_prefix, write_manifest
    from embedsearch.trainers.portable import make_portable

    params.validate()
    out_dir = Path(out_dir).expanduser().absolute()
    sweep_leftovers(out_dir)  # what killed runs left: their work directories, a model moved aside
    check_output_dir(out_dir, overwrite)
    texts = [d.text for d in documents if d.text.strip()]
    if len(texts) < MIN_DOCUMENTS:
        raise CorpusError(
            f"the corpus has {len(texts)} non-empty documents; distillation needs at least {MIN_DOCUMENTS} "
            "(token weights and the fine-tuning targets come from it)"
        )
    started = time.perf_counter()
    teacher = Teacher(params.teacher, torch_device(params.device))
    if params.dim > teacher.dim:
        raise InvalidArgument(f"--dim {params.dim} is larger than the teacher's {teacher.dim} dimensions")
    tok = teacher.tokenizer
    corpus_ids = [e.ids for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    n_tokens = sum(len(x) for x in corpus_ids)
    if n_tokens < MIN_TOKENS:
        raise CorpusError(f"the corpus has {n_tokens} tokens; distillation needs at least {MIN_TOKENS}")

    raw = teacher.token_vectors(progress)
    mean, components, explained = pca(raw, params.dim)
    p = token_probabilities(params.weighting, len(raw), corpus_ids)
    weights = (params.sif_a / (params.sif_a + p)).astype(np.float32)
    vectors = ((raw - mean) @ components.T) * weights[:, None]
    distilled = time.perf_counter()

    # the teacher's embeddings of (a sample of) the corpus: fine-tuning targets and the held-out check
    rng = np.random.default_rng(params.seed)
    pick = rng.permutation(len(texts))[: params.max_documents]
    n_held = int(round(len(pick) * params.held_out))
    held_rows, train_rows = pick[:n_held], pick[n_held:]
    targets = (teacher.document_vectors([texts[i] for i in pick], progress) - mean) @ components.T
    held = ([corpus_ids[i] for i in held_rows], targets[:n_held])
    train = ([corpus_ids[i] for i in train_rows], targets[n_held:])
    curve: list[dict[str, Any]] = []
    if params.epochs:
        vectors, curve = fine_tune(vectors, train, held, params, progress)
    else:
        curve = [{"epoch": 0, "held_out_cosine": _rounded(_held_cosine(vectors, held))}]
    trained = time.perf_counter()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=work_dir_prefix(out_dir), suffix=".tmp", dir=out_dir.parent) as tmp:
        model_dir = Path(tmp) / "model"
        from tokenizers import Tokenizer

        student_tok = Tokenizer.from_str(tok.backend_tokenizer.to_str())  # a copy: the teacher's stays as it is
        student_tok.no_truncation()  # a static model averages the whole text; nothing bounds its length
        student = SentenceTransformer(modules=[StaticEmbedding(student_tok, embedding_weights=vectors),
                                               Normalize()], device="cpu")  # fmt: skip
        student.save(str(model_dir), create_model_card=False, safe_serialization=True)
        make_portable(model_dir)  # loads in sentence-transformers 3.3 to 6.x
        manifest = {
            "format": 1,
            "kind": "static",
            "algorithm": "distill",
            "method": "Model2Vec (token vectors through the teacher, PCA, SIF weights)"
            + (" + MSE fine-tuning on the corpus" if params.epochs else ""),
            "teacher": {"spec": params.teacher, "path": str(teacher.path), "fingerprint": _teacher_fingerprint(teacher.path)},
            "params": dataclasses.asdict(params),
            "seed": params.seed,
            "dim": params.dim,
            "vocab_size": int(len(vectors)),
            "pca_explained_variance": round(explained, 4),
            "corpus": {"sources": sources or [], "fingerprint": _corpus_fingerprint(texts), "documents": len(texts),
                       "tokens": n_tokens, "teacher_documents": int(len(pick)), "held_out": int(n_held),
                       "tokenizer": "the teacher's"},  # fmt: skip
            # in the PCA space, against the teacher's projected vectors; the best epoch's
            "held_out_cosine_to_teacher": max((c["held_out_cosine"] for c in curve if c["held_out_cosine"] is not None),
                                              default=None),  # fmt: skip
            "loss_curve": curve,
            "versions": library_versions("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors"),
            "distill_seconds": round(distilled - started, 3),
            "train_seconds": round(trained - distilled, 3),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        manifest["wall_seconds"] = round(time.perf_counter() - started, 3)
        write_manifest(model_dir, manifest)
        publish_dir(model_dir, out_dir, overwrite=overwrite)
    return manifest


def _held_cosine(vectors: np.ndarray, held: tuple[list[list[int]], np.ndarray]) -> float:
    if not held[0]:
        return float("nan")
    s = np.stack([vectors[ids].mean(axis=0) if ids else np.zeros(vectors.shape[1], np.float32) for ids in held[0]])
    s /= np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    t = held[1] / np.maximum(np.linalg.norm(held[1], axis=1, keepdims=True), 1e-12)
    return float((s * t).sum(axis=1).mean())


def _corpus_fingerprint(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


def _teacher_fingerprint(path: Path) -> str:
    from embedsearch.embedders.sentence import directory_fingerprint

    return directory_fingerprint(path)


def _rounded(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 5)
