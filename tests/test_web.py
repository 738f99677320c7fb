"""The web pages, feeds and API over a seeded database, on SQLite and PostgreSQL, through an
HTTP client: filters, story pages, Korean search, escaping of hostile headlines, Atom and JSON
feeds (the Atom feed read back by feedparser), the OpenAPI document, and the token."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import feedparser
import pytest
import yaml
from bs4 import BeautifulSoup
from starlette.testclient import TestClient

from tests.helpers import CONFIG, NOW, seed
from watcher.config import load_config_text
from watcher.store import Store
from watcher.types import Item


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
    # `since` is a day in the page's zone (Seoul): tomorrow there, whatever the hour in UTC
    tomorrow = (NOW.astimezone(ZoneInfo(CONFIG["settings"]["timezone"])) + timedelta(days=1)).date()
    assert titles(f"?since={tomorrow.isoformat()}") == []


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


@pytest.mark.parametrize("q", ["", "&q=repatriat*"])
def test_a_feed_subscribed_in_a_zone_links_its_pages_in_that_zone(
    client: TestClient, q: str
) -> None:
    """A reader in Seoul subscribes with ?tz=Asia/Seoul: each entry opens its page in Seoul
    time, while the entry's id is the same in every zone (no entry is shown twice)."""
    seoul = feedparser.parse(client.get(f"/feed.atom?tz=Asia/Seoul{q}").content).entries
    utc = feedparser.parse(client.get(f"/feed.atom?{q.lstrip('&')}").content).entries
    assert seoul and [e.id for e in seoul] == [e.id for e in utc]
    assert all(e.link.endswith("tz=Asia%2FSeoul") for e in seoul)
    assert all("tz=" not in e.link for e in utc)
    page = client.get(seoul[0].link.removeprefix("http://127.0.0.1:8080")).text
    assert " KST" in page
    items = client.get(f"/feed.json?tz=Asia/Seoul{q}").json()["items"]
    assert items and all(i["url"].endswith("tz=Asia%2FSeoul") for i in items)
    # a zone that is none is not carried on
    bad = feedparser.parse(client.get(f"/feed.atom?tz=Mars/Olympus{q}").content).entries
    assert bad and all("tz=" not in e.link for e in bad)


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
    # and the API says so too (a stale or broken source has no failure count to show it)
    with store.engine.begin() as conn:
        conn.execute(update(t.sources).where(t.sources.c.id == "dailynk-ko").values(health="stale"))
    health = {
        s["id"]: (s["health"], s["health_reason"])
        for s in client.get("/api/sources").json()["sources"]
    }
    assert health == {
        "yonhap": ("failing", "3 failures in a row; last: HTTP 500"),
        "dailynk-ko": ("stale", None),
    }


# ------------------------------------------------------------------ filters, links, display

KST = ZoneInfo("Asia/Seoul")


def report(key: str, title: str, published: datetime | None, fetched: datetime, **kw) -> Item:
    fields = {"source_id": "yonhap", "lang": "en", "url": key, "text": f"Lead of {title}"}
    return Item(
        key=key,
        title=title,
        published_at=published,
        published_raw=None,
        fetched_at=fetched,
        **(fields | kw),
    )


def saved(store: Store, *polls: Item):
    """Store each item as one poll (matched and grouped as the daemon does); the config."""
    from watcher.pipeline import match_items
    from watcher.routing import Alerting
    from watcher.rules import compile_rules

    config = load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "w.yaml", {}).config
    store.sync_sources(config.sources, NOW)
    matcher, alerting = compile_rules(config), Alerting.from_config(config)
    for one in polls:
        found = match_items(matcher, [one], config.source(one.source_id).tags)
        store.save_items([one], now=one.fetched_at, matches=found, alerting=alerting)
    return config


#: A detention at 23:30 KST on 2 December and a repatriation at 00:30 KST on 3 December: both
#: on 2 December in UTC (14:30 and 15:30).
LATE = datetime(2026, 12, 2, 23, 30, tzinfo=KST).astimezone(UTC)
EARLY = datetime(2026, 12, 3, 0, 30, tzinfo=KST).astimezone(UTC)


