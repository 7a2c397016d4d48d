"""The LangChain adapter (embedsearch/integrations/langchain.py) over a local data directory and over
the real service, with real collections: adds, searches in every mode, filters, deletes, an
existing collection opened with its own model, the retriever, the errors; and LangChain's own
standard vector-store tests (langchain-tests) on both backends."""

from __future__ import annotations

import shutil
import uuid

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document as LCDocument  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.structured_query import Comparator, Comparison, Operation, Operator  # noqa: E402

from embedsearch.config import Settings  # noqa: E402
from embedsearch.corpus import Document  # noqa: E402
from embedsearch.errors import CollectionNotFound, EmbedsearchError, InvalidArgument, InvalidFilter, UnknownModel  # noqa: E402
from embedsearch.integrations.filters import UnsupportedFilter  # noqa: E402
from embedsearch.integrations.langchain import EmbedsearchEmbeddings, EmbedsearchVectorStore  # noqa: E402
from embedsearch.integrations.remote import ServiceError  # noqa: E402
from embedsearch.search import search  # noqa: E402
from embedsearch.store import Store  # noqa: E402
from tests.integrations_support import KEY, corpus, offline, readme_block, running_service  # noqa: E402


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    data = tmp_path_factory.mktemp("served")
    with running_service(data) as url:
        yield url, data


@pytest.fixture(params=["local", "http"])
def make(request, tmp_path, service):
    """make(collection, **kwargs): an adapter over a local data directory or the service."""
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
    docs = corpus()
    assert store.add_texts([t for _, t, _ in docs], [m for _, _, m in docs], ids=[i for i, _, _ in docs]) == [
        i for i, _, _ in docs
    ]
    return store


def ids(docs) -> list[str]:
    return [d.id for d in docs]


def test_add_search_with_scores_filter_and_delete(make):
    store = filled(make)
    hits = store.similarity_search_with_score("cricket wickets", k=3, mode="dense")
    assert [d.metadata["topic"] for d, _ in hits] == [2, 2, 2]
    assert all(isinstance(s, float) for _, s in hits) and hits[0][1] >= hits[-1][1]
    assert hits[0][0].page_content.startswith("cricket test wickets") and hits[0][0].id.startswith("doc-")

    where = {"source": "lee", "year": {"$gte": 2000}, "$or": [{"tags": "sport"}, {"rare": True}]}
    lib = Store(Settings.from_env(make.data_dir)).open(store.backend.collection)
    expected = [h.id for h in search(lib, ["cricket wickets"], 30, where=where, mode="dense")[0]]
    assert expected and ids(store.similarity_search("cricket wickets", k=30, filter=where, mode="dense")) == expected

    assert ids(store.get_by_ids(["doc-3", "nope", "doc-1"])) == ["doc-3", "doc-1"]
    assert store.delete(["doc-3", "nope"]) is True
    assert store.get_by_ids(["doc-3"]) == []
    store.delete(filter={"topic": 2})
    assert not [d for d in store.similarity_search("cricket wickets", k=30, mode="dense") if d.metadata["topic"] == 2]
    with pytest.raises(ValueError, match="filter="):
        store.delete()  # never "delete everything" by accident
    store.delete(filter={})
    assert store.similarity_search("cricket", k=3) == []


def test_adding_an_id_again_replaces_the_document(make):
    store = make(model="hashing")
    store.add_texts(["old text about cricket"], [{"v": 1}], ids=["x"])
    store.add_documents([LCDocument(page_content="new text about rates", metadata={"v": 2}, id="x")])
    assert store.get_by_ids(["x"]) == [LCDocument(id="x", page_content="new text about rates", metadata={"v": 2})]
    made = store.add_texts(["no id given"])
    assert len(made) == 1 and store.get_by_ids(made)[0].page_content == "no id given"


def test_any_document_id_round_trips(make):
    """Ids are path segments over HTTP: '..' must not turn a document's DELETE into the collection's."""
    store = make(model="hashing")
    weird = ["..", ".", "../x", "a/b c?d#e", "ünï %2F"]
    store.add_texts([f"text {i}" for i in range(len(weird))], ids=weird)
    assert sorted(ids(store.get_by_ids(weird))) == sorted(weird)
    assert store.backend.delete([*weird, "nope"]) == (len(weird), ["nope"])
    assert store.get_by_ids(weird) == [] and store.backend.count() == 0  # the collection is still there


