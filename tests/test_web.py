"""The web pages, feeds and API over a seeded database, on SQLite and PostgreSQL, through an
HTTP client: filters, story pages, Korean search, escaping of hostile headlines, Atom and JSON
feeds (the Atom feed read back by feedparser), the OpenAPI document, and the token."""

from __future__ import annotations

from datetime import timedelta

import feedparser
import pytest
import yaml
from bs4 import BeautifulSoup
from starlette.testclient import TestClient

from tests.helpers import CONFIG, NOW, seed
from watcher.config import load_config_text
from watcher.store import Store


@pytest.fixture
def client(store: Store):
    from watcher.web import create_app

    config = seed(store)

    with TestClient(create_app(store, config)) as c:
        yield c


def soup(response) -> BeautifulSoup:
    assert response.status_code == 200, response.text
    return BeautifulSoup(response.text, "html.parser")


def test_timeline_lists_stories_newest_first_with_their_outlets(client: TestClient) -> None:
    page = soup(client.get("/"))
    stories = page.select("article.story")
    assert len(stories) == 2  # the Korean report joined the English one (60 people)
    newest, older = stories
    assert "Kunming" in newest.get_text() and "Detention" in newest.get_text()
    text = older.get_text(" ", strip=True)
    assert "2 outlets: Yonhap, 데일리NK" in text and "60 people" in text
    assert "KST" in text  # the configured time zone
    assert page.select("section.chart svg rect")  # the per-month chart


def test_filters_narrow_the_timeline(client: TestClient) -> None:
    def titles(query: str) -> list[str]:
        return [a.get_text() for a in soup(client.get("/" + query)).select("article h3 a")]

    assert len(titles("?event=detention")) == 1
    assert len(titles("?severity=high")) == 1 and len(titles("?severity=medium")) == 2
    assert len(titles("?source=dailynk-ko")) == 1 and len(titles("?lang=ko")) == 1
    tomorrow = (NOW + timedelta(days=1)).date().isoformat()
    assert titles(f"?since={tomorrow}") == []


def test_hostile_headline_renders_as_text_and_unsafe_links_are_dropped(
    client: TestClient,
) -> None:
    html = client.get("/").text
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = soup(client.get("/"))
    story_link = page.select("article h3 a")[1]["href"]
    story = soup(client.get(story_link))
    assert not story.find("script") and not story.find("b", string="China")
    hrefs = [a["href"] for a in story.select("td a")]
    assert hrefs == ["https://e.org/1"]  # javascript: is not a link
    assert "中, 탈북민 60여명 강제북송" in story.get_text()
    headers = client.get("/").headers
    assert "default-src 'none'" in headers["content-security-policy"]


def test_korean_search_finds_two_syllables_inside_words(client: TestClient) -> None:
    page = soup(client.get("/search", params={"q": "북송"}))
    assert [td.get_text(strip=True) for td in page.select("tbody td:nth-of-type(3)")] == [
        "中, 탈북민 60여명 강제북송"
    ]
    assert "Type two characters" in soup(client.get("/search", params={"q": "북"})).get_text()
    api = client.get("/api/items", params={"q": "kunming"}).json()
    assert [i["source"] for i in api["items"]] == ["yonhap"]
    assert client.get("/api/items", params={"q": "100%_"}).json() == {"items": []}


def test_story_page_and_missing_story(client: TestClient) -> None:
    stories = client.get("/api/stories").json()["stories"]
    story = client.get(f"/api/stories/{stories[1]['id']}").json()
    assert [r["source"] for r in story["reports"]] == ["yonhap", "dailynk-ko"]
    # the API makes the link check every output makes: a javascript: link is null
    assert [r["url"] for r in story["reports"]] == ["https://e.org/1", None]
    assert story["events"] == ["forced_repatriation"] and story["people"] == 60
    page = client.get(f"/stories/{stories[1]['id']}").text
    assert "Why it matched: return: " in page
    assert client.get("/stories/999999").status_code == 404
    assert client.get("/api/stories/nope").status_code == 404


def test_atom_feed_is_valid_and_filterable(client: TestClient) -> None:
    response = client.get("/feed.atom", params={"event": "forced_repatriation"})
    assert response.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    (entry,) = parsed.entries
    assert entry.title.startswith("[HIGH] ") and "<script>" in entry.title  # text, escaped in XML
    # links come from the served address, never from the request's Host header
    assert entry.link.startswith("http://127.0.0.1:8080/stories/")
    assert entry.tags[0].term == "forced_repatriation"
    assert "Yonhap, 데일리NK" in entry.summary


def test_json_feed(client: TestClient) -> None:
    feed = client.get("/feed.json").json()
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert [i["tags"] for i in feed["items"]] == [["detention"], ["forced_repatriation"]]
    assert all(i["id"] and i["url"] and i["date_published"] for i in feed["items"])


def test_sources_rules_and_openapi(client: TestClient) -> None:
    sources = soup(client.get("/sources"))
    assert {tr["data-source"] for tr in sources.select("tr[data-source]")} == {
        "yonhap",
        "dailynk-ko",
    }
    rules = soup(client.get("/rules"))
    returned = rules.select_one('section[data-rule="return"]').get_text(" ", strip=True)
    assert "2 matches" in returned
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/api/stories" in spec["paths"]
    assert client.get("/api/sources").json()["sources"][0]["id"] == "yonhap"
    assert client.post("/api/stories").status_code == 405  # read-only


