"""A key in a source's url (`${FEED_KEY}`) is fetched with, and never kept or shown: the
database stores the url as sources.yaml writes it, and the API, the pages and `sources list`
show `***` in its place. On SQLite and PostgreSQL, against a real local HTTP server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from starlette.testclient import TestClient

from tests.helpers import T0, cycle, rss, watcher
from tests.httpserver import FeedServer
from watcher import log
from watcher.config import load_config_text
from watcher.pipeline import check_health
from watcher.store import Store
from watcher.store import tables as t
from watcher.web import create_app

KEY = "fk-93c1d7e0a4b2"
ENV = {"FEED_KEY": KEY}


def load(sources: list[dict[str, Any]], env: dict[str, str] = ENV):
    doc = {
        "sources": sources,
        "settings": {"retries": 1, "jitter": 0, "allow_private_addresses": True},
    }
    return load_config_text(yaml.safe_dump(doc), "sources.yaml", env)


@pytest.mark.parametrize(
    ("written", "env", "fetched", "shown"),
    [
        (
            "https://e.org/f?key=${FEED_KEY}",
            ENV,
            f"https://e.org/f?key={KEY}",
            "https://e.org/f?key=***",
        ),
        ("https://e.org/f?key=${NO_SUCH:-public}", {}, "https://e.org/f?key=public", None),
        (
            "https://${U}:${P}@e.org/f",
            {"U": "reader", "P": "pa55word"},
            None,
            "https://***@e.org/f",
        ),
        ("https://reader:pa55@e.org/f", {}, None, "https://***@e.org/f"),
        ("https://e.org/f?q=$${literal}", {}, "https://e.org/f?q=${literal}", None),
        ("https://e.org/f", {}, None, None),
    ],
    ids=["key", "default", "user-info-vars", "user-info-written", "escaped", "plain"],
)
def test_a_source_keeps_its_url_as_written(
    written: str, env: dict[str, str], fetched: str | None, shown: str | None
) -> None:
    (source,) = load([{"id": "s", "kind": "feed", "url": written}], env).config.sources
    assert source.written_url == written
    if fetched is not None:
        assert source.url == fetched
    assert source.shown_url == (shown or written).replace("${NO_SUCH:-public}", "***").replace(
        "$${literal}", "$***"
    )
    for value in env.values():
        assert value not in source.shown_url


def test_the_file_cannot_set_the_written_url() -> None:
    from watcher.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown key"):
        load([{"id": "s", "kind": "feed", "url": "https://e.org/f", "_written_url": "x"}])


def _database_text(store: Store) -> str:
    """Every value of every table, as one text."""
    with store.engine.connect() as conn:
        return "\n".join(
            repr(tuple(row))
            for table in t.metadata.sorted_tables
            for row in conn.execute(select(table))
        )


def test_a_poll_fetches_with_the_key_and_stores_the_url_as_written(store: Store) -> None:
    with FeedServer() as server:
        server.route("/feed", body=rss([("First report", "https://e.org/1")]))
        loaded = load([{"id": "keyed", "kind": "feed", "url": server.url("/feed?key=${FEED_KEY}")}])
        reports, _ = cycle(loaded.config, store)
        assert reports["keyed"].error is None
        (hit,) = server.hits("/feed")
    assert hit.path == f"/feed?key={KEY}"  # fetched with the real key
    with store.engine.connect() as conn:
        stored = conn.execute(select(t.sources.c.url)).scalar_one()
    assert stored == server.url("/feed?key=${FEED_KEY}")
    assert KEY not in _database_text(store)
    assert store.source_states()["keyed"].items_stored == 1


def test_an_address_stored_expanded_is_kept_as_written_without_losing_its_state(
    store: Store,
) -> None:
    """A database from before: the expanded url is replaced by the written one, and the
    validators (the same address) stay; a rotated key changes nothing stored."""
    written = "https://e.org/f?key=${FEED_KEY}"
    loaded = load([{"id": "keyed", "kind": "feed", "url": written}])
    store.sync_sources(loaded.config.sources, T0)
    with store.engine.begin() as conn:
        conn.execute(t.sources.update().values(url=f"https://e.org/f?key={KEY}", etag='"v1"'))
    store.sync_sources(loaded.config.sources, T0)
    rotated = load([{"id": "keyed", "kind": "feed", "url": written}], {"FEED_KEY": "fk-rotated-77"})
    store.sync_sources(rotated.config.sources, T0)
    state = store.source_states()["keyed"]
    assert (state.url, state.etag) == (written, '"v1"')
    moved = load([{"id": "keyed", "kind": "feed", "url": "https://e.org/g?key=${FEED_KEY}"}])
    store.sync_sources(moved.config.sources, T0)
    state = store.source_states()["keyed"]
    assert (state.url, state.etag) == ("https://e.org/g?key=${FEED_KEY}", None)


@pytest.mark.e2e
def test_the_api_pages_and_sources_list_never_show_the_key(
    store: Store, db_url: str, tmp_path
) -> None:
    with FeedServer() as server:
        server.route("/feed", body=rss([("First report", "https://e.org/1")]))
        # an outlet that moved, to an address that carries the key too
        server.route("/old", status=301, headers={"Location": f"/new?key={KEY}"})
        server.route("/new", body=rss([("Second report", "https://e.org/2")]))
        sources = [
            {"id": "keyed", "kind": "feed", "url": server.url("/feed?key=${FEED_KEY}")},
            {"id": "moved", "kind": "feed", "url": server.url("/old?key=${FEED_KEY}")},
        ]
        loaded = load(sources)
        cycle(loaded.config, store)
        check_health(store, loaded.config, T0)  # keeps "moved", with the target as reason
        assert len(server.hits("/new")) == 1
        cfg = tmp_path / "sources.yaml"
        cfg.write_text(
            yaml.safe_dump({"sources": sources, "settings": {"allow_private_addresses": True}})
        )
        listing = watcher("--config", str(cfg), "--db", db_url, "sources", "list", env=ENV)
        tested = watcher("--config", str(cfg), "sources", "test", "keyed", env=ENV)

    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.startswith(f"keyed: {server.url('/feed?key=***')} -> HTTP 200")
    assert listing.returncode == 0, listing.stderr
    assert KEY not in listing.stdout + listing.stderr + tested.stdout + tested.stderr
    moved_line = next(line for line in listing.stdout.splitlines() if line.startswith("moved"))
    assert "permanently redirected to" in moved_line and "/new?key=***" in moved_line

    log.add_secrets(loaded.secrets)  # as `watcher serve` does when it loads the file
    with TestClient(create_app(store, loaded.config)) as c:
        api = c.get("/api/sources")
        page = c.get("/sources")
    assert api.status_code == page.status_code == 200
    assert KEY not in api.text and KEY not in page.text
    urls = {s["id"]: s["url"] for s in api.json()["sources"]}
    assert urls == {
        "keyed": server.url("/feed?key=***"),
        "moved": server.url("/old?key=***"),
    }
    assert "/new?key=***" in page.text  # the health reason, redacted


def test_a_redirect_that_carries_the_key_is_stored_and_told_without_it(store: Store) -> None:
    with FeedServer() as server:
        server.route("/old", status=301, headers={"Location": f"/new?key={KEY}"})
        server.route("/new", body=rss([("Second report", "https://e.org/2")]))
        sources = [{"id": "moved", "kind": "feed", "url": server.url("/old?key=${FEED_KEY}")}]
        loaded = load(sources)
        log.add_secrets(loaded.secrets)  # as `watcher run` does when it loads the file
        cycle(loaded.config, store)
        check_health(store, loaded.config, T0)
    with store.engine.connect() as conn:
        row = conn.execute(select(t.sources).where(t.sources.c.id == "moved")).one()
    assert row.moved_to == server.url("/new?key=***")
    assert KEY not in (row.health_reason or "") and "/new?key=***" in (row.health_reason or "")


def test_an_items_link_never_carries_the_sources_key(store: Store) -> None:
    """An API whose items link to `#1` or `?` (which read against the API's address would be
    that address, key and all) or echo the key in their links: no item takes the source's
    address, and no stored link or key holds the key, so no feed, API answer, alert, export
    or evidence record can show it. The items stay themselves at the next poll."""
    entries = [
        {"t": "Defectors held in Shenyang", "u": "#1", "id": "71"},
        {"t": "Second report on the detentions", "u": "?"},
        {"t": "Third report, linked with the key", "u": f"/story/3?key={KEY}"},
    ]
    with FeedServer() as server:
        server.route(
            "/api", body=json.dumps({"data": entries}).encode(), content_type="application/json"
        )
        source = {
            "id": "api",
            "kind": "json",
            "url": server.url("/api?key=${FEED_KEY}"),
            "items": "data",
            "fields": {"title": "t", "url": "u", "id": "id"},
        }
        loaded = load([source])
        reports, _ = cycle(loaded.config, store)
        assert reports["api"].error is None and reports["api"].new == 3
        # the same entries in another order: parsed again, nothing new
        server.route(
            "/api",
            body=json.dumps({"data": entries[::-1]}).encode(),
            content_type="application/json",
        )
        reports, _ = cycle(loaded.config, store)
        assert reports["api"].error is None and reports["api"].new == 0
    assert KEY not in _database_text(store)
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.items.c.key, t.items.c.url)).all()
    urls = sorted(str(url) for _, url in rows)
    assert urls == ["None", "None", server.url("/story/3?key=***")]
    assert "api:71" in {key for key, _ in rows}
    # the web is not relied on: no secret is registered for its redaction here
    with TestClient(create_app(store, loaded.config)) as c:
        answer = c.get("/api/items?q=defectors")
    assert answer.status_code == 200 and KEY not in answer.text


# --------------------------------------------------------------------------- redirects

API_KEY = "ak-5f0e9b71c2d8"


async def _fetch(source: Any) -> Any:
    from watcher.fetch import Fetcher, FetchLimits
    from watcher.pipeline import request_for

    async with Fetcher(FetchLimits(allow_private=True, retries=0)) as fetcher:
        return await fetcher.fetch(request_for(source, None))


async def test_a_sources_headers_go_only_to_its_own_site_when_it_redirects() -> None:
    with FeedServer() as site, FeedServer() as elsewhere:
        elsewhere.route("/feed", body=rss([("Moved report", "https://e.org/1")]))
        site.route("/old", status=302, headers={"Location": "/feed"})  # same origin
        site.route("/feed", status=302, headers={"Location": elsewhere.url("/feed")})
        (source,) = load(
            [
                {
                    "id": "keyed",
                    "kind": "feed",
                    "url": site.url("/old"),
                    "headers": {"X-Api-Key": "${API_KEY}", "Referer": "https://e.org/"},
                }
            ],
            {"API_KEY": API_KEY},
        ).config.sources
        result = await _fetch(source)
        assert result.error is None and result.final_url == elsewhere.url("/feed")
        assert [hit.headers.get("X-Api-Key") for hit in site.requests] == [API_KEY, API_KEY]
        (hit,) = elsewhere.requests
    assert API_KEY not in repr(hit.headers) and "Referer" not in hit.headers
    assert hit.headers["User-Agent"].startswith("watcher/")


async def test_a_source_that_moved_to_another_site_still_gets_its_304() -> None:
    """The validators came from where the redirect leads (an http→https or www move): they
    go on to that site, so an unchanged feed is not downloaded again on every poll."""
    from dataclasses import replace

    from watcher.fetch import Fetcher, FetchLimits
    from watcher.pipeline import request_for

    with FeedServer() as site, FeedServer() as elsewhere:
        body = rss([("Moved report", "https://e.org/1")])
        elsewhere.route("/feed", body=body, etag='"v1"')
        site.route("/feed", status=301, headers={"Location": elsewhere.url("/feed")})
        (source,) = load([{"id": "moved", "kind": "feed", "url": site.url("/feed")}]).config.sources
        async with Fetcher(FetchLimits(allow_private=True, retries=0)) as fetcher:
            first = await fetcher.fetch(request_for(source, None))
            again = replace(request_for(source, None), etag=first.etag)
            second = await fetcher.fetch(again)
        sent = [hit.headers.get("If-None-Match") for hit in elsewhere.requests]
    assert first.status == 200 and first.etag == '"v1"'
    assert second.not_modified and second.status == 304
    assert sent == [None, '"v1"']


@pytest.mark.parametrize("status", [307, 308])
async def test_a_post_body_is_never_sent_to_another_site(status: int) -> None:
    with FeedServer() as site, FeedServer() as elsewhere:
        elsewhere.route("/api", body=b'{"data": []}', content_type="application/json")
        site.route("/api", status=status, headers={"Location": elsewhere.url("/api")})
        site.route("/v1", status=status, headers={"Location": "/api2"})  # same origin
        site.route("/api2", body=b'{"data": []}', content_type="application/json")
        api = {
            "kind": "json",
            "method": "POST",
            "items": "data",
            "fields": {"title": "t", "url": "u"},
        }
        body = {"appname": "${APPNAME}"}
        away, home = load(
            [
                {"id": "away", "url": site.url("/api"), "body": body, **api},
                {"id": "home", "url": site.url("/v1"), "body": body, **api},
            ],
            {"APPNAME": API_KEY},
        ).config.sources
        refused = await _fetch(away)
        kept = await _fetch(home)
        assert elsewhere.requests == []
        sent = site.hits("/api2")
    assert refused.error == (
        f"refused: a {status} redirect to another site ({elsewhere.url('')}) would send the "
        "POST body there; set the source's url to where it leads if that site should get it"
    )
    assert kept.error is None and [hit.body for hit in sent] == [
        f'{{"appname":"{API_KEY}"}}'.encode()
    ]
