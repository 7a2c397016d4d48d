"""Trainers by name. Each is a small module; importing this package loads none of the
training libraries (gensim, fasttext, numba), only the classes that describe them."""

from __future__ import annotations

from embedsearch.errors import UnknownModel
from embedsearch.trainers.base import FitResult, Trainer, TrainReport, WordParams, train


def _registry() -> dict[str, type[Trainer]]:
    from embedsearch.trainers.fasttext import FastTextTrainer
    from embedsearch.trainers.glove import GloveTrainer
    from embedsearch.trainers.word2vec import Word2VecTrainer

    return {t.name: t for t in (Word2VecTrainer, FastTextTrainer, GloveTrainer)}


TRAINER_NAMES = ("word2vec", "fasttext", "glove")


def get_trainer(name: str) -> Trainer:
    """The trainer registered as ``name``; an error lists the valid names."""
    registry = _registry()
    if name not in registry:
        raise UnknownModel(f"unknown trainer {name!r}; choose one of {', '.join(registry)}")
    return registry[name]()


__all__ = ["TRAINER_NAMES", "FitResult", "TrainReport", "Trainer", "WordParams", "get_trainer", "train"]