def test_modes_hybrid_and_lexical(make):
    store = filled(make)
    lexical = store.similarity_search_with_score("wickets", k=10, mode="lexical")
    assert lexical and all("wickets" in d.page_content for d, _ in lexical)
    hybrid = store.similarity_search("wickets batsman", k=4, mode="hybrid", fusion="weighted", alpha=0.3)
    assert [d.metadata["topic"] for d in hybrid] == [2, 2, 2, 2]
    # the collection's default is hybrid (it has a lexical index); a store default applies to every search
    default = make(store.backend.collection)
    assert ids(default.similarity_search("wickets batsman", k=4, fusion="weighted", alpha=0.3)) == ids(hybrid)
    dense = make(store.backend.collection, mode="dense")
    assert ids(dense.similarity_search("wickets batsman", k=4)) == ids(
        store.similarity_search("wickets batsman", k=4, mode="dense")
    )
    scored = store.similarity_search_with_relevance_scores("wickets batsman", k=3, mode="hybrid")
    assert all(0.0 <= s <= 1.0 for _, s in scored)
    with pytest.raises(InvalidArgument, match="lexical"):
        store.similarity_search_with_relevance_scores("wickets", k=3, mode="lexical")
    with pytest.raises(TypeError, match="bogus"):
        store.similarity_search("wickets", k=3, bogus=1)  # never dropped silently


def test_a_collection_without_a_lexical_index_searches_dense(make):
    store = make(model="hashing", lexical=False)
    store.add_texts(["alpha beta", "gamma delta"], ids=["a", "g"])
    assert ids(store.similarity_search("alpha", k=1)) == ["a"]
    with pytest.raises(InvalidArgument, match="lexical index"):
        store.similarity_search("alpha", k=1, mode="hybrid")


def test_open_an_existing_collection_with_its_own_model(make, hashing):
    name = f"made-{make.kind}"
    coll = Store(Settings.from_env(make.data_dir)).create(name, hashing, "Flat", lexical=True)
    coll.add_documents([Document(i, t, m) for i, t, m in corpus()], hashing)
    store = make(name)  # no model: the collection's own
    assert store.backend.model == "hashing" and store.backend.dim == hashing.dim
    assert [d.metadata["topic"] for d in store.similarity_search("interest rates bank", k=2)] == [1, 1]
    vector = hashing.embed(["interest rates bank"])[0].tolist()
    assert [d.metadata["topic"] for d in store.similarity_search_by_vector(vector, k=2, filter={"source": "lee"})] == [1, 1]
    with pytest.raises(EmbedsearchError, match="minilm") as err:
        make(name, model="minilm")  # another model than the collection's is refused, not used
    assert "hashing" in str(err.value)


def test_retriever(make):
    store = filled(make)
    retriever = store.as_retriever(search_kwargs={"k": 2, "filter": {"source": "lee"}, "mode": "dense"})
    docs = retriever.invoke("interest rates bank")
    assert len(docs) == 2 and all(d.metadata["source"] == "lee" and d.metadata["topic"] == 1 for d in docs)
    threshold = store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.5, "k": 5})
    assert all(d.metadata["topic"] == 1 for d in threshold.invoke("interest rates bank inflation"))
    if make.kind == "local":
        mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 10})
        assert len(mmr.invoke("interest rates")) == 3
    else:
        with pytest.raises(NotImplementedError, match="vectors"):
            store.max_marginal_relevance_search("interest rates")


def test_structured_query_filters_are_translated(make):
    store = filled(make)
    directive = Operation(
        operator=Operator.AND,
        arguments=[
            Comparison(comparator=Comparator.EQ, attribute="source", value="lee"),
            Operation(operator=Operator.NOT, arguments=[Comparison(comparator=Comparator.LT, attribute="year", value=2000)]),
            Comparison(comparator=Comparator.CONTAIN, attribute="tags", value="sport"),
        ],
    )
    same = {"$and": [{"source": "lee"}, {"$nor": [{"year": {"$lt": 2000}}]}, {"tags": {"$elemMatch": {"$eq": "sport"}}}]}
    got = ids(store.similarity_search("story", k=30, filter=directive, mode="dense"))
    assert got and got == ids(store.similarity_search("story", k=30, filter=same, mode="dense"))
    with pytest.raises(UnsupportedFilter, match="LIKE"):
        store.similarity_search("story", filter=Comparison(comparator=Comparator.LIKE, attribute="note", value="no%"))


def test_bad_input_is_a_clear_error(make):
    with pytest.raises(CollectionNotFound, match="no collection named 'nothing-here'.*model="):
        make("nothing-here")
    store = filled(make)
    with pytest.raises(InvalidFilter):
        store.similarity_search("story", filter={"year": {"$regex": "19"}})
    with pytest.raises(InvalidArgument, match="mode"):
        store.similarity_search("story", mode="semantic")
    with pytest.raises(InvalidArgument, match="unknown search mode 'semantic'"):
        make(store.backend.collection, mode="semantic")  # a store default is checked when the store is made
    with pytest.raises(TypeError, match="EmbedsearchEmbeddings"):
        EmbedsearchVectorStore.from_texts(["x"], embedding=FakeEmbeddings(), collection="x", data_dir=make.data_dir)


