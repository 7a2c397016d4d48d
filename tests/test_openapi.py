"""The OpenAPI document matches the service (issue 13, finding 10; issue 24, part 4).

schemathesis generates requests from /openapi.json and sends them to the real app in-process
(ASGI), on a real temporary collection with the hashing model, and runs every check it has on
each answer (test_every_schemathesis_check_is_run says which): no 5xx, only documented statuses,
content types, headers and body schemas, schema-invalid requests refused
(negative_data_rejection), schema-valid ones accepted (positive_data_acceptance), undeclared
methods answered 405 with an exact Allow header.

What a schema-valid request may still be refused for is what no JSON schema of the request can
state, because it is another resource's or a product or comparison of two fields. For those
cases (:func:`beyond_the_schema` decides, from the same library functions the server calls)
positive_data_acceptance is left out and the answer must be that refusal (or the 404 of a
collection that does not exist, or the 409 of a name that is taken, which come first):

- the query vector's length is the collection's dimension (422 dimension_mismatch);
- ``len(queries) x k`` of a batch is at most 20,000 (422 invalid_argument);
- a cursor is a token the server handed out for this collection and filter (422 invalid_cursor);
- a filter has at most 256 conditions and 16 levels of nesting (422 invalid_filter);
- PUT's index PQ{m} needs an m that divides the model's dimension, pooling and oov a word model,
  and passages a model with a tokenizer, at most its window of tokens, an overlap of at most half
  the size (422).

Two more depend on the collection and are kept out of reach rather than left out: the lexical and
hybrid modes need its lexical index (the test's collection has one, and no request searches a
collection PUT made), and an alpha without a fusion needs the collection's own fusion not to be
rrf (it has none). Resources must exist for a request to reach its checks: half the schema-valid requests are aimed
at the real collection, and PUT names the hashing model (a random model name is a 422
unknown_model, the default MiniLM takes seconds to load) and a collection name of its own.
Derandomised, with EXAMPLES examples per operation (and schemathesis' examples and coverage
phases), so the run is the same every time: about 4,500 cases in 40-70 s on two cores.
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from embedsearch.config import Settings
from embedsearch.embedders import load_embedder
from embedsearch.errors import EmbedsearchError
from embedsearch.service.app import create_app
from embedsearch.store import Store
from tests.conftest import topic_docs

EXAMPLES = 40
DIM = 256  # the hashing model's: every collection of this test has it
SLOW_MODELS = ("minilm", "minilm-onnx", "minilm-int8")


pytestmark = pytest.mark.slow  # schemathesis sends hundreds of generated requests


@pytest.fixture(scope="module")
def api_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("openapi")
    config = Settings.from_env(root / "data")
    hashing = load_embedder("hashing")
    Store(config).create("news", hashing, "Flat", lexical=True).add_documents(topic_docs(40), hashing)
    return create_app(config, models_dir=root / "models")


#: schemathesis' defaults, but a 413 (a body over the 8 MiB limit, as a too-long text makes) is a
#: right answer to invalid data too
CONFIG = {
    "checks": {
        "negative_data_rejection": {
            "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
        },
    }
}


@pytest.fixture(scope="module")
def api_schema(api_app):
    return schemathesis.openapi.from_asgi("/openapi.json", api_app, config=SchemathesisConfig.from_dict(CONFIG))


schema = schemathesis.pytest.from_fixture("api_schema")
load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())
RUN: dict[str, float] = {"cases": 0, "beyond": 0, "started": 0.0}


def _aim_at_the_collection(case) -> None:
    """Half the schema-valid requests go to the real collection (random names only find 404s),
    and collections created by PUT use the hashing model and names of their own, so that no
    other request meets one. Negative cases are left as generated (what they break must stay
    broken), but for a PUT naming the MiniLM models (or none: the default), which take seconds to
    load (minutes to export) and would run past the client's timeout on a loaded machine: another
    valid model name leaves what the case breaks as it was."""
    meta = case.meta
    if case.method == "PUT" and isinstance(case.body, dict) and case.body.get("model", "minilm") in SLOW_MODELS:
        case.body["model"] = "hashing"
    if meta is None or not meta.generation.mode.is_positive:
        return
    if case.path == "/v1/embeddings" and isinstance(case.body, dict) and hash(repr(case.body)) % 2 == 0:
        case.body["model"] = "hashing"  # half reach a real model (random names find 404s)
        case.body.pop("dimensions", None)
    name = case.path_parameters.get("name")
    if case.method == "PUT":
        if isinstance(case.body, dict):
            case.body["model"] = "hashing"
        case.path_parameters["name"] = f"made-{name}"[:64].rstrip(".")
    elif name is not None and not (case.method == "DELETE" and case.path == "/collections/{name}"):
        if hash(repr(case.body)) % 2 == 0:
            case.path_parameters["name"] = "news"


def beyond_the_schema(case) -> tuple[set[int], set[str]] | None:
    """For a schema-valid request the server refuses for a reason no schema of it can state (the
    module's docstring lists them): the statuses and error codes it may answer; else None."""
    meta = case.meta
    body = case.body if isinstance(case.body, dict) else {}
    if meta is None or not meta.generation.mode.is_positive:
        return None
    codes = set()
    if case.path == "/collections/{name}/search/batch" and len(body.get("queries", [])) * body.get("k", 10) > 20_000:
        codes.add("invalid_argument")
    if body.get("where") is not None and _filter_refusal(body["where"]):
        codes.add("invalid_filter")
    if case.path == "/collections/{name}/search" and body.get("vector") is not None and len(body["vector"]) != DIM:
        codes.add("dimension_mismatch")
    if case.path == "/collections/{name}/documents/list" and body.get("cursor"):
        codes.add("invalid_cursor")
    if case.path == "/v1/embeddings" and body.get("dimensions") not in (None, _hashing_dim()) and body.get("model") == "hashing":
        codes.add("dimensions_not_supported")  # only the model's own size: a property of the model, not of the request
    if case.method == "PUT" and _model_refusal(body):
        codes |= {"invalid_argument", "invalid_index_spec", "unknown_model"}  # passages; PQ; pooling/oov
    if not codes:
        return None
    # a collection that does not exist is a 404 first (but the batch's product is checked before);
    # a PUT to a name that is taken is a 409 first
    return {404, 409, 422}, codes


def _hashing_dim() -> int:
    from embedsearch.embedders import load_embedder

    return load_embedder("hashing").dim


def _filter_refusal(where: dict) -> bool:
    """Whether the filter compiler refuses ``where`` for its size (conditions or depth)."""
    from sqlalchemy import JSON, Column

    from embedsearch.store.filters import compile_filter

    try:
        compile_filter(where, Column("meta", JSON), "sqlite")
    except EmbedsearchError as exc:
        return "conditions" in str(exc) or "deeper than" in str(exc) or "too costly" in str(exc)
    return False


def _model_refusal(body: dict) -> bool:
    """Whether the hashing model refuses the index spec, the word-model options or the passage settings."""
    from embedsearch.embedders import check_model
    from embedsearch.passages import resolve_chunking
    from embedsearch.store.specs import validate_spec

    try:
        check_model("hashing", {"pooling": body.get("pooling"), "oov": body.get("oov")})
        validate_spec(body.get("index", "auto"), DIM)
        resolve_chunking(load_embedder("hashing"), body.get("chunk_tokens"), body.get("chunk_overlap"), body.get("chunking"))
    except EmbedsearchError:
        return True
    return False


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_service_answers_as_its_openapi_document_says(case):
    RUN["started"] = RUN["started"] or time.perf_counter()
    RUN["cases"] += 1
    _aim_at_the_collection(case)
    expected = beyond_the_schema(case)
    if expected is None:
        case.call_and_validate(checks=ALL_CHECKS)
        return
    RUN["beyond"] += 1
    response = case.call_and_validate(checks=ALL_CHECKS, excluded_checks=[positive_data_acceptance])
    statuses, codes = expected
    assert response.status_code in statuses, (case.path, case.body, response.text)
    if response.status_code == 422:
        assert response.json()["error"]["code"] in codes, (case.path, case.body, response.text)


def test_every_schemathesis_check_is_run():
    names = {c.__name__ for c in ALL_CHECKS}
    assert names >= {
        "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
        "response_schema_conformance", "negative_data_rejection", "positive_data_acceptance", "missing_required_header",
        "unsupported_method", "allow_header_conformance", "use_after_free", "ensure_resource_availability",
        "ignored_auth", "object_level_authorization",
    }  # fmt: skip
    if RUN["started"]:  # after the run above (this module's order)
        print(f"schemathesis: {RUN['cases']:.0f} cases ({RUN['beyond']:.0f} beyond the schema) in "
              f"{time.perf_counter() - RUN['started']:.1f} s")  # fmt: skip


def test_strict_types_and_405_with_allow(api_app):
    with TestClient(api_app) as client:
        for body in ({"query": "x", "k": True}, {"query": "x", "k": "5"}, {"query": "x", "k": 2.5}, {"query": 5}):
            r = client.post("/collections/news/search", json=body)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", (body, r.text)
        assert client.post("/collections/news/search", json={"query": "cricket", "k": 2.0}).json()["k"] == 2
        r = client.post("/collections/news/documents/list", json={"limit": True})
        assert r.status_code == 422
        r = client.request("TRACE", "/health")
        assert r.status_code == 405 and r.headers["Allow"] == "GET"
        r = client.request("PATCH", "/collections/news")
        assert r.status_code == 405 and r.headers["Allow"] == "DELETE, GET, PUT"
        # the concrete route wins, as OpenAPI matches paths (a document may still be called "get")
        r = client.request("PUT", "/collections/news/documents/get")
        assert r.status_code == 405 and r.headers["Allow"] == "POST"
        r = client.request("PUT", "/collections/news/documents/some/id")
        assert r.status_code == 405 and r.headers["Allow"] == "DELETE, GET"


def test_every_error_status_the_service_gives_is_in_the_document(api_app):
    paths = api_app.openapi()["paths"]
    for path, ops in paths.items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"400", "413", "500"} <= codes, (method, path)
            if "{name}" in path:
                assert {"404", "422"} <= codes, (method, path)
            if method in ("put", "delete") or path.endswith("/documents") and method == "post":
                assert {"401", "403", "409", "507"} <= codes, (method, path)
            for code, response in op["responses"].items():
                if (path, code) == ("/health", "503"):  # readiness: the health body, with "status": "loading"
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HealthResponse"}
                    assert "Retry-After" in response["headers"]
                elif code.startswith(("4", "5")):  # the OpenAI-compatible routes answer in OpenAI's error shape
                    body = "OpenAIErrorResponse" if path.startswith("/v1/") else "ErrorResponse"
                    assert response["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{body}"}


