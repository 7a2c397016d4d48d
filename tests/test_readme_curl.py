"""The README's curl examples, run as written (only the port changes) against `embedsearch serve`.

The server runs as its own process with the API key "..." (the placeholder the examples use), a
"news" collection and a "glove" word model, so every example can succeed. The one example whose
body is not JSON (`[0.1, ...]`, a placeholder for a whole vector) is skipped, and said so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.models import import_vectors
from embedsearch.store import Store
from tests.conftest import free_port

README = Path(__file__).resolve().parent.parent / "README.md"
PLACEHOLDER_BODY = "[0.1, ...]"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")]


def readme_curl_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## HTTP service") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```", section.index("```bash") + 7)]
    lines = block.replace("\\\n", " ").splitlines()  # join continuation lines
    commands = []
    for line in lines:
        line = line.split("  #")[0].strip()  # drop trailing comments
        for part in line.split(" ; "):
            if part.startswith("curl "):
                commands.append(part)
    return commands


@pytest.fixture(scope="module")
def server(tmp_path_factory, hashing):
    root = tmp_path_factory.mktemp("curl")
    store = Store(Settings.from_env(root / "data"))
    news = store.create("news", hashing, "Flat", lexical=True)  # as `index create` and PUT make it
    news.add_documents([Document("n1", "interest rates rise", {"source": "lee"}),
                        Document("n2", "bushfires near the town", {"source": "lee"}),
                        Document("n3", "cricket test match", {"source": "bbc"})], hashing)  # fmt: skip
    vectors = root / "glove.txt"
    vectors.write_text("king 0.1 0.2 0.3\nqueen 0.1 0.25 0.3\nman 0.3 0.1 0.1\n", encoding="utf-8")
    import_vectors(vectors, "glove", root / "models" / "glove")
    key = root / "key.txt"
    key.write_text("...\n")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedsearch", "--data-dir", str(root / "data"), "serve", "--port", str(port),
         "--api-key-file", str(key), "--models-dir", str(root / "models")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    base = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            probe = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/health"]
            if subprocess.run(probe, capture_output=True, text=True, check=False).stdout == "200":
                break  # listening, and the models preloaded (503 "loading" before)
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode())
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_readme_has_curl_examples_for_every_write_and_search():
    commands = readme_curl_commands()
    assert len(commands) >= 10
    posts = [c for c in commands if " -d " in c]
    assert posts and all("Content-Type: application/json" in c for c in posts)


def test_readme_curl_examples_work_as_written(server):
    ran = 0
    for command in readme_curl_commands():
        if PLACEHOLDER_BODY in command:
            continue
        cmd = command.replace("localhost:8765", server) + " -w '\\n%{http_code}'"
        out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=False, timeout=60)
        body, _, status = out.stdout.rpartition("\n")
        assert out.returncode == 0 and status.startswith("2"), f"{command}\n-> {status}: {body[:300]}"
        if "/metrics" not in command:
            json.loads(body)
        ran += 1
    assert ran >= 10
    assert re.search(r"\[0\.1, \.\.\.\]", README.read_text(encoding="utf-8"))  # the one skipped is still there


def test_a_body_without_the_json_content_type_says_so(server):
    cmd = f"curl -s -X POST {server}/collections/news/search -d '{{\"query\": \"rates\"}}'"
    out = json.loads(subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout)
    assert out["error"]["code"] == "invalid_request"
    assert "Content-Type: application/json" in out["error"]["message"]
