"""Search on both databases: the index (stemmed English, CJK bigrams, aliases across
languages), story-centred results with cursor paging, the same search in the API and feeds,
hostile input, the chart that counts stories by event date, and handlers off the event loop."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

import feedparser
import pytest
from bs4 import BeautifulSoup
from sqlalchemy import insert, select, update
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.helpers import NOW, item, seed
from watcher.store import Store
from watcher.store import search as index
from watcher.store import tables as t
from watcher.web import create_app

KST = ZoneInfo("Asia/Seoul")

#: Beside the seeded three (tests/helpers.py): Shenyang in English and in Korean, and an
#: item no rule matches (it is in no story).
MORE = [
    item("https://e.org/4", "yonhap", "Four North Korean defectors detained in Shenyang", "en", 5, "https://e.org/4"),
    item("https://d.org/5", "dailynk-ko", "선양서 탈북민 일가족 체포", "ko", 4, "https://d.org/5"),
    item("https://e.org/6", "yonhap", "Cold wave reaches Shenyang", "en", 3, "https://e.org/6"),
]  # fmt: skip


@pytest.fixture
def app(store: Store):
    from watcher.pipeline import match_items
    from watcher.routing import Alerting
    from watcher.rules import compile_rules

    config = seed(store)
    matcher, alerting = compile_rules(config), Alerting.from_config(config)
    for one in MORE:
        store.save_items(
            [one],
            now=one.fetched_at,
            matches=match_items(matcher, [one], config.source(one.source_id).tags),
            alerting=alerting,
        )
    return create_app(store, config, now=lambda: NOW)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def item_id(store: Store, key: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(t.items.c.id).where(t.items.c.key == key)).scalar_one())


def story_of(store: Store, key: str) -> int | None:
    with store.engine.connect() as conn:
        return conn.execute(
            select(t.story_items.c.story_id).where(t.story_items.c.item_id == item_id(store, key))
        ).scalar()


def found_keys(client: TestClient, q: str, **params: str) -> list[str]:
    response = client.get("/api/items", params={"q": q, **params})
    assert response.status_code == 200, response.text
    # the seeded Korean report's link is javascript: (tests/helpers.py), which the API gives as
    # null, as every output refuses such a link: name it by its key
    return [i["url"] or KEYS[i["title"]] for i in response.json()["items"]]


KEYS = {"中, 탈북민 60여명 강제북송": "https://d.org/2"}


def test_an_english_word_finds_its_other_forms(client: TestClient) -> None:
    assert found_keys(client, "repatriation") == ["https://e.org/1"]  # "repatriates"
    assert found_keys(client, "detaining") == ["https://e.org/3", "https://e.org/4"]
    assert found_keys(client, "repatri*") == ["https://e.org/1"]


def test_a_place_matches_its_spellings_in_other_languages(client: TestClient) -> None:
    korean = found_keys(client, "선양")
    assert set(korean) == {"https://d.org/5", "https://e.org/4", "https://e.org/6"}
    assert "https://d.org/5" in found_keys(client, "Shenyang")
    assert set(found_keys(client, "瀋陽")) == set(korean)
    # the alias is a spelling, not any text: 선 alone is not Shenyang
    assert found_keys(client, "쿤밍") == ["https://e.org/3"]  # Kunming


def test_two_korean_characters_find_their_substring(client: TestClient) -> None:
    assert found_keys(client, "북송") == ["https://d.org/2"]  # inside 강제북송
    assert found_keys(client, "일가") == ["https://d.org/5"]  # inside 일가족
    assert found_keys(client, "탈북") == ["https://d.org/5", "https://d.org/2"]  # 탈북민
    assert found_keys(client, "강제북송") == ["https://d.org/2"]
    assert found_keys(client, "북송강제") == []  # the bigrams must be in a row
    assert found_keys(client, "선") == ["https://d.org/5"]  # one character: 선양서


def test_phrases_exclusions_and_filters(client: TestClient, store: Store) -> None:
    assert found_keys(client, '"north korean defectors"') == [
        "https://e.org/3",
        "https://e.org/4",
        "https://e.org/1",
    ]
    assert found_keys(client, '"defectors north korean"') == []
    assert found_keys(client, "defectors -kunming") == ["https://e.org/4", "https://e.org/1"]
    assert found_keys(client, "Shenyang", lang="ko") == ["https://d.org/5"]
    assert found_keys(client, "Shenyang", source="dailynk-ko") == ["https://d.org/5"]
    assert found_keys(client, "defectors", event="detention") == [
        "https://e.org/3",
        "https://e.org/4",
    ]
    since = (NOW - timedelta(hours=4, minutes=30)).isoformat()
    assert found_keys(client, "Shenyang", since=since) == ["https://e.org/6", "https://d.org/5"]
    until = (NOW - timedelta(hours=4, minutes=30)).isoformat()
    assert found_keys(client, "Shenyang", until=until) == ["https://e.org/4"]


def test_results_are_stories_with_the_matching_report_highlighted(
    client: TestClient, store: Store
) -> None:
    page = BeautifulSoup(client.get("/search", params={"q": "repatriation"}).text, "html.parser")
    (result,) = page.select("section.result")
    story_id = story_of(store, "https://e.org/1")
    assert story_id is not None
    assert result.select_one("article.story")["data-story"] == str(story_id)
    (hit,) = result.select("tr.hit")
    assert hit.select_one("mark").get_text() == "repatriates"
    assert hit.select_one("td.excerpt mark").get_text() == "repatriates"  # where, in the text
    assert hit.find("script") is None and hit.find("b") is None  # the headline stays text
    link = hit.select_one("a")["href"]
    assert link.startswith(f"/stories/{story_id}?hit={item_id(store, 'https://e.org/1')}")
    story = BeautifulSoup(client.get(link).text, "html.parser")
    (marked,) = story.select("tr.hit")
    assert marked["id"] == f"report-{item_id(store, 'https://e.org/1')}"
    # an item in no story links to its own page
    page = BeautifulSoup(client.get("/search", params={"q": "cold wave"}).text, "html.parser")
    (link,) = [a["href"] for a in page.select("section.result tr.hit a")]
    assert link == f"/items/{item_id(store, 'https://e.org/6')}"
    own = BeautifulSoup(client.get(link).text, "html.parser")
    assert "Cold wave reaches Shenyang" in own.get_text() and "In no story" in own.get_text()


def test_a_story_shows_once_with_all_its_matching_reports(client: TestClient, store: Store) -> None:
    results = client.get("/api/search", params={"q": "60"}).json()["results"]
    (only,) = results  # the English and the Korean report of one story both say 60
    assert sorted(only["hits"]) == sorted(
        [item_id(store, "https://e.org/1"), item_id(store, "https://d.org/2")]
    )


def _many(store: Store) -> tuple[set[int], dict[int, int]]:
    """41 items saying "famine", interleaved with others; every third in a story of three or
    four reports spread over the history (so a story's hits fall on several pages)."""
    titles = [f"Famine report {n}" if n % 2 else f"Harvest {n}" for n in range(82)]
    items = [
        item(f"https://f.org/{n}", "yonhap", t, "en", 100 - n, None) for n, t in enumerate(titles)
    ]
    store.save_items(items, now=NOW)
    with store.engine.begin() as conn:
        ids = {
            row.key: row.id
            for row in conn.execute(select(t.items.c.key, t.items.c.id).where(t.items.c.key.like("https://f.org/%")))
        }  # fmt: skip
        famine = [ids[f"https://f.org/{n}"] for n in range(1, 82, 2)]
        grouped = famine[::3]
        stories: dict[int, int] = {}
        for k in range(0, len(grouped), 4):
            members = grouped[k : k + 4]
            story_id = conn.execute(
                insert(t.stories)
                .values(
                    events=json.dumps(["detention"]),
                    severity="medium",
                    title="Famine",
                    places="[]",
                    first_seen_at=NOW,
                    updated_at=NOW,
                    revision=1,
                    item_count=len(members),
                    event_at=NOW,
                )
                .returning(t.stories.c.id)
            ).scalar_one()
            for m in members:
                stories[m] = story_id
                conn.execute(
                    insert(t.story_items).values(
                        story_id=story_id, item_id=m, added_at=NOW, revision=1
                    )
                )
    return set(famine), stories


@pytest.mark.parametrize(
    ("limit", "probe"),
    [(1, None), (4, None), (7, None), (4, 5), (7, 30)],
    ids=["1", "4", "7", "4-newest-first", "7-newest-first"],
)
def test_paging_returns_every_hit_exactly_once(
    client: TestClient, store: Store, limit: int, probe: int | None, monkeypatch
) -> None:
    if probe is not None:  # the way for a common word: newest documents first
        monkeypatch.setattr(index, "PG_COMMON", -1)
        monkeypatch.setattr(index, "PG_PROBE", probe)
        monkeypatch.setattr(index, "SQLITE_COMMON", 0)
        monkeypatch.setattr(index, "SQLITE_PROBE", probe)
    famine, stories = _many(store)
    seen_hits: list[int] = []
    seen_stories: list[int] = []
    cursor: int | None = None
    for _ in range(100):
        params = {"q": "famine", "limit": str(limit)} | ({"cursor": str(cursor)} if cursor else {})
        page = client.get("/api/search", params=params).json()
        assert len(page["results"]) <= limit
        for r in page["results"]:
            seen_hits += r["hits"]
            if r["story"]:
                seen_stories.append(r["story"]["id"])
                assert {stories[h] for h in r["hits"]} == {r["story"]["id"]}
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert sorted(seen_hits) == sorted(famine)  # every hit, none twice
    assert len(seen_stories) == len(set(seen_stories)) == len(set(stories.values()))
    # the HTML pages follow the same cursor
    html = client.get("/search", params={"q": "famine"}).text
    more = BeautifulSoup(html, "html.parser").select_one('a[rel="next"]')["href"]
    assert "cursor=" in more and client.get(more).status_code == 200


def test_newest_first_finds_what_the_index_finds(
    client: TestClient, store: Store, monkeypatch
) -> None:
    expected = {q: found_keys(client, q) for q in ("defectors", "선양", "detaining -kunming")}
    filtered = found_keys(client, "Shenyang", lang="en")
    monkeypatch.setattr(index, "PG_COMMON", -1)
    monkeypatch.setattr(index, "PG_PROBE", 2)
    monkeypatch.setattr(index, "SQLITE_COMMON", 0)
    monkeypatch.setattr(index, "SQLITE_PROBE", 2)
    assert {q: found_keys(client, q) for q in expected} == expected
    assert (
        found_keys(client, "Shenyang", lang="en")
        == filtered
        == ["https://e.org/6", "https://e.org/4"]
    )


def test_the_index_follows_an_edited_item(store: Store) -> None:
    seed(store)
    title = "Police free 7 defectors in Dalian"
    edited = item("https://e.org/3", "yonhap", title, "en", 2, "https://e.org/3")
    result = store.save_items([edited], now=NOW)
    assert len(result.updated) == 1
    with store.engine.connect() as conn:

        def ids(q: str) -> list[int]:
            return index.matching_ids(conn, index.parse(q))

        assert ids("Dalian") == [item_id(store, "https://e.org/3")]
        assert ids("Kunming") == []


def test_the_feeds_carry_a_saved_search(client: TestClient, store: Store) -> None:
    atom = feedparser.parse(client.get("/feed.atom", params={"q": "선양"}).content)
    assert not atom.bozo
    links = [e.link for e in atom.entries]
    assert f"http://127.0.0.1:8080/items/{item_id(store, 'https://e.org/6')}" in links
    story = story_of(store, "https://d.org/5")
    assert any(link.startswith(f"http://127.0.0.1:8080/stories/{story}?hit=") for link in links)
    # the link points at the report that matched; the entry's id is the story's, which stays
    # the same as reports join (or a reader would show the story again)
    ids = [e.id for e in atom.entries]
    assert f"http://127.0.0.1:8080/stories/{story}" in ids
    assert not any("?hit=" in i for i in ids)
    feed = client.get("/feed.json", params={"q": "repatriation"}).json()
    assert all("?hit=" not in i["id"] for i in feed["items"])
    assert [i["_watcher"]["id"] for i in feed["items"]] == [story_of(store, "https://e.org/1")]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/search?q=" + "선" * 501, 400),
        ("/api/search?q=" + "a " * 300, 400),
        ("/api/search?q=" + " ".join(f"w{n}" for n in range(40)), 400),  # too many words
        ("/search?q=famine&cursor=" + "9" * 40, 400),
        ("/api/search?q=famine&cursor=-3", 400),
        ("/api/items?q=famine&cursor=abc", 400),
        ("/feed.atom?q=x&cursor=1e9", 400),
        ("/search?q=x&page=" + "9" * 30, 400),
        ("/items/" + "9" * 30, 404),
        ("/items/abc", 404),
        ("/items/999999", 404),
        ("/stories/1?hit=" + "9" * 40, 200),
    ],
)
def test_out_of_range_search_input_is_refused_not_a_server_error(
    client: TestClient, path: str, status: int
) -> None:
    assert client.get(path).status_code == status


