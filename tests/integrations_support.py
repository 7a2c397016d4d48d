"""What the LangChain and LlamaIndex adapter tests share: the real service on a loopback port (uvicorn
in a thread, the app ``embedsearch serve`` runs) and a small corpus with every kind of metadata
the filters look at (missing fields, empty strings and arrays, lists)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

KEY = "adapter-test-key"


@contextlib.contextmanager
def running_service(data_dir: Path, api_key: str | None = KEY) -> Iterator[str]:
    """The service over ``data_dir`` at a free loopback port; yields its base URL."""
    import uvicorn

    from embedsearch.config import Settings
    from embedsearch.service.app import create_app

    app = create_app(Settings.from_env(data_dir), api_key=api_key, ray_address=None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise AssertionError("the service did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


TOPICS = [
    "bushfire smoke firefighters evacuate",
    "interest rates bank inflation",
    "cricket test wickets batsman",
    "election votes parliament minister",
]


def corpus(n: int = 24) -> list[tuple[str, str, dict]]:
    """(id, text, metadata): four topics; ``note`` is missing, null, empty or set; ``tags`` a
    list (sometimes empty, sometimes missing)."""
    out = []
    for i in range(n):
        meta: dict = {"source": "lee" if i % 2 else "bbc", "year": 1995 + i % 10, "topic": i % 4, "rare": i % 5 == 0}
        if i % 6:
            meta["tags"] = [t for j, t in enumerate(("fire", "money", "sport")) if (i // 2 >> j) & 1]  # some empty
        if i % 4 == 1:
            meta["note"] = ""
        elif i % 4 == 2:
            meta["note"] = f"note {i}"
        elif i % 8 == 3:
            meta["note"] = None
        out.append((f"doc-{i}", f"{TOPICS[i % 4]} story {i}", meta))
    return out


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(marker: str) -> str:
    """The README's python block holding ``marker``."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return next(b for b in blocks if marker in b)


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """No network while the block runs, where pytest-socket (which langchain-tests brings) is
    installed: an example that reached for a download would fail here."""
    try:
        import pytest_socket
    except ImportError:
        yield
        return
    pytest_socket.disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        pytest_socket.enable_socket()