def test_a_collection_whose_model_is_missing_here(tmp_path):
    from embedsearch.embedders import load_embedder
    from embedsearch.models import import_vectors

    src = tmp_path / "v.txt"
    src.write_text("alpha 1 0 0\nbeta 0.9 0.1 0\ngamma 0 0 1\n")
    model = tmp_path / "wm"
    import_vectors(src, "glove", model)
    data = tmp_path / "data"
    words = load_embedder(str(model), cache=False)  # not in this process's model cache, which the service shares
    Store(Settings.from_env(data)).create("words", words, "Flat", lexical=True).add_documents(
        [Document("a", "alpha beta")], words
    )
    shutil.rmtree(model)
    with pytest.raises(UnknownModel, match=r"collection 'words' was built with model '.*wm'.*cannot be loaded here"):
        EmbedsearchVectorStore("words", data_dir=data)
    with running_service(data) as url:  # the service names the model it cannot load
        store = EmbedsearchVectorStore("words", url=url, api_key=KEY)
        with pytest.raises(UnknownModel, match="wm"):
            store.similarity_search("alpha", mode="dense")
        assert [d.id for d in store.similarity_search("alpha", mode="lexical")] == ["a"]  # lexical needs no model


def test_http_errors_name_the_service(service):
    url, _ = service
    store = EmbedsearchVectorStore(f"c-{uuid.uuid4().hex[:8]}", url=url, api_key=KEY, model="hashing")
    reader = EmbedsearchVectorStore(store.backend.collection, url=url, api_key="wrong")
    assert reader.similarity_search("x") == []  # reads need no key
    with pytest.raises(ServiceError, match="403") as err:
        reader.add_texts(["x"])
    assert err.value.status == 403
    assert store.embeddings is None  # the service embeds; it returns no vectors
    with pytest.raises(ServiceError, match="cannot reach"):
        EmbedsearchVectorStore("x", url="http://127.0.0.1:9", model="hashing")


class FakeEmbeddings(Embeddings):  # a LangChain Embeddings that is not ours
    def embed_documents(self, texts):
        return [[0.0] for _ in texts]

    def embed_query(self, text):
        return [0.0]


@pytest.mark.slow
def test_minilm_from_texts_and_embeddings(tmp_path):
    embeddings = EmbedsearchEmbeddings("minilm", device="cpu")
    texts = [
        "The central bank raised borrowing costs",
        "Firefighters fought the blaze near Sydney",
        "The batsman scored a century",
    ]
    store = EmbedsearchVectorStore.from_texts(texts, embeddings, [{"n": i} for i in range(3)], ids=["bank", "fire", "cricket"],
                                              collection="news", data_dir=tmp_path)  # fmt: skip
    assert store.backend.model == "minilm"
    assert ids(store.similarity_search("interest rates", k=1, mode="dense")) == ["bank"]
    assert ids(store.similarity_search("bushfire", k=1)) == ["fire"]  # hybrid: the words differ, the meaning does not
    vec = embeddings.embed_query("cricket match")
    assert len(vec) == 384 and abs(np.linalg.norm(vec) - 1) < 1e-4
    assert ids(store.similarity_search_by_vector(vec, k=1)) == ["cricket"]
    assert store.embeddings.embed_documents(["x"]) == [pytest.approx(embeddings.embed_query("x"), abs=1e-6)]


@pytest.mark.slow
def test_readme_langchain_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    with offline():
        exec(compile(readme_block("integrations.langchain import"), "README.md", "exec"), scope)  # noqa: S102
    assert ids(scope["docs"]) == ["rates"]  # no word in common: the meaning found it
    assert ids(d for d, _ in scope["scored"]) == ["fire", "rates"] and scope["scored"][0][1] > scope["scored"][1][1]
    assert ids(scope["lexical"]) == ["cricket"] and ids(scope["found"]) == ["cricket"]
    assert scope["store"].get_by_ids(["cricket", "fire"])[0].id == "fire"


# ---- LangChain's standard tests ---------------------------------------------------------------

try:
    from langchain_tests.integration_tests import VectorStoreIntegrationTests
except ImportError:  # langchain-tests is in the dev extra; without it only these two classes are left out
    VectorStoreIntegrationTests = None

if VectorStoreIntegrationTests is not None:
    import inspect

    for _name, _test in vars(VectorStoreIntegrationTests).items():  # their async tests run on pytest-asyncio
        if _name.startswith("test_") and inspect.iscoroutinefunction(_test):
            pytest.mark.asyncio(_test)  # marks the function itself: the suite checks that no test is overridden

    class TestStandardLocal(VectorStoreIntegrationTests):
        @pytest.fixture
        def vectorstore(self, tmp_path):
            yield EmbedsearchVectorStore("standard", data_dir=tmp_path, model="hashing")

    class TestStandardHTTP(VectorStoreIntegrationTests):
        @pytest.fixture
        def vectorstore(self, service):
            store = EmbedsearchVectorStore(f"std-{uuid.uuid4().hex[:10]}", url=service[0], api_key=KEY, model="hashing")
            yield store
            store.delete(filter={})