@pytest.mark.parametrize(
    "q",
    [
        '"unclosed phrase',
        'NEAR(a b) OR "x" AND y*',
        "') | !(' & 'x':* <-> \\",
        "-only -exclusions",
        "* - -- ** \"\" '' ::",
        "col:value ^start {a b} [c]",
        "\x00\x01 control",
        "😀 emoji 𠀋",
    ],
)
def test_query_syntax_is_never_sql_or_index_syntax(client: TestClient, q: str) -> None:
    for path in ("/search", "/api/search", "/api/items", "/feed.atom"):
        assert client.get(path, params={"q": q}).status_code == 200, (path, q)


def test_the_chart_counts_stories_by_event_month_not_tags(client: TestClient, store: Store) -> None:
    story_a = story_of(store, "https://e.org/1")
    earlier = NOW - timedelta(days=40)
    with store.engine.begin() as conn:
        # a story of two event types still counts once, under its main event
        conn.execute(
            update(t.stories)
            .where(t.stories.c.id == story_a)
            .values(events=json.dumps(["detention", "forced_repatriation"]))
        )
        stories = list(conn.execute(select(t.stories.c.id)).scalars())
        # one story's event was 40 days ago (its outlet dated it so) although it was first
        # seen now
        last = max(stories)
        conn.execute(update(t.stories).where(t.stories.c.id == last).values(event_at=earlier))
        reports = select(t.story_items.c.item_id).where(t.story_items.c.story_id == last)
        conn.execute(update(t.items).where(t.items.c.id.in_(reports)).values(published_at=earlier))
    page = BeautifulSoup(client.get("/").text, "html.parser")
    rows = {
        tr["data-month"]: [td.get_text() for td in tr.select("td")]
        for tr in page.select("#chart-table tbody tr")
    }
    total = {month: int(cells[-1]) for month, cells in rows.items()}
    with store.engine.connect() as conn:
        at = dict(conn.execute(select(t.stories.c.id, t.stories.c.event_at)).all())
    # each story once (story A has two event types), in the month of its event time
    months = Counter(f"{a.astimezone(KST):%Y-%m}" for a in at.values())  # in the zone
    assert {m: n for m, n in total.items() if n} == months
    assert total[f"{earlier.astimezone(KST):%Y-%m}"] >= 1
    header = [th.get_text() for th in page.select("#chart-table thead th")]
    forced = header.index("Forced repatriation") - 1
    assert (
        int(rows[f"{at[story_a].astimezone(KST):%Y-%m}"][forced]) >= 1
    )  # story A under its main event
    assert len(stories) >= 3