@pytest.fixture
def two_days(store: Store):
    from watcher.web import create_app

    config = saved(
        store,
        report("https://e.org/late", "Police detain 5 North Korean defectors", LATE, LATE),
        report("https://e.org/early", "China repatriates 9 North Korean defectors", EARLY, EARLY),
    )
    with TestClient(create_app(store, config)) as c:
        yield c


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("since=2026-12-02&until=2026-12-02", ["late"]),  # one day, in KST (the settings')
        ("since=2026-12-03&until=2026-12-03", ["early"]),
        ("until=2026-12-02", ["late"]),  # until takes in the whole day
        ("since=2026-12-03", ["early"]),
        ("since=2026-12-02&until=2026-12-02&tz=UTC", ["early", "late"]),  # the page's zone
        ("since=2026-12-03&until=2026-12-03&tz=UTC", []),
        ("since=2026-12-02T14:00:00%2B00:00&until=2026-12-02T15:00:00Z", ["late"]),  # a time
    ],
)
@pytest.mark.parametrize("path", ["/", "/feed.atom", "/feed.json", "/api/stories"])
def test_dates_are_days_in_the_pages_zone_both_included(
    two_days: TestClient, path: str, query: str, found: list[str]
) -> None:
    response = two_days.get(f"{path}?{query}")
    assert response.status_code == 200, response.text
    words = {"late": "detain", "early": "repatriates"}
    text = response.text
    assert [k for k in ("early", "late") if words[k] in text] == found


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("event=forced_repatriaton", "event: unknown event 'forced_repatriaton' (did you mean"),
        ("severity=bogus", "severity: unknown severity 'bogus' (severities: low, medium"),
        ("severity=hihg", "(did you mean 'high'?)"),
        ("source=yonap", "source: unknown source 'yonap' (did you mean 'yonhap'?)"),
        ("lang=kr", "lang: unknown language 'kr' (did you mean 'ko'?)"),
        ("since=garbage", "since: expected a date like 2026-12-02"),
        ("until=2026-13-01", "until: expected a date like 2026-12-02"),
        ("until=9999-12-31", "until: expected a date"),  # no day after it
        ("since=2026-12-02T09:00:00+09:00", "a + in an address is a space: write it %2B"),
        ("source=gone-source", "source: unknown source 'gone-source'"),
        ("page=abc", "page: expected a number from 1, got 'abc'"),
        ("page=-1", "page: expected a number from 1"),
        ("page=0", "page: expected a number from 1"),
        ("page=" + "9" * 5000, "page must be at most 10,000"),
    ],
)
@pytest.mark.parametrize("path", ["/", "/feed.atom", "/feed.json", "/api/stories", "/search?q=x"])
def test_a_filter_that_is_not_one_is_refused_naming_it(
    client: TestClient, path: str, query: str, says: str
) -> None:
    if path.startswith("/search") and query.startswith("page="):
        return  # search pages go by cursor
    response = client.get(path + ("&" if "?" in path else "?") + query)
    assert response.status_code == 400, response.text
    if path.startswith("/api/"):  # the API's answers are JSON, its refusals too
        assert response.headers["content-type"] == "application/json"
        assert says in response.json()["error"] and "\n" not in response.json()["error"]
    else:
        assert response.headers["content-type"].startswith("text/plain")
        assert says in response.text and "\n" not in response.text.strip()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/items?q=kunming&cursor=abc", 400),
        ("/api/search?q=" + "x" * 5000, 400),
        ("/api/stories?limit=0", 400),
        ("/api/nothing-here", 404),
    ],
)
def test_the_api_refuses_in_json_as_it_answers(client: TestClient, path: str, status: int) -> None:
    """A client of the API reads every answer as JSON: a refusal is `{"error": one line}`."""
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error and "\n" not in error


