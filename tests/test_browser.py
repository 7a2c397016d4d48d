"""The search page in a real browser: headless Chromium (Debian's package) driven by
Playwright, against a server started on 127.0.0.1. Nothing is downloaded: Playwright is
pointed at the system binary.

Skipped when Chromium or Playwright is missing, unless EMBEDSEARCH_REQUIRE_BROWSER=1 (as
``.ci/run`` sets), which turns a missing browser into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time

import pytest

from embedsearch.config import Settings
from embedsearch.store import Store
from tests.conftest import free_port, topic_docs

pytestmark = pytest.mark.slow  # drives Chromium


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _require_browser():
    required = os.environ.get("EMBEDSEARCH_REQUIRE_BROWSER") == "1"
    path = _chromium()
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        if required:
            pytest.fail("playwright is not installed but EMBEDSEARCH_REQUIRE_BROWSER=1")
        pytest.skip("playwright is not installed")
    if path is None:
        if required:
            pytest.fail("no chromium binary but EMBEDSEARCH_REQUIRE_BROWSER=1")
        pytest.skip("no chromium binary (apt-get install chromium)")
    return path


@pytest.fixture
def server(data_dir, hashing, minilm):
    import uvicorn

    from embedsearch.corpus import Document
    from embedsearch.passages import Chunking
    from embedsearch.service.app import create_app

    settings = Settings.from_env(data_dir)
    Store(settings).create("news", hashing, "Flat").add_documents(topic_docs(40), hashing)
    manual = " ".join(["The council discussed the budget and the parking rules for the town."] * 30)
    manual += " The centrifugal pump overheats when the coolant valve is left closed."
    Store(settings).create("manuals", minilm, "Flat", lexical=True, chunking=Chunking(32)).add_documents(
        [Document("pump", manual, {}), Document("note", "Volcanoes erupt lava.", {})], minilm
    )
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@contextlib.contextmanager
def _search_page(server: str, collection: str):
    """Headless Chromium on the search page, with ``collection`` picked."""
    chromium = _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.wait_for_selector(f"#collection option[value='{collection}']", state="attached")
            page.select_option("#collection", collection)
            yield page
        finally:
            browser.close()


def test_search_page_shows_hits_and_errors(server, artifacts):
    with _search_page(server, "news") as page:
        page.fill("#query", "cricket wickets batsman")
        page.fill("#k", "3")
        page.click("#go")
        page.wait_for_selector("li.hit")
        hits = page.locator("li.hit")
        assert hits.count() == 3
        assert "cricket" in hits.first.inner_text()
        assert "hits in" in page.inner_text("#status")
        page.screenshot(path=str(artifacts / "search-page.png"), full_page=True)
        # an API error is shown in the page, not swallowed
        page.fill("#filter", '{"year": {"$regex": "x"}}')
        page.click("#go")
        page.wait_for_selector("#status.error")
        assert "invalid_filter" in page.inner_text("#status")
        assert page.locator("li.hit").count() == 0


def test_search_page_shows_the_matching_passage_with_the_query_words_marked(server, artifacts):
    with _search_page(server, "manuals") as page:
        page.select_option("#mode", "hybrid")
        page.fill("#query", "pump overheats coolant")
        page.click("#go")
        page.wait_for_selector("li.hit")
        first = page.locator("li.hit").first
        text = first.inner_text()
        assert "pump" in text and "hybrid" in text and "passage" in text
        assert "centrifugal pump overheats" in first.locator(".text").inner_text()
        assert "The council discussed" not in first.locator(".text").inner_text()[:40]  # the passage, not the start
        marked = [m.inner_text().lower() for m in first.locator("mark").all()]
        assert {"pump", "overheats", "coolant"} <= set(marked)
        page.screenshot(path=str(artifacts / "search-page-passage.png"), full_page=True)


def test_api_docs_render_with_no_network(server, artifacts):
    """/docs renders the API from packaged Swagger UI with every request off this server refused."""
    chromium = _require_browser()
    from playwright.sync_api import sync_playwright

    outside = []

    def only_local(route):
        if route.request.url.startswith(server):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", only_local)
            page.goto(server + "/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
            assert "embedsearch" in page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector('[data-path="/collections/{name}/search"]', state="attached")
            page.screenshot(path=str(artifacts / "api-docs.png"))
        finally:
            browser.close()
    assert outside == []