def test_a_story_card_names_its_first_outlet_and_that_outlets_title(
    client: TestClient, store: Store
) -> None:
    story_a = story_of(store, "https://e.org/1")
    with store.engine.begin() as conn:  # a title that is not the first report's
        conn.execute(
            update(t.stories)
            .where(t.stories.c.id == story_a)
            .values(title="中, 탈북민 60여명 강제북송")
        )
    page = BeautifulSoup(client.get(f"/stories/{story_a}").text, "html.parser")
    card = page.select_one("article.story")
    assert card.select_one("h3").get_text().startswith("<script>alert(1)</script><b>China</b>")
    assert "First: Yonhap" in card.get_text(" ", strip=True)


def test_source_counts_are_kept_as_items_are_stored(client: TestClient) -> None:
    counts = {s["id"]: s["items_stored"] for s in client.get("/api/sources").json()["sources"]}
    assert counts == {"yonhap": 4, "dailynk-ko": 2}


def test_every_handler_that_reads_the_database_runs_off_the_event_loop(app) -> None:
    """Plain functions (Starlette runs them in its thread pool), or the searches, which hand
    their work to a thread of their own (at most SEARCH_SLOTS at once), or the corrections
    form, which reads its body in the loop and corrects in the thread pool."""
    web = app.state.web
    searches = {"/search", "/api/search", "/api/items"}
    offloading = {"/stories/{story_id}/corrections"}
    for route in app.routes:
        assert isinstance(route, Route)
        handler = route.endpoint
        if route.path in searches:
            source = inspect.getsource(handler)
            assert "_search_in_thread(" in source and "self.views" not in source, route.path
        elif route.path in offloading:
            source = inspect.getsource(handler)
            assert source.count("run_in_threadpool(") == 1, route.path
            assert ".listing(" not in source and "self.views." not in source.replace(
                "self.views.store", ""
            ), route.path
        else:
            assert not inspect.iscoroutinefunction(handler), route.path
    assert web._search_limiter is None or web._search_limiter.total_tokens >= 1