def test_a_source_taken_out_of_the_configuration_can_still_be_filtered_on(
    store: Store,
) -> None:
    from watcher.web import create_app

    config = saved(store, report("https://e.org/g", "China repatriates 60 North Koreans", NOW, NOW))
    # yonhap leaves sources.yaml; its stories and items stay, and so do feeds subscribed to it
    without = config.model_copy(update={"sources": [s for s in config.sources if s.id != "yonhap"]})
    with TestClient(create_app(store, without)) as c:
        kept = c.get("/feed.atom?source=yonhap")
        assert kept.status_code == 200 and "China repatriates 60" in kept.text
        assert c.get("/feed.atom?source=yonhapp").status_code == 400


def test_a_limit_that_is_not_a_number_is_refused(client: TestClient) -> None:
    assert client.get("/api/stories?limit=abc").status_code == 400
    assert client.get("/api/items?q=kunming&limit=0").status_code == 400
    assert len(client.get("/api/stories?limit=9999").json()["stories"]) == 2  # at most 500


def test_story_reports_are_listed_by_publication_time(store: Store) -> None:
    """Reports join in the order sources are polled; the page lists them as they were
    published (an undated one at its fetch time), the first report first."""
    from watcher.web import create_app

    at = NOW - timedelta(hours=10)
    config = saved(
        store,
        report("https://e.org/a", "China repatriates 60 North Korean defectors", at, at),
        report(
            "https://d.org/b",
            "中, 탈북민 60여명 강제북송",
            at - timedelta(hours=3),
            at + timedelta(hours=1),
            source_id="dailynk-ko",
            lang="ko",
        ),
        report(
            "https://e.org/c",
            "60 North Korean defectors repatriated",
            None,
            at - timedelta(hours=1) + timedelta(hours=2),
        ),
        report(
            "https://e.org/d",
            "Repatriation of 60 North Korean defectors confirmed",
            at - timedelta(hours=2),
            at + timedelta(hours=3),
        ),
    )
    with TestClient(create_app(store, config)) as c:
        (story,) = c.get("/api/stories").json()["stories"]
        page = soup(c.get(f"/stories/{story['id']}"))
        one = c.get(f"/api/stories/{story['id']}").json()
    order = [r["url"] for r in one["reports"]]
    assert order == ["https://d.org/b", "https://e.org/d", "https://e.org/a", "https://e.org/c"]
    assert story["first_source"] == "dailynk-ko"
    assert [r["url"] for r in story["reports"]] == order  # the timeline's cards alike
    titles = [tr.select("td")[1].get_text(" ", strip=True) for tr in page.select("tr[id^=report-]")]
    assert titles[0].startswith("中") and titles[-1].startswith("60 North Korean")


def test_the_chosen_zone_is_kept_on_links_between_pages(client: TestClient) -> None:
    timeline = soup(client.get("/?tz=Europe/Zurich"))
    link = timeline.select_one("article h3 a")["href"]
    assert link.endswith("?tz=Europe%2FZurich")
    story = soup(client.get(link))
    assert "Times in Europe/Zurich" in story.get_text() and "CET" in story.get_text()
    item = story.select_one("a[href^='/items/']")["href"]
    assert item.endswith("?tz=Europe%2FZurich")
    back = soup(client.get(item)).select_one("a[href^='/stories/']")["href"]
    assert "?hit=" in back and back.split("#")[0].endswith("&tz=Europe%2FZurich")
    assert (
        soup(client.get("/search?q=kunming&tz=Europe/Zurich")).select_one("header input[name=tz]")[
            "value"
        ]
        == "Europe/Zurich"
    )
    # an unknown zone is ignored, and not carried on
    timeline = soup(client.get("/?tz=Mars/Olympus&token=x"))
    assert timeline.select_one("article h3 a")["href"].isascii()
    assert "tz=" not in timeline.select_one("article h3 a")["href"]
    assert not timeline.select("header input[name=tz]")


