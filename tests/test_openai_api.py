"""The OpenAI-compatible API (/v1/embeddings, /v1/models) through OpenAI's own client.

The official ``openai`` package is pointed at `embedsearch serve` running as its own process (a
"news" collection of the hashing model, a "glove" word model under --models-dir, an API key):
vectors equal embedsearch's own, in both encodings (the client asks for base64 unless told
otherwise and decodes it), usage counts come from each model's tokenizer, the models are listed,
errors raise the client's typed exceptions, and concurrent requests share model calls (the
batcher's counters in /metrics). The README's examples run against the same server.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedsearch.config import Settings
from embedsearch.corpus import Document, tokenize
from embedsearch.service.app import create_app
from embedsearch.service.requests import MAX_EMBED_INPUTS
from embedsearch.store import Store
from tests.conftest import free_port, topic_docs

openai = pytest.importorskip("openai")

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
KEY = "openai-test-key"
TEXTS = ["interest rates rise again", "bushfires near the town", "the cricket test match was drawn", "Qantas flight QF1"]

pytestmark = pytest.mark.slow  # a server process, and MiniLM for the parity test


@pytest.fixture(scope="module")
def server(tmp_path_factory, hashing):
    from embedsearch.models import import_vectors

    root = tmp_path_factory.mktemp("openai")
    store = Store(Settings.from_env(root / "data"))
    news = store.create("news", hashing, "Flat")
    news.add_documents([Document("n1", "interest rates rise", {}), Document("n2", "bushfires near the town", {})], hashing)
    vectors = root / "glove.txt"
    vectors.write_text("king 0.1 0.2 0.3\nqueen 0.1 0.25 0.3\nman 0.3 0.1 0.1\n", encoding="utf-8")
    import_vectors(vectors, "glove", root / "models" / "glove")
    outside = root / "elsewhere"
    import_vectors(vectors, "glove", outside)
    (root / "models" / "escape").symlink_to(outside)  # a model linking out of --models-dir: not served
    (root / "key.txt").write_text(KEY + "\n")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedsearch", "--data-dir", str(root / "data"), "serve", "--port", str(port),
         "--api-key-file", str(root / "key.txt"), "--models-dir", str(root / "models")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    # any key: embedding is a read, and reads need none (a wrong one is not refused either)
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-the-key", max_retries=0)


def _cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_minilm_vectors_equal_embedsearch_s_own_in_both_encodings(client, minilm):
    expected = minilm.embed(TEXTS)
    default = client.embeddings.create(model="minilm", input=TEXTS)  # the client sends base64 and decodes it
    floats = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="float")
    raw = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="base64")  # left as the server wrote it
    decoded = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in raw.data]
    for result in (default, floats):
        assert [d.index for d in result.data] == list(range(len(TEXTS))) and result.model == "minilm"
        assert result.object == "list" and {d.object for d in result.data} == {"embedding"}
    got = {"base64": [d.embedding for d in default.data], "float": [d.embedding for d in floats.data], "raw": decoded}
    worst = {name: float(_cosines(vectors, expected).min()) for name, vectors in got.items()}
    print(f"minilm parity, min cosine: {worst}")
    assert all(len(v) == 384 for v in got["float"])
    assert min(worst.values()) >= 0.99999, worst
    np.testing.assert_array_equal(np.asarray(got["base64"], dtype=np.float32), np.asarray(decoded))  # one vector, two encodings
    np.testing.assert_array_equal(np.asarray(got["float"], dtype=np.float32), np.asarray(decoded))
    # usage: MiniLM's word pieces, no special tokens
    tokenizer = minilm.chunk_tokenizer()
    pieces = sum(len(e.ids) for e in tokenizer.encode_batch(TEXTS, add_special_tokens=False))
    assert default.usage.prompt_tokens == default.usage.total_tokens == pieces
    assert client.embeddings.create(model="minilm", input="hello world").usage.prompt_tokens == 2


def test_a_single_string_hashing_and_word_models(client, hashing):
    one = client.embeddings.create(model="hashing", input="Hello, world! 42", encoding_format="float")
    assert len(one.data) == 1 and one.data[0].index == 0
    np.testing.assert_array_equal(np.asarray(one.data[0].embedding, dtype=np.float32), hashing.embed(["Hello, world! 42"])[0])
    assert one.usage.prompt_tokens == 3 == len(tokenize("Hello, world! 42"))  # words, for a model without a tokenizer
    many = client.embeddings.create(model="hashing", input=TEXTS)
    np.testing.assert_array_equal(np.asarray([d.embedding for d in many.data], dtype=np.float32), hashing.embed(TEXTS))
    assert many.usage.total_tokens == sum(len(tokenize(t)) for t in TEXTS)
    # a collection's model by the collection's name: the very embedder its searches use
    coll = client.embeddings.create(model="collection:news", input=TEXTS)
    assert coll.model == "collection:news"
    np.testing.assert_array_equal(np.asarray([d.embedding for d in coll.data]), np.asarray([d.embedding for d in many.data]))
    glove = client.embeddings.create(model="glove", input=["king queen", "man"])
    assert [len(d.embedding) for d in glove.data] == [3, 3]
    assert np.allclose(np.linalg.norm(glove.data[1].embedding), 1.0, atol=1e-6)


def test_dimensions_only_the_model_s_own(client):
    same = client.embeddings.create(model="hashing", input="rates", dimensions=256)
    assert len(same.data[0].embedding) == 256
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.embeddings.create(model="hashing", input="rates", dimensions=64)
    assert e.value.body["param"] == "dimensions" and e.value.body["code"] == "dimensions_not_supported"
    assert "Matryoshka" in e.value.message and "256" in e.value.message
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(model="hashing", input="rates", dimensions=0)


def test_models_are_listed_and_described(client):
    models = {m.id: m for m in client.models.list()}
    assert {"minilm", "minilm-int8", "hashing", "glove", "collection:news"} <= set(models)
    assert "escape" not in models  # links out of --models-dir: not served
    assert models["hashing"].owned_by == "embedsearch" and models["glove"].owned_by == "models_dir"
    assert models["collection:news"].owned_by == "collection" and models["collection:news"].created > 1_600_000_000
    assert client.models.retrieve("glove").id == "glove"
    assert client.models.retrieve("collection:news").owned_by == "collection"
    for name in ("nope", "escape", "collection:nope"):
        with pytest.raises(openai.NotFoundError) as e:
            client.models.retrieve(name)
        assert e.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("kwargs", "error", "param", "says"),
    [
        ({"model": "no-such-model", "input": "x"}, "NotFoundError", "model", "does not exist here"),
        ({"model": "escape", "input": "x"}, "NotFoundError", "model", "does not exist here"),
        ({"model": "../models/glove", "input": "x"}, "NotFoundError", "model", "does not exist here"),
        ({"model": "collection:gone", "input": "x"}, "NotFoundError", "model", "does not exist here"),
        ({"model": "hashing", "input": [101, 2054, 102]}, "UnprocessableEntityError", "input", "token-id arrays"),
        ({"model": "hashing", "input": [[101, 2054], [102]]}, "UnprocessableEntityError", "input", "token-id arrays"),
        ({"model": "hashing", "input": []}, "UnprocessableEntityError", "input", "1 to 2048 texts"),
        ({"model": "hashing", "input": ["ok", ""]}, "UnprocessableEntityError", "input", "input[1] has 0 characters"),
        ({"model": "hashing", "input": ["x"] * (MAX_EMBED_INPUTS + 1)}, "UnprocessableEntityError", "input", "1 to 2048"),
        ({"model": "hashing", "input": "x", "encoding_format": "int8"}, "UnprocessableEntityError", "encoding_format", ""),
    ],
)
def test_errors_raise_the_client_s_typed_exceptions(client, kwargs, error, param, says):
    with pytest.raises(getattr(openai, error)) as e:
        client.embeddings.create(**kwargs)
    body = e.value.body
    assert set(body) == {"message", "type", "param", "code", "request_id"}, body
    assert body["type"] == "invalid_request_error" and body["param"] == param and says in body["message"], body
    assert e.value.response.headers["X-Request-ID"] == body["request_id"]


def test_body_limit_and_the_api_key(client, server):
    with pytest.raises(openai.APIStatusError) as e:
        client.embeddings.create(model="hashing", input=["word " * 1_000_000, "word " * 800_000])  # ~9 MB of JSON
    assert e.value.status_code == 413 and e.value.body["code"] == "body_too_large"
    assert e.value.body["type"] == "invalid_request_error"
    # embedding is a read: no key, or a wrong one, is served; a write still needs the key
    request = urllib.request.Request(f"{server}/v1/embeddings", data=json.dumps({"model": "hashing", "input": "x"}).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200
    try:
        urllib.request.urlopen(urllib.request.Request(f"{server}/collections/news/documents/n1", method="DELETE"), timeout=30)
    except urllib.error.HTTPError as err:
        assert err.code == 401
    else:
        raise AssertionError("a write without the key was accepted")


def _batching(server) -> tuple[float, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{server}/metrics", timeout=30) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    calls = families["embedsearch_query_batching_model_calls"].samples[0].value
    texts = families["embedsearch_query_batching_queries"].samples[0].value
    return calls, texts


def test_concurrent_requests_share_model_calls_and_get_their_own_vectors(client, server):
    threads_n, rounds = 16, 4
    inputs = [[f"request {t} round {r} about {TEXTS[(t + r) % 4]}", f"second text {t}-{r}"] for t in range(threads_n)
              for r in range(rounds)]  # fmt: skip
    sequential = [np.asarray([d.embedding for d in client.embeddings.create(model="hashing", input=x).data]) for x in inputs]
    calls_before, texts_before = _batching(server)
    barrier = threading.Barrier(threads_n)
    got: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        own = openai.OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0)
        try:
            for r in range(rounds):
                barrier.wait(timeout=60)  # every round starts at once
                i = t * rounds + r
                got[i] = np.asarray([d.embedding for d in own.embeddings.create(model="hashing", input=inputs[i]).data])
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    calls_after, texts_after = _batching(server)
    requests = threads_n * rounds
    print(f"batching: {requests} concurrent requests, {texts_after - texts_before:.0f} texts, "
          f"{calls_after - calls_before:.0f} model calls")  # fmt: skip
    assert texts_after - texts_before == 2 * requests
    assert calls_after - calls_before < requests  # shared model calls
    for i, vectors in enumerate(sequential):
        np.testing.assert_array_equal(got[i], vectors)  # each request got its own rows back


# --- the README's examples, against the same server (only the port changes) -----------------------


def _readme_section() -> str:
    return README[README.index("### OpenAI-compatible embeddings\n") : README.index("### Limits\n")]


def test_readme_python_example_runs_as_written(server, capsys):
    block = re.search(r"```python\n(.*?)```", _readme_section(), flags=re.S).group(1)
    assert 'base_url="http://localhost:8765/v1"' in block
    scope: dict = {}
    exec(compile(block.replace("localhost:8765", server.removeprefix("http://")), "README.md", "exec"), scope)  # noqa: S102
    vectors = scope["vectors"]
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert capsys.readouterr().out.split() == ["2", "384", str(scope["result"].usage.prompt_tokens)]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_readme_curl_examples_run_as_written(server):
    block = re.search(r"```bash\n(.*?)```", _readme_section(), flags=re.S).group(1)
    commands = [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert len(commands) >= 2 and all(c.startswith("curl ") for c in commands)
    for command in commands:
        cmd = command.replace("localhost:8765", server.removeprefix("http://")) + " -w '\\n%{http_code}'"
        out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=False, timeout=60)
        body, _, status = out.stdout.rpartition("\n")
        assert out.returncode == 0 and status == "200", f"{command}\n-> {status}: {body[:300]}"
        assert json.loads(body)["object"] == "list"


# --- in-process: what needs no server ------------------------------------------------------------


@pytest.fixture
def app_client(data_dir, hashing):
    settings = Settings.from_env(data_dir)
    Store(settings).create("news", hashing, "Flat").add_documents(topic_docs(8), hashing)
    with TestClient(create_app(settings, api_key=KEY, read_only=True, batch_queries=False)) as c:
        yield c


def test_read_only_and_unbatched_services_embed(app_client, hashing):
    r = app_client.post("/v1/embeddings", json={"model": "hashing", "input": ["a b", "c"], "user": "someone"})
    assert r.status_code == 200, r.text
    got = np.asarray([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    np.testing.assert_array_equal(got, hashing.embed(["a b", "c"]))


def test_every_refusal_on_v1_is_in_openai_s_shape(app_client):
    cases = [
        (app_client.get("/v1/chat/completions"), 404, "not_found", None),
        (app_client.put("/v1/models"), 405, "method_not_allowed", None),
        (app_client.post("/v1/embeddings", content=b"input=x"), 422, "invalid_request", None),
        (app_client.post("/v1/embeddings", json={"input": "x"}), 422, "invalid_request", "model"),
        (app_client.post("/v1/embeddings", json={"model": "hashing", "input": "x", "dimensions": True}), 422,
         "invalid_request", "dimensions"),
        (app_client.post("/v1/embeddings", content=b'{"model": "hashing", "input": "a\\ud800"}',
                         headers={"Content-Type": "application/json"}), 422, "invalid_request", "input"),
    ]  # fmt: skip
    for r, status, code, param in cases:
        body = r.json()["error"]
        assert (r.status_code, body["code"], body["param"]) == (status, code, param), r.text
        assert body["type"] == "invalid_request_error"
        assert body["message"] and body["request_id"] == r.headers["X-Request-ID"]
    assert app_client.put("/v1/models").headers["Allow"] == "GET"
    # the other routes keep the service's own shape
    assert set(app_client.get("/collections/nope").json()["error"]) == {"code", "message", "request_id"}


def test_a_bug_on_v1_answers_500_in_openai_s_shape(data_dir, monkeypatch):
    """An unexpected exception is answered outside the middleware (Starlette's outermost layer):
    the handler shapes it itself."""
    from embedsearch.service import openai_api

    def broken(embedder, texts):
        raise RuntimeError("a bug")

    monkeypatch.setattr(openai_api, "count_tokens", broken)
    with TestClient(create_app(Settings.from_env(data_dir)), raise_server_exceptions=False) as c:
        r = c.post("/v1/embeddings", json={"model": "hashing", "input": "x"})
    body = r.json()["error"]
    assert r.status_code == 500 and body["type"] == "server_error" and body["code"] == "internal_error"
    assert "RuntimeError" in body["message"] and "a bug" not in body["message"] and body["param"] is None