def _validator(document: dict, schema: dict):
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})


#: (method, path, body, valid by the document): the issue's cases and their neighbours; the server
#: must refuse every body the document refuses, and accept every one it accepts
BODIES = [
    ("post", "/collections/news/count", {"where": {"n": 2**64}}, False),  # an integer beyond 64 bits
    ("post", "/collections/news/count", {"where": {"n": {"$gt": 1e19}}}, False),  # 1e19 is an integer to JSON
    ("post", "/collections/news/count", {"where": {"n": -(2**63), "m": {"$lt": 2**63 - 1}}}, True),
    ("post", "/collections/news/count", {"where": {"tags": {"$size": 2.0}}}, True),  # 2.0 is the integer 2
    ("post", "/collections/news/documents/list", {"cursor": "not a cursor!"}, False),  # any cursor string
    ("post", "/collections/news/documents/list", {"cursor": "", "limit": 2}, True),  # empty: the first page
    ("post", "/collections/news/search", {"query": "rates", "vector": [0.5] * DIM}, False),  # query and vector
    ("post", "/collections/news/search", {}, False),
    ("post", "/collections/news/search", {"vector": [0.5] * DIM, "mode": "lexical"}, False),
    ("post", "/collections/news/search", {"vector": [0.5] * DIM, "mode": "dense", "k": 2}, True),
    ("post", "/collections/news/search", {"vector": [4e38] * DIM}, False),  # beyond float32
    ("post", "/collections/news/search", {"query": "rates", "fusion": "rrf", "alpha": 0.5}, False),  # alpha with rrf
    ("post", "/collections/news/search", {"query": "rates", "fusion": "weighted", "alpha": 0.5}, True),
    ("post", "/collections/news/search/batch", {"queries": ["a"], "fusion": "rrf", "alpha": 0.2}, False),
    ("post", "/collections/news/search/batch", {"queries": ["a"], "fusion": "rrf"}, True),
    ("post", "/similar", {"model": "", "word": "king"}, False),  # an empty model name
    ("post", "/similar", {"model": "a..b", "word": "king"}, False),
    ("put", "/collections/made", {"model": "hashing", "index_fields": [""]}, False),  # an empty index_fields entry
    ("put", "/collections/made", {"model": "hashing", "index_fields": ["tags.0"]}, False),  # an array position
    ("put", "/collections/made", {"model": "hashing", "index": " Flat"}, False),
    ("put", "/collections/made", {"model": "hashing", "index": "IVF16,Refine"}, False),  # nothing to re-rank
    ("put", "/collections/made", {"model": "hashing", "index": "HNSW3"}, False),
    ("put", "/collections/made", {"model": "hashing", "chunking": False, "chunk_tokens": 64}, False),
    ("put", "/collections/made", {"model": "../etc", "index": "Flat"}, False),
    ("put", "/collections/made", {"model": "hashing", "index": "hnsw32", "index_fields": ["year", "a.b2", "a.٣"]}, True),
]