def test_a_very_long_headline_is_cut_on_pages_and_kept_whole_on_its_item_page(
    store: Store,
) -> None:
    from watcher.web import create_app

    title = "China repatriates 60 North Korean defectors " + "and more words " * 400
    config = saved(store, report("https://e.org/long", title, NOW, NOW))
    with TestClient(create_app(store, config)) as c:
        shown = soup(c.get("/")).select_one("article h3 a").get_text()
        story_link = soup(c.get("/")).select_one("article h3 a")["href"]
        story = soup(c.get(story_link))
        feed = feedparser.parse(c.get("/feed.atom").content)
        item = soup(c.get(story.select_one("a[href^='/items/']")["href"]))
    assert len(title) > 6000 and len(shown) <= 300 and shown.endswith("…")
    assert len(story.select_one("title").get_text()) < 320
    assert max(len(td.get_text()) for td in story.select("tr[id^=report-] td a")) <= 300
    assert len(feed.entries[0].title) < 320
    assert item.select_one("h1").get_text().strip() == title.strip()


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("", "watcher: forced repatriation early warning"),
        ("q=선양", "watcher: forced repatriation early warning — search “선양”"),
        (
            'q=<b>defectors</b> %26 "x"&event=detention&severity=high&source=yonhap',
            '— search “<b>defectors</b> & "x"” · Detention · severity ≥ high · from Yonhap',
        ),
        (
            "lang=ko&since=2026-12-01&until=2026-12-02",
            "in ko · since 2026-12-01 · until 2026-12-02",
        ),
        # characters XML forbids never reach the title (the feed would not parse)
        ("q=defectors%0B%01%1B%0A", "— search “defectors”"),
    ],
)
def test_a_feeds_title_says_what_it_holds(client: TestClient, query: str, title: str) -> None:
    atom = client.get(f"/feed.atom?{query}")
    parsed = feedparser.parse(atom.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.feed.title.endswith(title) or parsed.feed.title == title, parsed.feed.title
    assert "<b>" not in atom.text  # escaped in the XML
    ET.fromstring(atom.content)  # well-formed XML, strictly
    assert client.get(f"/feed.json?{query}").json()["title"] == parsed.feed.title


def test_feeds_follow_a_reload_of_the_configuration(store: Store) -> None:
    from watcher.web import create_app

    config = saved(store, report("https://e.org/r", "China repatriates 60 North Koreans", NOW, NOW))
    app = create_app(store, config)
    with TestClient(app) as c:
        before = c.get("/feed.atom?source=yonhap")
        renamed = config.model_copy(
            update={
                "sources": [
                    s.model_copy(update={"name": "Yonhap News Agency"}) if s.id == "yonhap" else s
                    for s in config.sources
                ]
            }
        )
        app.state.web.reload(renamed)
        after = c.get("/feed.atom?source=yonhap")
    assert "from Yonhap News Agency" in after.text and "from Yonhap News Agency" not in before.text
    assert after.headers["etag"] != before.headers["etag"]


def test_an_undated_report_is_never_shown_with_a_publication_date(store: Store) -> None:
    """An advocate must not cite a date the outlet never gave: the page says "undated" and
    gives the fetch time as such; the feeds leave the publication date out."""
    from watcher.web import create_app

    fetched = datetime(2026, 12, 3, 8, 4, tzinfo=UTC)
    config = saved(
        store,
        report("https://e.org/u", "China repatriates 60 North Korean defectors", None, fetched),
        report("https://e.org/v", "Cold wave in Shenyang", None, fetched),  # in no story
    )
    with TestClient(create_app(store, config)) as c:
        card = soup(c.get("/")).select_one("article .meta").get_text(" ", strip=True)
        story = soup(c.get(soup(c.get("/")).select_one("article h3 a")["href"]))
        atom = c.get("/feed.atom")
        json_feed = c.get("/feed.json").json()
        search = c.get("/feed.atom?q=shenyang")
    assert "Event undated (fetched 2026-12-03 17:04 KST)" in card
    (row,) = story.select("tr[id^=report-]")
    assert row.select("td")[0].get_text(strip=True) == "undated (fetched 2026-12-03 17:04 KST)"
    for body in (atom, search):
        parsed = feedparser.parse(body.content)
        assert not parsed.bozo and len(parsed.entries) == 1
        assert "<published>" not in body.text and "<updated>" in body.text
    (entry,) = json_feed["items"]
    assert "date_published" not in entry and entry["date_modified"]
    assert entry["_watcher"]["event_dated"] is False


#: The undated report's fetch time and the dated one's publication time (`_undated_then_dated`).
UNDATED_FETCHED = datetime(2026, 12, 3, 8, 4, tzinfo=UTC)
DATED_PUBLISHED = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


def _undated_then_dated(store: Store):
    """One story: founded by an undated report, joined by a dated one half an hour later;
    the config of the pages."""
    fetched, published = UNDATED_FETCHED, DATED_PUBLISHED
    return saved(
        store,
        report("https://e.org/u", "China repatriates 60 North Korean defectors", None, fetched),
        report(
            "https://e.org/w",
            "China repatriates 60 North Korean defectors via Dandong",
            published,
            fetched + timedelta(minutes=30),
            source_id="dailynk-ko",
        ),
    )


def test_a_story_founded_undated_shows_the_date_an_outlet_gave_since(store: Store) -> None:
    from watcher.web import create_app

    config = _undated_then_dated(store)
    with TestClient(create_app(store, config)) as c:
        (story,) = c.get("/api/stories").json()["stories"]
        card = soup(c.get("/")).select_one("article .meta").get_text(" ", strip=True)
    assert len(story["reports"]) == 2  # one story
    assert story["event_dated"] is True and story["event_at"] == DATED_PUBLISHED.isoformat()
    assert "undated" not in card and "2026-12-03 15:00 KST" in card


def test_an_edited_report_shows_first_as_it_was_found_then_as_it_reads_now(
    store: Store,
) -> None:
    from watcher.web import create_app

    first = report("https://e.org/e", "China detains 20 North Korean defectors", NOW, NOW)
    edited = replace(
        first,
        title="China repatriates 20 North Korean defectors",
        text="Chinese police sent the 20 back across the Tumen.",
        fetched_at=NOW + timedelta(hours=2),
    )
    config = saved(store, first, edited)
    with TestClient(create_app(store, config)) as c:
        story = soup(c.get(soup(c.get("/")).select_one("article h3 a")["href"]))
        page = soup(c.get(story.select_one("a[href^='/items/']")["href"]))
    text = page.get_text(" ", strip=True)
    # the record an advocate cites comes first, labelled with when it was found
    assert "Edited at source since it was found: 1 change" in text
    found_at = page.select_one("#first-found")
    assert found_at is not None and "As first found" in found_at.get_text()
    assert text.index("China detains 20") < text.index("As it reads now")
    assert text.index("Lead of China detains 20") < text.index("sent the 20 back across the Tumen")
    assert "China repatriates 20" in page.select_one("#now").find_next("p").get_text()


def test_an_item_never_edited_shows_no_versions(store: Store) -> None:
    from watcher.web import create_app

    item = report("https://e.org/u", "China repatriates 20 North Korean defectors", NOW, NOW)
    config = saved(store, item)
    with TestClient(create_app(store, config)) as c:
        story = soup(c.get(soup(c.get("/")).select_one("article h3 a")["href"]))
        page = soup(c.get(story.select_one("a[href^='/items/']")["href"]))
    assert "Edited at source" not in page.get_text() and page.select_one("#first-found") is None
    assert "Lead of China repatriates 20" in page.get_text()


@pytest.mark.parametrize("path", ["/feed.atom", "/feed.json", "/feed.atom?event=detention"])
def test_a_feed_reader_that_has_the_feed_gets_304(client: TestClient, path: str) -> None:
    first = client.get(path)
    tag = first.headers["etag"]
    assert first.status_code == 200 and tag.startswith('"') and first.content
    again = client.get(path, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    # a reader holding other bytes (an older feed, another filter) gets the feed
    stale = client.get(path, headers={"If-None-Match": '"0000", W/"1111"'})
    assert stale.status_code == 200 and stale.content == first.content
    assert client.get(path, headers={"If-None-Match": f'"x", W/{tag}'}).status_code == 304


# ------------------------------------------------------------------ as the alerts write them


def test_event_types_are_listed_gravest_first_and_counts_as_the_alerts_write_them(
    store: Store,
) -> None:
    """A forced repatriation that was also a detention reads "Forced repatriation ·
    Detention" everywhere, as in the alert (stored sorted by name, it read "Detention ·
    Forced repatriation"); one person is "1 person", and counts carry separators."""
    from sqlalchemy import update

    from watcher.store import tables as t
    from watcher.web import create_app

    config = saved(
        store,
        report("https://e.org/b", "Police detain and repatriate North Korean defectors", NOW, NOW),
    )
    names = ["Forced repatriation", "Detention"]
    with TestClient(create_app(store, config)) as c:
        (story,) = c.get("/api/stories").json()["stories"]
        assert story["events"] == ["forced_repatriation", "detention"]
        card = soup(c.get("/")).select_one("article.story")
        assert [e.get_text() for e in card.select(".ev")] == names
        page = soup(c.get(f"/stories/{story['id']}"))
        assert [e.get_text() for e in page.select("article.story .ev")] == names
        (entry,) = feedparser.parse(c.get("/feed.atom").content).entries
        assert entry.summary.startswith("Forced repatriation, Detention · HIGH")
        assert [tag.term for tag in entry.tags] == ["forced_repatriation", "detention"]
        (item,) = c.get("/feed.json").json()["items"]
        assert item["tags"] == ["forced_repatriation", "detention"]

        for people, shown in [(1, "1 person"), (30000, "30,000 people")]:
            with store.engine.begin() as conn:
                later = NOW + timedelta(minutes=people % 7 + 1)  # a new feed
                conn.execute(update(t.stories).values(people=people, updated_at=later))
            card = soup(c.get("/")).select_one("article.story .facts").get_text()
            assert card == shown
            summary = c.get("/feed.json").json()["items"][0]["content_text"]
            assert f"· {shown}" in summary


# ------------------------------------------------------------------ the chart


def at_kst(day: str, hour: int) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=KST).astimezone(UTC)


@pytest.fixture
def spring(store: Store):
    """Four stories in the spring of 2026, as Seoul reads their dates (settings.timezone)."""
    from watcher.web import create_app

    undated_c = at_kst("2026-04-01", 2)
    config = saved(
        store,
        # 08:00 KST on 1 March: still 28 February in UTC
        report(
            "https://e.org/a",
            "China repatriates 20 North Korean defectors in Hunchun",
            at_kst("2026-03-01", 8),
            at_kst("2026-03-01", 8),
        ),
        # no outlet dated it: fetched on 20 March
        report(
            "https://e.org/b",
            "Police detain 5 North Korean defectors in Kunming",
            None,
            at_kst("2026-03-20", 10),
        ),
        # founded undated on 1 April; an outlet dated it 31 March since
        report("https://e.org/c1", "China repatriates 60 North Korean defectors", None, undated_c),
        report(
            "https://e.org/c2",
            "China repatriates 60 North Korean defectors via Dandong",
            at_kst("2026-03-31", 22),
            undated_c + timedelta(minutes=30),
            source_id="dailynk-ko",
        ),
        report(
            "https://e.org/d",
            "Police detain 7 North Korean defectors in Shenyang",
            at_kst("2026-02-10", 12),
            at_kst("2026-02-10", 12),
            source_id="dailynk-ko",
        ),
    )
    with TestClient(create_app(store, config)) as c:
        yield c


def chart(client: TestClient, query: str) -> tuple[dict[str, int], int, str]:
    """The chart's totals per month, the undated stories it left out, and its note."""
    page = soup(client.get(f"/?{query}"))
    totals = {
        tr["data-month"]: int(tr.select_one("td[data-total]").get_text())
        for tr in page.select("#chart-table tbody tr")
    }
    note = page.select_one(".chart [data-undated]")
    return totals, int(note["data-undated"]), note.get_text(" ", strip=True)


SPRING = "since=2026-01-01&until=2026-04-30"
NONE = {"2026-01": 0, "2026-04": 0}


@pytest.mark.parametrize(
    ("query", "months", "undated"),
    [
        # A in March (KST), C in March (dated since), D in February; B is undated: left out
        (SPRING, {"2026-01": 0, "2026-02": 1, "2026-03": 2, "2026-04": 0}, 1),
        # the page's filters: the detentions (D, and B left out)
        (f"{SPRING}&event=detention", {"2026-01": 0, "2026-02": 1, "2026-03": 0, "2026-04": 0}, 1),
        (f"{SPRING}&severity=high", {"2026-01": 0, "2026-02": 0, "2026-03": 2, "2026-04": 0}, 0),
        (
            f"{SPRING}&source=dailynk-ko",
            {"2026-01": 0, "2026-02": 1, "2026-03": 1, "2026-04": 0},
            0,
        ),
        # the months in another zone: A's 08:00 KST on 1 March is 28 February in UTC
        (f"{SPRING}&tz=UTC", {"2026-01": 0, "2026-02": 2, "2026-03": 1, "2026-04": 0}, 1),
        # a period cut inside months
        ("since=2026-03-02&until=2026-03-31", {"2026-03": 1}, 1),  # C on the 31st, 22:00
        ("since=2026-02-01&until=2026-03-01", {"2026-02": 1, "2026-03": 1}, 0),
    ],
)
def test_the_chart_counts_dated_events_in_the_zone_and_follows_the_filters(
    spring: TestClient, query: str, months: dict[str, int], undated: int
) -> None:
    totals, left_out, note = chart(spring, query)
    assert totals == months
    assert left_out == undated
    if undated:
        assert f"Not counted: {undated} story found in this period whose event no outlet" in note
    else:
        assert "Not counted" not in note


def test_the_chart_covers_the_last_twelve_months_or_at_most_ten_years(
    spring: TestClient,
) -> None:
    totals, _, _ = chart(spring, "until=2026-04-30")
    assert (min(totals), max(totals), len(totals)) == ("2025-05", "2026-04", 12)
    assert sum(totals.values()) == 3
    totals, _, note = chart(spring, "since=2000-01-01&until=2026-04-30")
    assert len(totals) == 120 and min(totals) == "2016-05"
    assert "longer than 120 months: its latest 120 are shown" in note
    totals, _, _ = chart(spring, "")  # the last 12 months to today
    assert len(totals) == 12


def test_feed_entries_give_each_reports_link_and_time(store: Store) -> None:
    """A feed reader shows what an advocate can cite without opening the page: each report's
    outlet, publication time (or "undated (fetched …)", never a fetch time as a date) and
    link. Before, an entry said only "reported by A, B"."""
    from watcher.web import create_app

    config = _undated_then_dated(store)
    with TestClient(create_app(store, config)) as c:
        (entry,) = feedparser.parse(c.get("/feed.atom").content).entries
        (item,) = c.get("/feed.json").json()["items"]
        (utc,) = c.get("/feed.json?tz=UTC").json()["items"]
    related = [link.href for link in entry.links if link.rel == "related"]
    assert related == ["https://e.org/w", "https://e.org/u"]  # the first report first
    content = BeautifulSoup(entry.content[0].value, "html.parser")
    lines = [li.get_text(" ", strip=True) for li in content.select("li")]
    assert lines == [
        "데일리NK (en) · 2026-12-03 15:00 KST · "
        "China repatriates 60 North Korean defectors via Dandong",
        "Yonhap (en) · undated (fetched 2026-12-03 17:04 KST) · "
        "China repatriates 60 North Korean defectors",
    ]
    assert [a["href"] for a in content.select("li a")] == related
    assert item["external_url"] == "https://e.org/w"
    assert item["content_text"].splitlines()[1:] == [
        "• 데일리NK (en), 2026-12-03 15:00 KST: China repatriates 60 North Korean defectors "
        "via Dandong <https://e.org/w>",
        "• Yonhap (en), undated (fetched 2026-12-03 17:04 KST): China repatriates 60 North "
        "Korean defectors <https://e.org/u>",
    ]
    assert "li" in item["content_html"] and item["summary"].startswith("Forced repatriation")
    assert "2026-12-03 06:00 UTC" in utc["content_text"]  # the zone the reader subscribed in


def test_a_search_feeds_item_entry_gives_its_link_and_time(store: Store) -> None:
    from watcher.web import create_app

    fetched = datetime(2026, 12, 3, 8, 4, tzinfo=UTC)
    config = saved(store, report("https://e.org/v", "Cold wave in Shenyang", None, fetched))
    with TestClient(create_app(store, config)) as c:
        (entry,) = feedparser.parse(c.get("/feed.atom?q=shenyang").content).entries
    assert [link.href for link in entry.links if link.rel == "related"] == ["https://e.org/v"]
    assert "Yonhap (en) · undated (fetched 2026-12-03 17:04 KST)" in entry.content[0].value


def test_an_approximate_count_shows_the_outlets_hedge(store: Store) -> None:
    """A story of "중국, 탈북민 600여명 강제북송" (about 600) is "~600 people" on its timeline
    card and page and in the feeds, and the API gives people 600 with people_approximate."""
    from watcher.pipeline import match_items
    from watcher.routing import Alerting
    from watcher.rules import compile_rules
    from watcher.web import create_app

    config = load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "w.yaml", {}).config
    store.sync_sources(config.sources, NOW)
    report = Item(
        key="https://d.org/600",
        source_id="dailynk-ko",
        url="https://d.org/600",
        title="중국, 탈북민 600여명 강제북송",
        text="중국 당국이 탈북민 600여명을 북송했다.",
        lang="ko",
        published_at=NOW - timedelta(hours=1),
        published_raw=None,
        fetched_at=NOW,
    )
    matches = match_items(compile_rules(config), [report], ())
    store.save_items([report], now=NOW, matches=matches, alerting=Alerting.from_config(config))
    with TestClient(create_app(store, config)) as c:
        (card,) = soup(c.get("/")).select("article.story")
        assert "~600 people" in card.get_text(" ", strip=True)
        (story,) = c.get("/api/stories").json()["stories"]
        assert (story["people"], story["people_approximate"]) == (600, True)
        one = c.get(f"/api/stories/{story['id']}").json()
        assert (one["people"], one["people_approximate"]) == (600, True)
        assert "~600 people" in soup(c.get(f"/stories/{story['id']}")).get_text(" ", strip=True)
        (entry,) = feedparser.parse(c.get("/feed.atom").content).entries
        assert "~600 people" in entry.summary
        (item,) = c.get("/feed.json").json()["items"]
        assert "~600 people" in (item.get("content_html", "") + item.get("summary", ""))
        spec = c.get("/openapi.json").json()["paths"]["/api/stories"]["get"]["responses"]
        listed = spec["200"]["content"]["application/json"]["schema"]["properties"]["stories"]
        assert listed["items"]["properties"]["people_approximate"] == {"type": "boolean"}


@pytest.mark.parametrize("raw", ["2026-12-05", "Fri, 04 Dec 2026 04:00:00 +0000"])
def test_an_item_dated_in_the_future_shows_its_fetch_time_and_the_date_given(
    store: Store, raw: str
) -> None:
    from watcher.items import make_item
    from watcher.web import create_app

    fetched = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)  # 01:00 on the 4th in Seoul
    ahead = make_item(
        source_id="yonhap",
        title="China repatriates 9 North Korean defectors",
        link="https://e.org/ahead",
        summary="China repatriated nine North Korean defectors.",
        date_raw=raw,
        zone="Asia/Seoul",
        lang="en",
        fetched_at=fetched,
    )
    config = saved(store, ahead)
    with TestClient(create_app(store, config)) as c:
        story = soup(c.get(soup(c.get("/")).select_one("article h3 a")["href"]))
        meta = soup(c.get(story.select_one("a[href^='/items/']")["href"])).select_one(".meta")
    assert meta is not None
    shown = meta.get_text(" ", strip=True)
    assert f"(when fetched: the date given, {raw}, was in the future)" in shown, shown
    assert "2026-12-04 01:00" in shown and "no time given" not in shown, shown
