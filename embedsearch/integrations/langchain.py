"""LangChain: an embedsearch collection as a ``VectorStore``, and embedsearch models as ``Embeddings``.

    pip install -e '.[langchain]'

:class:`EmbedsearchVectorStore` works over a collection in a local data directory or in an
embedsearch service (``url=``); the collection embeds with its own model, so it takes no
``Embeddings`` (:class:`EmbedsearchEmbeddings` gives LangChain code that wants one the same
model). Searches take embedsearch's MongoDB-style ``filter`` dicts (or LangChain structured-query
filters) and a search ``mode`` (``dense``, ``lexical``, ``hybrid``; default: the collection's,
hybrid when it has a lexical index), and ``as_retriever()`` passes ``search_kwargs`` on to them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings
from langchain_core.structured_query import Comparison, FilterDirective, Operation, StructuredQuery, Visitor
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from embedsearch.corpus import Document
from embedsearch.errors import InvalidArgument
from embedsearch.integrations.backends import Backend, Found, check_mode, open_backend
from embedsearch.integrations.filters import from_langchain_comparison, from_langchain_operation

__all__ = ["EmbedsearchEmbeddings", "EmbedsearchTranslator", "EmbedsearchVectorStore"]


class EmbedsearchEmbeddings(Embeddings):
    """An embedsearch model (a built-in name such as ``minilm`` or ``hashing``, a model directory,
    or a loaded :class:`~embedsearch.embedders.base.Embedder`) as LangChain ``Embeddings``."""

    def __init__(self, model: Any = "minilm", *, device: str | None = None) -> None:
        self._embedder = None if isinstance(model, (str, Path)) else model
        self.model = str(model) if self._embedder is None else self._embedder.spec
        self.device = device

    @property
    def embedder(self):
        """The embedsearch model, loaded on first use."""
        if self._embedder is None:
            from embedsearch.embedders import load_embedder

            self._embedder = load_embedder(self.model, device=self.device)
        return self._embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class EmbedsearchTranslator(Visitor):
    """LangChain structured queries (what a self-querying retriever writes) as embedsearch filters;
    see embedsearch/integrations/filters.py. ``visit_structured_query`` gives ``(query, {"filter": ...})``."""

    def visit_operation(self, operation: Operation) -> dict:
        return from_langchain_operation(operation.operator, [arg.accept(self) for arg in operation.arguments])

    def visit_comparison(self, comparison: Comparison) -> dict:
        return from_langchain_comparison(comparison.attribute, comparison.comparator, comparison.value)

    def visit_structured_query(self, structured_query: StructuredQuery) -> tuple[str, dict]:
        if structured_query.filter is None:
            return structured_query.query, {}
        return structured_query.query, {"filter": structured_query.filter.accept(self)}


def _where(filter: dict | FilterDirective | None) -> dict | None:
    if filter is None or isinstance(filter, dict):
        return filter or None
    if isinstance(filter, FilterDirective):
        return filter.accept(EmbedsearchTranslator())
    raise InvalidArgument(
        f"filter must be a dict (embedsearch's filter language) or a LangChain filter, not {type(filter).__name__}"
    )


class EmbedsearchVectorStore(VectorStore):
    """An embedsearch collection as a LangChain vector store.

    ``collection``: its name. Local: ``data_dir`` (default ``$EMBEDSEARCH_HOME``, else
    ``./indexes``) and ``db_url``; or a service: ``url`` and ``api_key``. An existing collection
    is opened with its own model; one that does not exist is created with ``model`` (e.g.
    ``"minilm"``), with a lexical index unless ``lexical=False``. ``mode``, ``fusion`` and ``alpha``
    are how searches run unless a search says otherwise (None: the collection's defaults).
    """

    def __init__(
        self,
        collection: str = "langchain",
        *,
        data_dir: str | Path | None = None,
        db_url: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        lexical: bool = True,
        index: str = "auto",
        mode: str | None = None,
        fusion: str | None = None,
        alpha: float | None = None,
        device: str | None = None,
        client: Any = None,
        backend: Backend | None = None,
    ) -> None:
        check_mode(mode)  # before a collection is created
        self.backend = backend or open_backend(
            collection, data_dir=data_dir, db_url=db_url, url=url, api_key=api_key, model=model, lexical=lexical,
            index=index, device=device, client=client,
        )  # fmt: skip
        self.mode, self.fusion, self.alpha = mode, fusion, alpha

    @property
    def embeddings(self) -> Embeddings | None:
        """The collection's model as ``Embeddings`` (None over HTTP: the service embeds)."""
        return EmbedsearchEmbeddings(self.backend.embedder) if self.backend.local else None

    # ---- writes -----------------------------------------------------------------------------
    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None, **kwargs: Any
    ) -> list[str]:
        """Add (or replace, by id) texts; ids are made up (uuid4) where not given. Returns the ids."""
        if kwargs:
            raise TypeError(f"add_texts() got unexpected keyword arguments: {', '.join(kwargs)}")
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        ids = [str(i) if i else uuid.uuid4().hex for i in (ids or [None] * len(texts))]
        metas = metadatas or [{}] * len(texts)
        self.backend.add([Document(i, t, dict(m or {})) for i, t, m in zip(ids, texts, metas, strict=True)])
        return ids

    def delete(self, ids: list[str] | None = None, *, filter: dict | FilterDirective | None = None, **kwargs: Any) -> bool:
        """Delete documents by id (ids not there are ignored), or those matching ``filter``
        (``filter={}``: every document). Neither given is an error, never "delete everything"."""
        if kwargs:
            raise TypeError(f"delete() got unexpected keyword arguments: {', '.join(kwargs)}")
        if ids is None and filter is None:
            raise ValueError("give ids to delete, or filter= (filter={} deletes every document)")
        if ids is not None:
            self.backend.delete(ids)
        if filter is not None:
            self.backend.delete_where(_where(filter) or {})
        return True

    # ---- reads ------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[LCDocument]:
        return [LCDocument(id=d["id"], page_content=d["text"], metadata=d["metadata"]) for d in self.backend.get(ids)]

    def _found(
        self,
        query: str | None,
        vector: Sequence[float] | None,
        k: int,
        filter: dict | FilterDirective | None,
        mode: str | None,
        fusion: str | None,
        alpha: float | None,
        kwargs: dict,
    ) -> Found:
        if kwargs:
            raise TypeError(f"unexpected search arguments: {', '.join(kwargs)} (embedsearch takes filter, mode, fusion, alpha)")
        return self.backend.search(
            query, vector=vector, k=k, where=_where(filter), mode=mode or self.mode, fusion=fusion or self.fusion,
            alpha=self.alpha if alpha is None else alpha,
        )  # fmt: skip

    @staticmethod
    def _scored(found: Found) -> list[tuple[LCDocument, float]]:
        return [(LCDocument(id=m.id, page_content=m.text, metadata=m.metadata), m.score) for m in found.matches]

    def similarity_search_with_score(
        self,
        query: str,
        k: int = 4,
        filter: dict | FilterDirective | None = None,
        *,
        mode: str | None = None,
        fusion: str | None = None,
        alpha: float | None = None,
        **kwargs: Any,
    ) -> list[tuple[LCDocument, float]]:
        """Documents for ``query`` with their scores, best first (higher is better: cosine in
        dense mode, BM25 in lexical mode, the fused score in hybrid mode)."""
        return self._scored(self._found(query, None, k, filter, mode, fusion, alpha, kwargs))

    def similarity_search(
        self, query: str, k: int = 4, filter: dict | FilterDirective | None = None, **kwargs: Any
    ) -> list[LCDocument]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | FilterDirective | None = None, **kwargs: Any
    ) -> list[LCDocument]:
        """Documents nearest a vector of the collection's model (dense mode)."""
        return [doc for doc, _ in self._scored(self._found(None, embedding, k, filter, "dense", None, None, kwargs))]

    def _similarity_search_with_relevance_scores(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[LCDocument, float]]:
        """Scores in [0, 1]: the cosine (dense) or the fused score (hybrid), clipped. Lexical
        scores (BM25) have no fixed range, so they have no relevance score."""
        filter = kwargs.pop("filter", None)
        mode, fusion, alpha = kwargs.pop("mode", None), kwargs.pop("fusion", None), kwargs.pop("alpha", None)
        found = self._found(query, None, k, filter, mode, fusion, alpha, kwargs)
        if found.mode == "lexical":
            raise InvalidArgument("lexical scores (BM25) have no fixed range: relevance scores need mode dense or hybrid")
        return [(doc, float(np.clip(score, 0.0, 1.0))) for doc, score in self._scored(found)]

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[LCDocument]:
        """Maximal marginal relevance among the ``fetch_k`` nearest documents (dense; local
        collections only: it compares the candidates' vectors, which the service does not return)."""
        self._need_local("max_marginal_relevance_search")
        vector = self.backend.embed([query])[0].tolist()
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, **kwargs)

    def max_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[LCDocument]:
        self._need_local("max_marginal_relevance_search_by_vector")
        filter = kwargs.pop("filter", None)
        found = self._found(None, embedding, max(k, fetch_k), filter, "dense", None, None, kwargs)
        if not found.matches:
            return []
        vectors = self.backend.embed([m.text for m in found.matches])
        chosen = maximal_marginal_relevance(np.asarray(embedding, dtype=np.float32), vectors.tolist(), lambda_mult, k)
        docs = self._scored(found)
        return [docs[i][0] for i in chosen]

    def _need_local(self, what: str) -> None:
        if not self.backend.local:
            raise NotImplementedError(f"{what} needs the documents' vectors, which the embedsearch service does not return")

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        collection: str = "langchain",
        **kwargs: Any,
    ) -> EmbedsearchVectorStore:
        """A store (the collection opened, or created with ``embedding``'s model) holding ``texts``.
        ``embedding``: :class:`EmbedsearchEmbeddings` or None (then ``model=`` names the model);
        the collection embeds with its own model, so other ``Embeddings`` cannot be used."""
        if embedding is not None:
            if not isinstance(embedding, EmbedsearchEmbeddings):
                raise TypeError(
                    f"embedsearch collections embed with their own model: pass EmbedsearchEmbeddings(model) or None "
                    f"(with model=...), not {type(embedding).__name__}"
                )
            kwargs.setdefault("model", embedding.model)
        store = cls(collection, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
