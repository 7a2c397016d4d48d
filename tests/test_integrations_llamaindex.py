"""The LlamaIndex adapter (embedsearch/integrations/llamaindex.py) over a local data directory and over
the real service, with real collections: nodes in and out through ``VectorStoreIndex``, retrievers,
every filter operator checked against LlamaIndex's own reference (``build_metadata_filter_fn``,
what its ``SimpleVectorStore`` runs) and nested conditions against our dict filters, hybrid mode
with alpha, deletes, an existing collection opened with its own model, and the errors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document as LIDocument  # noqa: E402
from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.schema import TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn  # noqa: E402

from embedsearch.config import Settings  # noqa: E402
from embedsearch.corpus import Document  # noqa: E402
from embedsearch.errors import CollectionNotFound, InvalidArgument  # noqa: E402
from embedsearch.integrations.filters import UnsupportedFilter  # noqa: E402
from embedsearch.integrations.llamaindex import EmbedsearchEmbedding, EmbedsearchVectorStore  # noqa: E402
from embedsearch.store import Store  # noqa: E402
from tests.integrations_support import KEY, corpus, offline, readme_block, running_service  # noqa: E402

F, Op, Cond = MetadataFilter, FilterOperator, FilterCondition


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    data = tmp_path_factory.mktemp("served")
    with running_service(data) as url:
        yield url, data


@pytest.fixture(params=["local", "http"])
def make(request, tmp_path, service):
    url, served = service

    def make(collection: str | None = None, **kwargs) -> EmbedsearchVectorStore:
        collection = collection or f"c-{uuid.uuid4().hex[:10]}"
        if request.param == "local":
            return EmbedsearchVectorStore(collection, data_dir=tmp_path / "data", **kwargs)
        return EmbedsearchVectorStore(collection, url=url, api_key=KEY, **kwargs)

    make.kind = request.param
    make.data_dir = tmp_path / "data" if request.param == "local" else served
    return make


def filled(make, **kwargs) -> EmbedsearchVectorStore:
    store = make(model="hashing", **kwargs)
    assert store.add([TextNode(id_=i, text=t, metadata=m) for i, t, m in corpus()]) == [i for i, _, _ in corpus()]
    return store


def found(store, filters=None, query="story", k=100, **kwargs) -> list[str]:
    result = store.query(VectorStoreQuery(query_str=query, similarity_top_k=k, filters=filters, **kwargs))
    assert [n.node_id for n in result.nodes] == result.ids and len(result.similarities) == len(result.ids)
    return result.ids


#: one MetadataFilter per operator we translate, on flat metadata (the reference takes no nesting)
FLAT = [
    F(key="source", value="lee"),
    F(key="source", value="lee", operator=Op.NE),
    F(key="year", value=2000, operator=Op.GT),
    F(key="year", value=2000, operator=Op.GTE),
    F(key="year", value=1998, operator=Op.LT),
    F(key="year", value=1998, operator=Op.LTE),
    F(key="year", value=[1995, 2000, 2004], operator=Op.IN),
    F(key="source", value=["bbc", "cnn"], operator=Op.NIN),
    F(key="tags", value=["fire", "sport"], operator=Op.ANY),
    F(key="tags", value=["fire", "money"], operator=Op.ALL),
    F(key="tags", value="sport", operator=Op.CONTAINS),
    F(key="note", value=None, operator=Op.IS_EMPTY),
    F(key="tags", value=None, operator=Op.IS_EMPTY),
    F(key="note", value="note 2", operator=Op.NE),  # missing and null fields are != anything, in both
]


def test_every_operator_selects_what_llamaindex_reference_selects(make):
    store = filled(make, mode="dense")  # dense: every matching document is a hit when k covers them
    meta = {i: m for i, _, m in corpus()}
    groups = [MetadataFilters(filters=[f]) for f in FLAT] + [
        MetadataFilters(filters=[FLAT[0], FLAT[2]], condition=Cond.OR),
        MetadataFilters(filters=[FLAT[0], FLAT[10]], condition=Cond.NOT),
        MetadataFilters(filters=[FLAT[3], FLAT[8], FLAT[1]]),
    ]
    for filters in groups:
        expected = {i for i in meta if build_metadata_filter_fn(lambda i: meta[i], filters)(i)}
        assert set(found(store, filters)) == expected, filters
        assert 0 < len(expected) < len(meta), filters  # every case tells documents apart


def test_nested_conditions_match_our_dict_filters(make):
    store = filled(make, mode="dense")
    nested = MetadataFilters(
        filters=[
            F(key="year", value=1999, operator=Op.GT),
            MetadataFilters(filters=[F(key="source", value="lee"), F(key="rare", value=1)], condition=Cond.OR),
            MetadataFilters(
                filters=[F(key="tags", value="money", operator=Op.CONTAINS), MetadataFilters(filters=[F(key="topic", value=3)])],
                condition=Cond.NOT,
            ),
        ]
    )
    same = {"$and": [{"year": {"$gt": 1999}}, {"$or": [{"source": "lee"}, {"rare": 1}]},
                     {"$nor": [{"tags": {"$elemMatch": {"$eq": "money"}}}, {"topic": 3}]}]}  # fmt: skip
    ids = found(store, nested)
    assert ids and ids == [m.id for m in store.client.search("story", k=100, where=same, mode="dense").matches]
    assert set(ids) < {i for i, _, _ in corpus()}


def test_what_cannot_be_translated_is_refused_by_name(make):
    store = filled(make)
    for op in (Op.TEXT_MATCH, Op.TEXT_MATCH_INSENSITIVE):
        with pytest.raises(UnsupportedFilter, match=op.name):
            found(store, MetadataFilters(filters=[F(key="source", value="le", operator=op)]))
    inner = MetadataFilters(filters=[F(key="note", value="no", operator=Op.TEXT_MATCH)])
    with pytest.raises(UnsupportedFilter, match="TEXT_MATCH"):  # however deep
        found(store, MetadataFilters(filters=[FLAT[0], inner], condition=Cond.OR))
    with pytest.raises(UnsupportedFilter, match="takes a list"):
        found(store, MetadataFilters(filters=[F(key="year", value=1999, operator=Op.IN)]))
    with pytest.raises(InvalidArgument, match="mmr"):
        found(store, mode=VectorStoreQueryMode.MMR)
    with pytest.raises(InvalidArgument, match="node_ids"):
        found(store, node_ids=["doc-1"])


def test_index_insert_retrieve_hybrid_and_delete(make):
    store = make(model="hashing")
    docs = [LIDocument(id_=f"src-{i}", text=t, metadata=m) for i, (_, t, m) in enumerate(corpus(8))]
    VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                    embed_model=store.embed_model)  # fmt: skip
    index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model)
    lee = MetadataFilters(filters=[F(key="source", value="lee")])
    hits = index.as_retriever(similarity_top_k=2, filters=lee).retrieve("interest rates bank")
    assert [h.node.metadata["topic"] for h in hits] == [1, 1] and hits[0].score >= hits[1].score
    assert hits[0].node.ref_doc_id in ("src-1", "src-5") and hits[0].node.get_content().startswith("interest rates")

    dense = make(store.collection, mode="dense")
    by_dense = [n.node.ref_doc_id for n in VectorStoreIndex.from_vector_store(dense, embed_model=dense.embed_model)
                .as_retriever(similarity_top_k=3).retrieve("wickets batsman")]  # fmt: skip

    def hybrid(alpha):
        r = index.as_retriever(similarity_top_k=3, vector_store_query_mode="hybrid", alpha=alpha)
        return [n.node.ref_doc_id for n in r.retrieve("wickets batsman")]

    assert hybrid(1.0)[:2] == by_dense[:2] == ["src-2", "src-6"]  # alpha: the dense side's weight (the rest score 0)
    words = [n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=3, vector_store_query_mode="text_search")
             .retrieve("wickets")]  # fmt: skip
    assert words == ["src-2", "src-6"] and hybrid(0.0)[:2] == words

    store.delete("src-2")
    assert "src-2" not in [n.ref_doc_id for n in store.get_nodes(filters=MetadataFilters(filters=[]))]
    node_ids = [n.node_id for n in store.get_nodes(filters=lee)]
    assert len(node_ids) == 4
    store.delete_nodes(node_ids[:1])  # 1996 (in the order added)
    store.delete_nodes(filters=MetadataFilters(filters=[F(key="year", value=1998)]))
    assert sorted(n.metadata["year"] for n in store.get_nodes(filters=lee)) == [2000, 2002]
    store.delete_nodes(node_ids, filters=MetadataFilters(filters=[F(key="year", value=2000)]))
    assert [n.metadata["year"] for n in store.get_nodes(filters=lee)] == [2002]
    store.clear()
    assert store.get_nodes(filters=MetadataFilters(filters=[])) == []


def test_open_an_existing_collection_with_its_own_model(make, hashing):
    name = f"made-{make.kind}"
    coll = Store(Settings.from_env(make.data_dir)).create(name, hashing, "Flat", lexical=True)
    coll.add_documents([Document(i, t, m) for i, t, m in corpus()], hashing)
    store = make(name)  # no model: the collection's own
    index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model)
    hits = index.as_retriever(similarity_top_k=2).retrieve("election votes parliament")
    assert {h.node.metadata["topic"] for h in hits} == {3}
    assert isinstance(hits[0].node, TextNode) and "rare" in hits[0].node.metadata  # documents added without LlamaIndex
    assert [n.node_id for n in store.get_nodes(["doc-2", "nope", "doc-1"])] == ["doc-2", "doc-1"]
    vector = hashing.embed(["election votes parliament"])[0].tolist()  # a query by vector: dense mode
    result = store.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=2))
    assert {n.metadata["topic"] for n in result.nodes} == {3}
    if make.kind == "local":
        assert np.allclose(store.embed_model.get_query_embedding("election votes parliament"), vector, atol=1e-6)
    else:
        with pytest.raises(InvalidArgument, match="returns no vectors"):
            store.embed_model.get_query_embedding("x")


def test_unknown_collection_is_a_clear_error(make):
    with pytest.raises(CollectionNotFound, match="no collection named 'nothing-here'.*model="):
        make("nothing-here")


def test_embedding_model_gives_the_model_s_vectors(hashing):
    embed = EmbedsearchEmbedding("hashing")
    texts = ["interest rates", "bushfire smoke"]
    assert np.allclose(embed.get_text_embedding_batch(texts), hashing.embed(texts), atol=1e-6)
    assert np.allclose(embed.get_query_embedding("cricket"), hashing.embed(["cricket"])[0], atol=1e-6)


@pytest.mark.slow
def test_readme_llamaindex_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    with offline():
        exec(compile(readme_block("integrations.llamaindex import"), "README.md", "exec"), scope)  # noqa: S102
    assert [n.node.metadata["product"] for n in scope["nodes"]] == ["router"]  # the filter left the printer out
    assert [n.node.metadata["product"] for n in scope["hybrid"]] == ["printer"]
    answer = scope["answer"]
    assert answer[0].node.metadata["product"] == "printer" and answer[0].score > answer[1].score
    assert answer[0].node.ref_doc_id == scope["docs"][1].doc_id  # the node came back whole