def test_a_query_parses_into_clauses() -> None:
    q = index.parse('Shenyang "north korean" repatri* -"border reopening" 북송')
    shenyang, phrase, prefix, excluded, korean = q.clauses
    assert ("선양",) in shenyang.alternatives and ("沈阳",) in shenyang.alternatives
    assert phrase.alternatives == (("north", "korean"),)
    assert prefix.prefix and prefix.alternatives == (("repatri",),)
    assert excluded.exclude and excluded.alternatives == (("border", "reopening"),)
    assert korean.alternatives == (("북송",),)
    assert index.parse("tumen river").clauses[0].alternatives[1] == ("두만", "만강")
    assert index.tokens("강제북송을 中") == ["강제", "제북", "북송", "송을", "中"]


def test_the_migration_indexes_the_items_already_stored(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import text

    from watcher.store import migrations_dir

    store = Store.open(db_url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008")
    with store.engine.begin() as conn:  # as a database of before 0009 holds them
        conn.execute(
            text(
                "INSERT INTO sources (id, kind, url, created_at, consecutive_failures)"
                " VALUES ('old', 'feed', 'https://o.org', '2026-11-01 00:00:00', 0)"
            )
        )
        for n, (title, body) in enumerate(
            [("Famine in Hyesan", "reports of hunger"), ("혜산 강제북송", "탈북민 체포 소식")]
        ):
            conn.execute(
                text(
                    "INSERT INTO items (key, source_id, title, text, fetched_at, baseline,"
                    " content_hash) VALUES (:k, 'old', :t, :b, '2026-11-02 00:00:00', false, 'x')"
                ),
                {"k": f"old-{n}", "t": title, "b": body},
            )
    assert store.upgrade()[0] == "0008"  # to the newest, through 0009
    with store.engine.connect() as conn:

        def ids(q: str) -> list[int]:
            return index.matching_ids(conn, index.parse(q))

        assert len(ids("hunger")) == 1 and len(ids("북송")) == 1
        assert len(ids("Hyesan")) == 2  # 혜산 is Hyesan
        count = conn.execute(select(t.sources.c.item_count).where(t.sources.c.id == "old"))
        assert count.scalar() == 2
    store.close()


@pytest.mark.parametrize(
    ("q", "found"),
    [
        ("repatriat*", ["https://p.org/1", "https://p.org/2"]),
        ("repatria*", ["https://p.org/1", "https://p.org/2"]),
        ("repatri*", ["https://p.org/1", "https://p.org/2"]),
        ("authorit*", ["https://p.org/3"]),
        ("detent*", ["https://p.org/3"]),
        ("deten*", ["https://p.org/3"]),
        ("chinese authorit*", ["https://p.org/3"]),
        ("authorit* -detention", []),
        ("강제북*", ["https://p.org/2"]),
        ("강*", ["https://p.org/2"]),
        ("沈*", ["https://p.org/3"]),
        ("repatriatio*", ["https://p.org/1", "https://p.org/2"]),
        ("repatriating*", ["https://p.org/1", "https://p.org/2"]),  # as "repatriating" does
        ("xrepatriat*", []),
    ],
)
def test_a_prefix_finds_the_words_it_starts_whatever_their_stem(
    store: Store, q: str, found: list[str]
) -> None:
    """The index holds stems (repatriation → repatri, authorities → author), which may be
    shorter than what a user types before the *."""
    seed(store)
    store.save_items(
        [
            item("https://p.org/1", "yonhap", "UN urges an end to repatriation", "en", 3, None),
            item("https://p.org/2", "yonhap", "Repatriating escapees: 강제북송", "en", 2, None),
            item("https://p.org/3", "yonhap", "Chinese authorities' detention 沈阳", "en", 1, None),
        ],
        now=NOW,
    )
    with store.engine.connect() as conn:
        ids = index.matching_ids(conn, index.parse(q))
    keys = {item_id(store, f"https://p.org/{n}"): f"https://p.org/{n}" for n in (1, 2, 3)}
    assert sorted(keys[i] for i in ids if i in keys) == found


@pytest.mark.parametrize("probe", [None, 2], ids=["by-index", "newest-first"])
def test_results_are_newest_first_by_publication_not_storage(
    store: Store, probe: int | None, monkeypatch
) -> None:
    """A backlog stored after this week's report (a new source's first poll, late-found
    articles) comes after it; an undated item is placed by its fetch time; paging one by one
    gives each once, in the same order."""
    if probe is not None:  # the way for a common word: the newest items first
        for name in ("PG_COMMON", "SQLITE_COMMON"):
            monkeypatch.setattr(index, name, -1 if name.startswith("PG") else 0)
        for name in ("PG_PROBE", "SQLITE_PROBE"):
            monkeypatch.setattr(index, name, probe)
    seed(store)
    now = item("https://s.org/now", "yonhap", "Detained in Shenyang this week", "en", 1, None)
    store.save_items([now], now=NOW)
    backlog = [
        item(f"https://s.org/{days}", "yonhap", f"Shenyang report {days}", "en", 24 * days, None)
        for days in (400, 30, 200)
    ]
    undated = item("https://s.org/undated", "yonhap", "Shenyang undated", "en", 0.5, None)
    undated = dataclasses.replace(undated, published_at=None, fetched_at=NOW - timedelta(hours=10))
    store.save_items([*backlog, undated], now=NOW)
    expected = [item_id(store, f"https://s.org/{k}") for k in ("now", "undated", 30, 200, 400)]
    with store.engine.connect() as conn:
        q = index.parse("선양")
        assert index.matching_ids(conn, q) == expected
        paged: list[int] = []
        while ids := index.matching_ids(conn, q, before=paged[-1] if paged else None, limit=1):
            paged += ids
    assert paged == expected


def test_a_cursor_whose_item_is_gone_is_refused_not_an_empty_page(
    client: TestClient, store: Store
) -> None:
    # the page ended on an item `db prune` removed since (or a cursor made up): "More results"
    # must not silently show nothing
    first = client.get("/api/items", params={"q": "north", "limit": "1"}).json()
    assert first["items"] and first.get("next_cursor")
    with store.engine.begin() as conn:
        conn.execute(t.items.delete().where(t.items.c.id == int(first["next_cursor"])))
    for path in ("/api/items", "/api/search", "/search"):
        gone = client.get(path, params={"q": "north", "cursor": first["next_cursor"]})
        assert gone.status_code == 400, (path, gone.status_code)
        assert "search again" in gone.text
    assert client.get("/api/items", params={"q": "north", "cursor": "987654321"}).status_code == 400


def test_prefix_completion_is_bounded_however_the_query_is_written() -> None:
    # a completion repeats its phrase once per ending: only short phrases, a few per query
    one = index.parse("repatriat*")
    assert len(one.clauses[0].words) == len(index.SUFFIXES) + 1
    hyphens = index.parse("-".join(["ab"] * 200) + "-abcd*")
    assert hyphens.clauses[0].prefix and hyphens.clauses[0].words == ()
    many = index.parse(" ".join(f"word{chr(97 + n)}x*" for n in range(10)))
    assert sum(bool(c.words) for c in many.clauses) == index.MAX_EXPANDED
    assert len(index.tsquery(many)) < 20_000 and len(index.fts5(many)) < 20_000
