"""The OpenAPI document matches the service (issue 13, finding 10).

schemathesis generates requests from /openapi.json and sends them to the real app in-process
(ASGI), on a real temporary collection with the hashing model, and checks every answer against
the document: no 5xx, only documented statuses, documented content types and body schemas,
schema-invalid requests refused, undeclared methods answered 405 with an exact Allow header.
One check is left out, positive_data_acceptance ("every schema-valid request succeeds"): a
filter's MongoDB semantics, the 20,000-hit cap on queries x k and models named by a request
are beyond what a JSON schema states, and the service refuses those with a documented 422.
Bounded (examples per operation) so the run takes well under a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from embedsearch.config import Settings
from embedsearch.embedders import load_embedder
from embedsearch.service.app import create_app
from embedsearch.store import Store
from tests.conftest import topic_docs

EXAMPLES = 60


pytestmark = pytest.mark.slow  # schemathesis sends hundreds of generated requests


@pytest.fixture(scope="module")
def api_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("openapi")
    config = Settings.from_env(root / "data")
    hashing = load_embedder("hashing")
    Store(config).create("news", hashing, "Flat").add_documents(topic_docs(40), hashing)
    return create_app(config, models_dir=root / "models")


#: schemathesis' defaults, but a 413 (a body over the 8 MiB limit, as a too-long text makes) is a
#: right answer to invalid data too, and no search for a schema-valid request that fails
CONFIG = {
    "checks": {
        "negative_data_rejection": {
            "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
        },
        "positive_data_acceptance": {"enabled": False},
    }
}


@pytest.fixture(scope="module")
def api_schema(api_app):
    return schemathesis.openapi.from_asgi("/openapi.json", api_app, config=SchemathesisConfig.from_dict(CONFIG))


schema = schemathesis.pytest.from_fixture("api_schema")


def _aim_at_the_collection(case) -> None:
    """Half the schema-valid requests go to the real collection (random names only find 404s),
    and collections created by PUT use the hashing model (the default, MiniLM, takes seconds to
    load). Negative cases are left as generated: what they break must stay broken."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if case.method == "PUT" and isinstance(case.body, dict):
        case.body["model"] = "hashing"
    if case.path == "/v1/embeddings" and isinstance(case.body, dict) and hash(repr(case.body)) % 2 == 0:
        case.body["model"] = "hashing"  # half reach a real model (random names find 404s)
        case.body.pop("dimensions", None)
    name = case.path_parameters.get("name")
    if name is not None and not (case.method == "DELETE" and case.path == "/collections/{name}"):
        if hash(repr(case.body)) % 2 == 0:
            case.path_parameters["name"] = "news"


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_service_answers_as_its_openapi_document_says(case):
    _aim_at_the_collection(case)
    case.call_and_validate()


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