def test_token_is_required_when_set(store: Store) -> None:
    from watcher.web import create_app

    config = load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "w.yaml", {}).config
    store.sync_sources(config.sources, NOW)
    with TestClient(create_app(store, config, token="s3cret-token")) as c:
        assert c.get("/").status_code == 401
        assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/?token=s3cret-token").status_code == 200
        assert c.get("/feed.atom").status_code == 200  # the cookie set above


def test_an_empty_feed_is_up_to_date_as_of_now(store: Store) -> None:
    from watcher.web import create_app

    config = load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "w.yaml", {}).config
    store.sync_sources(config.sources, NOW)
    with TestClient(create_app(store, config, now=lambda: NOW)) as c:
        feed = feedparser.parse(c.get("/feed.atom").text)
    assert not feed.bozo and feed.entries == []
    assert feed.feed.updated == NOW.isoformat()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/stories/99999999999999999999999", 404),  # beyond a 64-bit id: 404, not 500
        ("/api/stories/99999999999999999999999", 404),
        ("/stories/-1", 404),
        ("/stories/\uff11", 404),  # a full-width digit is not an id
        ("/?page=1000000000000000000000000", 400),
        ("/feed.atom?page=99999", 400),
        ("/search?q=" + "x" * 50_000, 400),
        ("/api/items?q=" + "y" * 501, 400),
    ],
)
def test_out_of_range_input_is_refused_not_a_server_error(client, path: str, status: int) -> None:
    assert client.get(path).status_code == status


def test_feed_links_never_come_from_the_host_header(store: Store) -> None:
    from watcher.web import create_app

    config = seed(store)
    evil = {"host": "evil.example"}
    with TestClient(create_app(store, config, base_url="http://10.0.0.5:8080")) as c:
        atom = c.get("/feed.atom?event=forced_repatriation&token=t0k3n", headers=evil).text
        feed = c.get("/feed.json", headers=evil).json()
    assert "evil.example" not in atom and "t0k3n" not in atom
    assert 'href="http://10.0.0.5:8080/feed.atom?event=forced_repatriation"' in atom
    assert feed["items"][0]["url"].startswith("http://10.0.0.5:8080/stories/")
    settings = config.settings.model_copy(update={"public_url": "https://w.example.org/"})
    with TestClient(create_app(store, config.model_copy(update={"settings": settings}))) as c:
        feed = c.get("/feed.json", headers=evil).json()
    assert feed["home_page_url"] == "https://w.example.org/"
    assert feed["items"][0]["url"].startswith("https://w.example.org/stories/")


def test_source_urls_are_served_without_their_secrets(store: Store) -> None:
    from watcher import log
    from watcher.web import create_app

    text = yaml.safe_dump(
        {
            "sources": [
                {"id": "keyed", "kind": "feed", "url": "https://api.example.org/f?key=${FEED_KEY}"},
                {"id": "basic", "kind": "feed", "url": "https://reader:pa55@feeds.example.org/x"},
            ]
        }
    )
    loaded = load_config_text(text, "t.yaml", {"FEED_KEY": "k3y-abcdef-123"})
    log.add_secrets(loaded.secrets)  # as the CLI does when it loads the file
    store.sync_sources(loaded.config.sources, NOW)
    with TestClient(create_app(store, loaded.config)) as c:
        served = c.get("/api/sources").text
    assert "k3y-abcdef-123" not in served and "pa55" not in served
    assert "key=***" in served and "https://***@feeds.example.org/x" in served


def test_the_rules_page_shows_inline_terms_as_lists_not_python(store: Store) -> None:
    from watcher.web import create_app

    doc = {
        **CONFIG,
        "rules": [
            {
                "id": "return",
                "event": "forced_repatriation",
                "all_of": ["nk_people", ["repatriat*", "sent back"]],
                "none_of": [{"en": [f"term{i}" for i in range(10)], "ko": ["미얀마"]}],
            }
        ],
    }
    config = load_config_text(yaml.safe_dump(doc, allow_unicode=True), "w.yaml", {}).config
    store.sync_sources(config.sources, NOW)
    with TestClient(create_app(store, config)) as c:
        page = soup(c.get("/rules"))
    text = page.select_one('section[data-rule="return"]').get_text(" ", strip=True)
    assert "all of: nk_people · [repatriat*, sent back]" in text, text
    shown = "none of: [en: term0, term1, term2, term3, term4, term5, term6, term7 …; ko: 미얀마]"
    assert shown in text, text
    assert "(" not in text and "'" not in text  # no tuple or dict repr


def test_the_timeline_says_which_sources_are_not_working(client: TestClient, store: Store) -> None:
    # a broken source's silence looks like no news: advocates read on the timeline that it is
    # not working, not only operators on /sources
    from sqlalchemy import update

    from watcher.store import tables as t

    assert soup(client.get("/")).select_one("[data-silent]") is None
    with store.engine.begin() as conn:
        conn.execute(
            update(t.sources)
            .where(t.sources.c.id == "yonhap")
            .values(
                health="failing",
                health_reason="3 failures in a row; last: HTTP 500",
                last_polled_at=NOW,
            )
        )
    notice = soup(client.get("/")).select_one("[data-silent]")
    assert notice is not None and notice["data-silent"] == "1"
    text = notice.get_text(" ", strip=True)
    assert text.startswith("1 source is not working") and "Yonhap (failing)" in text, text
    assert notice.select_one('a[href="/sources"]') is not None
