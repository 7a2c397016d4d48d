"""LlamaIndex: an embedsearch collection as a vector store, and embedsearch models as embeddings.

    pip install -e '.[llamaindex]'

:class:`EmbedsearchVectorStore` works over a collection in a local data directory or in an
embedsearch service (``url=``). It stores text (``stores_text``) and embeds it, and the query
text, with the collection's own model (``is_embedding_query`` is False: the retriever hands it
``query_str``), so LlamaIndex needs no embedding model of its own; ``VectorStoreIndex`` still asks
for one, and ``store.embed_model`` stands in for it::

    index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model)
    nodes = index.as_retriever(similarity_top_k=3, filters=...).retrieve("query")

A node is stored under its ``node_id`` with its text (``MetadataMode.NONE``: the collection embeds
the text alone) and LlamaIndex's usual metadata (its own fields, ``ref_doc_id``, and the node
as JSON in ``_node_content``, so it comes back whole). ``MetadataFilters`` are translated
(embedsearch/integrations/filters.py); a filter that cannot be is refused, never dropped. Query
modes: ``DEFAULT`` runs the store's ``mode`` (None: the collection's default, hybrid when it has a
lexical index), ``HYBRID`` hybrid (``alpha``: the dense side's weight), ``SPARSE`` and
``TEXT_SEARCH`` lexical; the others are refused. A query with only ``query_embedding`` (a vector of
the collection's model) is searched in dense mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import BasePydanticVectorStore, VectorStoreQuery, VectorStoreQueryResult
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from embedsearch.corpus import Document
from embedsearch.errors import InvalidArgument
from embedsearch.integrations.backends import Backend, Match, check_mode, open_backend
from embedsearch.integrations.filters import all_of, from_llamaindex

__all__ = ["CollectionEmbedding", "EmbedsearchEmbedding", "EmbedsearchVectorStore"]

#: LlamaIndex query modes and the embedsearch mode each runs (None: the store's)
QUERY_MODES = {"default": None, "hybrid": "hybrid", "sparse": "lexical", "text_search": "lexical"}
PAGE = 1000


class EmbedsearchEmbedding(BaseEmbedding):
    """An embedsearch model (a built-in name such as ``minilm`` or ``hashing``, or a model
    directory) as a LlamaIndex embedding model."""

    device: str | None = None
    _embedder: Any = PrivateAttr(default=None)

    def __init__(self, model_name: str = "minilm", *, device: str | None = None, **kwargs: Any) -> None:
        super().__init__(model_name=str(model_name), device=device, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "EmbedsearchEmbedding"

    def _vectors(self, texts: list[str]) -> list[list[float]]:
        if self._embedder is None:
            from embedsearch.embedders import load_embedder

            self._embedder = load_embedder(self.model_name, device=self.device)
        return self._embedder.embed(texts).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vectors([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vectors([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._vectors(list(texts))


class CollectionEmbedding(BaseEmbedding):
    """What ``VectorStoreIndex`` takes for an embedding model when the store embeds: documents get
    no vector here (``[]``; the store embeds their text with the collection's model, and never
    reads a node's ``embedding``), and a query is embedded by the collection's model where it is
    local (over HTTP only the service has it, and asking is an error)."""

    _backend: Any = PrivateAttr()

    def __init__(self, backend: Backend, **kwargs: Any) -> None:
        super().__init__(model_name=backend.model, **kwargs)
        self._backend = backend

    @classmethod
    def class_name(cls) -> str:
        return "EmbedsearchCollectionEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._backend.embed([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return []

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[] for _ in texts]


def _node(m: Match | dict) -> BaseNode:
    """A stored document as the LlamaIndex node it was (or as a ``TextNode`` when it was added
    some other way: the CLI, the HTTP API)."""
    doc_id, text, meta = (m.id, m.text, m.metadata) if isinstance(m, Match) else (m["id"], m["text"], m["metadata"])
    if "_node_content" in meta:
        try:
            return metadata_dict_to_node(meta, text=text)
        except ValueError:
            pass  # not LlamaIndex's JSON after all: the plain node below
    return TextNode(id_=doc_id, text=text, metadata=meta)


class EmbedsearchVectorStore(BasePydanticVectorStore):
    """An embedsearch collection as a LlamaIndex vector store.

    ``collection``: its name. Local: ``data_dir`` (default ``$EMBEDSEARCH_HOME``, else
    ``./indexes``) and ``db_url``; or a service: ``url`` and ``api_key``. An existing collection
    is opened with its own model; one that does not exist is created with ``model`` (e.g.
    ``"minilm"``), with a lexical index unless ``lexical=False``. ``mode`` and ``fusion``: how
    ``DEFAULT`` and ``HYBRID`` queries run (None: the collection's defaults).
    """

    stores_text: bool = True
    is_embedding_query: bool = False
    flat_metadata: bool = False
    collection: str
    mode: str | None = None
    fusion: str | None = None
    _backend: Any = PrivateAttr()

    def __init__(
        self,
        collection: str = "llamaindex",
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
        device: str | None = None,
        client: Any = None,
        backend: Backend | None = None,
    ) -> None:
        check_mode(mode)  # before a collection is created
        backend = backend or open_backend(
            collection, data_dir=data_dir, db_url=db_url, url=url, api_key=api_key, model=model, lexical=lexical,
            index=index, device=device, client=client,
        )  # fmt: skip
        super().__init__(collection=collection, mode=mode, fusion=fusion)
        self._backend = backend

    @classmethod
    def class_name(cls) -> str:
        return "EmbedsearchVectorStore"

    @property
    def client(self) -> Backend:
        """The backend: the collection in this process or in the service."""
        return self._backend

    @property
    def embed_model(self) -> CollectionEmbedding:
        """The embedding model to give ``VectorStoreIndex`` (see :class:`CollectionEmbedding`)."""
        return CollectionEmbedding(self._backend)

    # ---- writes -----------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Store nodes (replacing any with the same ``node_id``); their ``embedding`` is not read."""
        docs = [
            Document(n.node_id, n.get_content(metadata_mode=MetadataMode.NONE),
                     node_to_metadata_dict(n, remove_text=True, flat_metadata=self.flat_metadata))
            for n in nodes
        ]  # fmt: skip
        self._backend.add(docs)
        return [d.id for d in docs]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete the nodes of one source document."""
        self._backend.delete_where({"ref_doc_id": ref_doc_id})

    def delete_nodes(self, node_ids: list[str] | None = None, filters: Any = None, **delete_kwargs: Any) -> None:
        """Delete nodes by id, or those matching ``filters``, or (both) the given ones that match."""
        if node_ids is None and filters is None:
            raise ValueError("give node_ids or filters (clear() deletes every node)")
        if filters is None:
            self._backend.delete(node_ids)
        elif node_ids is None:
            self._backend.delete_where(from_llamaindex(filters) or {})
        else:
            self._backend.delete([n.node_id for n in self.get_nodes(node_ids, filters)])

    def clear(self) -> None:
        self._backend.delete_where({})

    # ---- reads ------------------------------------------------------------------------------
    def get_nodes(self, node_ids: list[str] | None = None, filters: Any = None) -> list[BaseNode]:
        """Nodes by id (in the order asked; missing ones left out), or matching ``filters``, or both."""
        if node_ids is not None:
            docs = self._backend.get(node_ids)
            if filters is not None:
                matching = {d["id"] for d in self._listing(from_llamaindex(filters))}
                docs = [d for d in docs if d["id"] in matching]
            return [_node(d) for d in docs]
        return [_node(d) for d in self._listing(from_llamaindex(filters))]

    def _listing(self, where: dict | None) -> list[dict]:
        out, cursor = [], None
        while True:
            docs, cursor = self._backend.list(where, PAGE, cursor)
            out += docs
            if cursor is None:
                return out

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Search by ``query_str`` (embedded by the collection), or else by ``query_embedding``."""
        asked = str(getattr(query.mode, "value", query.mode))
        if asked not in QUERY_MODES:
            raise InvalidArgument(
                f"LlamaIndex query mode {asked!r} is not supported by embedsearch; use one of {', '.join(QUERY_MODES)}"
            )
        if query.node_ids:
            raise InvalidArgument("a query restricted to node_ids is not supported by embedsearch; filter on metadata instead")
        mode = QUERY_MODES[asked] or self.mode
        where = all_of(from_llamaindex(query.filters), {"ref_doc_id": {"$in": list(query.doc_ids)}} if query.doc_ids else None)
        k = query.hybrid_top_k if asked == "hybrid" and query.hybrid_top_k else query.similarity_top_k
        alpha = query.alpha if asked == "hybrid" else None
        if query.query_str is not None:
            found = self._backend.search(query.query_str, k=k, where=where, mode=mode, fusion=self.fusion, alpha=alpha)
        elif query.query_embedding is not None:
            found = self._backend.search(vector=query.query_embedding, k=k, where=where, mode=QUERY_MODES[asked])
        else:
            raise InvalidArgument("a query needs query_str (or query_embedding, a vector of the collection's model)")
        return VectorStoreQueryResult(
            nodes=[_node(m) for m in found.matches],
            similarities=[m.score for m in found.matches],
            ids=[m.id for m in found.matches],
        )
