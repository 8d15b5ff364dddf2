"""/docs in a real browser: every served model is on the page, and headless Chromium runs
"Try it out" on POST /inference with the example the document takes from the model card."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.conftest import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def server_url(repository: Path, tmp_path: Path) -> Iterator[str]:
    with serving(repository, tmp_path / "server.log") as (url, _):
        yield url


def test_try_it_out_on_docs_page_shows_predictions(
    chromium: Path, server_url: str, tmp_path: Path
) -> None:
    document = requests.get(f"{server_url}/openapi.json", timeout=10).json()
    models = requests.get(f"{server_url}/readyz", timeout=10).json()["models"]
    assert len(models) >= 3
    operation = document["paths"]["/inference"]["post"]
    payload = operation["requestBody"]["content"]["application/json"]["examples"]
    first = next(iter(payload.values()))["value"][0]
    answers = operation["responses"]["200"]["content"]["application/json"]["examples"]
    expected = next(iter(answers.values()))["value"]["predictions"]
    requested: list[str] = []
    page_errors: list[str] = []
    screenshot = tmp_path / "docs-page.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requested.append(r.url))
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(f"{server_url}/docs")

            operation = page.locator(
                '.opblock-post:has(.opblock-summary-path[data-path="/inference"])'
            )
            expect(operation).to_have_count(1, timeout=20_000)
            for name in models:
                path = page.locator(f'.opblock-summary-path[data-path="/models/{name}/inference"]')
                expect(path).to_have_count(1)
            operation.locator(".opblock-summary").first.click()
            try_it_out = operation.get_by_role("button", name="Try it out")
            if try_it_out.count():  # tryItOutEnabled opens the editor without a click
                try_it_out.click()
            body = operation.locator(".body-param textarea")
            key, value = next(iter(first.items()))
            expect(body).to_contain_text(f"{json.dumps(key)}: {json.dumps(value)}")
            operation.get_by_role("button", name="Execute").click()

            answer = operation.locator(".live-responses-table tbody .response-col_description")
            expect(answer).to_contain_text(json.dumps(expected[0]), timeout=20_000)
            expect(
                operation.locator(".live-responses-table tbody .response-col_status")
            ).to_contain_text("200")
            text, at = answer.inner_text(), 0
            for prediction in expected:  # the card's answers, in order
                at = text.index(json.dumps(prediction), at) + 1

            # From the page title down to the live answer: what a reader needs to see.
            bottom = operation.locator(".live-responses-table tbody").evaluate(
                "e => e.getBoundingClientRect().bottom + window.scrollY"
            )
            clip = {"x": 0, "y": 0, "width": 1280, "height": bottom + 16}
            page.screenshot(path=str(screenshot), full_page=True, clip=clip)
        finally:
            browser.close()

    assert screenshot.stat().st_size > 10_000
    if target := os.environ.get("SAVE_DOCS_SCREENSHOT"):
        shutil.copyfile(screenshot, target)
    assert not page_errors, page_errors
    foreign = [url for url in requested if not url.startswith(server_url)]
    assert not foreign, f"the page fetched from elsewhere than the server: {foreign}"