def test_the_document_refuses_what_the_server_refuses(api_app):
    """Each body of the issue (and neighbours) checked against the document and sent to the server."""
    with TestClient(api_app) as client:
        document = client.get("/openapi.json").json()
        for method, path, body, valid in BODIES:
            template = "/collections/{name}" + path.split("/news", 1)[1] if "/news" in path else path
            template = "/collections/{name}" if path == "/collections/made" else template
            schema = document["paths"][template][method]["requestBody"]["content"]["application/json"]["schema"]
            assert _validator(document, schema).is_valid(body) == valid, (path, body)
            r = client.request(method.upper(), path, json=body)
            assert (r.status_code < 300) == valid, (path, body, r.status_code, r.text)
            assert r.status_code in ((200, 201) if valid else (400, 422)), (path, body, r.text)
        name = document["paths"]["/collections/{name}"]["get"]["parameters"][0]["schema"]
        assert not _validator(document, name).is_valid("a..b") and _validator(document, name).is_valid("a.b")
        assert client.get("/collections/a..b").status_code == 400


#: filters: (filter, valid by the document); the compiler must refuse exactly the invalid ones
FILTERS = [
    ({}, True),
    ({"a": {}}, False),  # an empty operator object
    ({"$foo": 1}, False),
    ({"a.": 1}, False),
    ({".".join("abcdefg"): 1}, True),
    ({".".join("abcdefgh"): 1}, False),  # 8 segments
    ({"a": [1, [2, None]], "b": {"$in": [[1], "x"]}}, True),
    ({"a": [1, {"b": 2}]}, False),  # an object is matched field by field, not by value
    ({"a": {"$gt": [1]}}, False),
    ({"a": {"$elemMatch": {"$not": {"$gt": 1}}}}, True),  # operators on each element
    ({"a": {"$elemMatch": {"$not": {"b": 1}}}}, False),  # a lone $not is the operators' $not
    ({"a": {"$elemMatch": {"b": 1, "$not": {"c": 2}}}}, True),  # a filter on element objects
    ({"a": {"$elemMatch": {"$gt": 1, "b": 2}}}, False),  # operators mixed with fields
    ({"a": {"$all": [{"$elemMatch": {"$gt": 1}}, 3]}}, True),
    ({"$and": []}, False),
    ({"$or": [{"a": 1}, {"$not": {"b": {"$exists": True}}}]}, True),
    ({"a": {"$size": -1}}, False),
    ({"a": {"$exists": 1}}, False),
    ({"n": 2**63 - 1, "m": {"$gte": -(2**63)}}, True),  # 64-bit integers
    ({"n": 2**63}, False),
    ({"n": {"$lt": 1e19}}, False),  # 1e19 is an integer to JSON, beyond 64 bits
    ({"n": {"$lt": 9.2e18}}, True),
    ({"tags": {"$size": 3.0}}, True),
]


def test_the_filter_schema_is_the_filter_language(api_app):
    from sqlalchemy import JSON, Column

    from embedsearch.store.filters import compile_filter

    document = api_app.openapi()
    validator = _validator(document, {"$ref": "#/components/schemas/Filter"})
    for where, valid in FILTERS:
        assert validator.is_valid(where) == valid, where
        try:
            compile_filter(where, Column("meta", JSON), "sqlite")
            compiled = True
        except EmbedsearchError:
            compiled = False
        assert compiled == valid, where
