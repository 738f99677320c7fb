"""The web pages in a real headless Chromium (Debian's package, driven by Playwright; never
`playwright install`): load the timeline, filter it, open a story, search in Korean, and
assert what is on screen. Without /usr/bin/chromium these tests skip with the reason, unless
WATCHER_REQUIRE_BROWSER=1 (set by .ci/run after installing it), where they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import CONFIG, Started, listening, seed
from tests.tcpproxy import free_port
from watcher.store import Store

#: Every test here starts a process.
pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("WATCHER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"WATCHER_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """`watcher serve` on a seeded SQLite database, as an operator starts it."""
    db = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store.open(db)
    store.upgrade()
    seed(store)
    store.close()
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG, allow_unicode=True))
    port = free_port()
    server = Started("--config", str(cfg), "--db", db, "serve", "--address", f"127.0.0.1:{port}")

    try:
        server.wait(lambda: listening(port), "watcher serve to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def page(tmp_path: Path):
    if not Path(CHROMIUM).exists():
        _skip_or_fail(f"no Chromium at {CHROMIUM} (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def test_timeline_filter_story_and_korean_search_in_a_browser(site: str, page) -> None:
    page.goto(site + "/")
    stories = page.locator("article.story")
    assert stories.count() == 2
    assert "2 outlets: Yonhap, 데일리NK" in stories.nth(1).inner_text()
    assert page.locator("section.chart svg rect").count() >= 2
    # the hostile headline is on screen as text, and no script ran
    assert "<script>alert(1)</script>" in stories.nth(1).inner_text()
    assert page.evaluate("document.querySelectorAll('script').length") == 0

    page.select_option("select[name=event]", "detention")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/?event=detention*")
    assert page.locator("article.story").count() == 1
    assert "Kunming" in page.locator("article.story").inner_text()

    page.goto(site + "/")
    page.locator("article.story h3 a").nth(1).click()
    page.wait_for_url("**/stories/*")
    rows = page.locator("tbody tr")
    assert rows.count() == 2
    assert "데일리NK" in rows.nth(1).inner_text()
    assert "中, 탈북민 60여명 강제북송" in rows.nth(1).inner_text()

    page.fill("header input[name=q]", "북송")
    page.press("header input[name=q]", "Enter")
    page.wait_for_url("**/search?q=*")
    assert "Stories and items matching “북송”" in page.inner_text("main")
    hits = page.locator("tr.hit")
    assert hits.count() == 1
    assert "中, 탈북민 60여명 강제북송" in hits.inner_text()
    # The result leads to its story, the matching report marked there.
    hits.locator("a").click()
    page.wait_for_url("**/stories/*?hit=*")
    marked = page.locator("tr.hit")
    assert marked.count() == 1 and marked.is_visible()
    assert "데일리NK" in marked.inner_text()

    # English words are stemmed: "repatriation" finds the report that says "repatriates".
    page.goto(site + "/search?q=repatriation")
    assert page.locator("tr.hit").count() == 1
    assert page.locator("tr.hit mark").first.inner_text().lower() == "repatriates"
    assert page.evaluate("document.querySelectorAll('script').length") == 0

    # The chart's table (behind "The figures as a table") counts the stories shown.
    page.goto(site + "/")
    totals = page.locator("#chart-table td[data-total]").all_text_contents()
    assert sum(int(t) for t in totals) == page.locator("article.story").count() == 2


def test_sources_and_rules_pages_in_a_browser(site: str, page) -> None:
    page.goto(site + "/sources")
    assert page.locator("tr[data-source]").count() == 2
    page.goto(site + "/rules")
    assert "2 matches" in page.locator('section[data-rule="return"]').inner_text()
