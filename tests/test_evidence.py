"""Evidence: the first-seen bytes of matched reports, kept on both databases, exported as WARC
files that warcio reads, and verified digest by digest."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from warcio.archiveiterator import ArchiveIterator

from tests.helpers import Clock, feed_source, watcher
from tests.httpserver import FeedServer
from watcher.config import load_config_text
from watcher.evidence import Capture, Record, sha256, text_bytes, verify, warc_records
from watcher.fetch import Fetcher, FetchLimits
from watcher.pipeline import run_cycle
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import Store
from watcher.store import tables as t
from watcher.store.evidence import records

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

RULES = {
    "concepts": {
        "nk_people": {"en": ["north korean*"]},
        "sent_back": {"en": ["repatriat*"]},
    },
    "rules": [
        {
            "id": "return",
            "event": "forced_repatriation",
            "all_of": ["nk_people", "sent_back"],
            "severity": "high",
        }
    ],
}


def feed(*entries: tuple[str, str]) -> bytes:
    """An RSS feed in ISO-8859-1 (its bytes must come back as they were, not as UTF-8)."""
    items = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid>"
        "<pubDate>Mon, 23 Nov 2026 08:00:00 +0900</pubDate>"
        f"<description>{title}, caf\xe9 lead</description></item>"
        for title, link in entries
    )
    return (
        '<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><title>T'
        f"</title><link>https://example.org/</link>{items}</channel></rss>"
    ).encode("latin-1")


def run(config, store: Store, clock: Clock) -> None:
    """One poll cycle with the rules, as the daemon runs it."""

    async def go() -> None:
        async with Fetcher(FetchLimits.from_settings(config.settings)) as fetcher:
            await run_cycle(
                config.sources,
                store=store,
                fetcher=fetcher,
                settings=config.settings,
                clock=clock,
                only_due=False,
                matcher=compile_rules(config),
                alerting=Alerting.from_config(config),
            )

    store.sync_sources(config.sources, T0)
    asyncio.run(go())


def with_rules(sources: list[dict]):
    """Like `config_for`, with the rules (loopback feeds: private addresses allowed)."""
    doc = {
        "sources": sources,
        "settings": {"retries": 1, "jitter": 0, "allow_private_addresses": True},
        **RULES,
    }
    return load_config_text(yaml.safe_dump(doc), "e.yaml", {}).config


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


def test_matched_items_keep_their_first_seen_bytes_and_export_as_warc(
    store: Store, server: FeedServer, tmp_path: Path
) -> None:
    body = feed(
        ("China repatriates 60 North Koreans", "https://e.org/1"),
        ("Weather in Seoul", "https://e.org/2"),
    )
    server.route(
        "/f",
        body=body,
        content_type="application/rss+xml; charset=ISO-8859-1",
        headers={"X-Test": "kept"},
    )
    config = with_rules([feed_source(server, "s", "/f")])
    run(config, store, Clock(T0))
    with store.engine.connect() as conn:
        kept = list(records(conn))
        blobs = conn.execute(select(func.count()).select_from(t.evidence_blobs)).scalar_one()
    # Only the matched item (baseline polls included); the response kept byte for byte.
    assert [(r.item_key, r.capture.kind) for r in kept] == [("https://e.org/1", "feed")]
    record = kept[0]
    assert record.capture.body == body and record.body_sha256 == sha256(body)
    assert record.capture.status == 200 and record.capture.final_url == server.url("/f")
    assert ("X-Test", "kept") in record.capture.headers
    assert record.capture.fetched_at == T0
    assert record.text_sha256 == sha256(text_bytes(record.title, record.text))
    assert blobs == 2  # the body and the text, once each
    # The same feed polled again adds nothing: the first-seen record never changes.
    server.route("/f", body=body + b"<!-- changed -->", content_type="application/rss+xml")
    run(config, store, Clock(T0.replace(hour=10)))
    with store.engine.connect() as conn:
        again = list(records(conn))
    assert [(r.body_sha256, r.capture.fetched_at) for r in again] == [(sha256(body), T0)]

    out = tmp_path / "e.warc.gz"
    url = str(store.engine.url.render_as_string(hide_password=False))
    done = watcher(
        "--config", "/nonexistent.yaml", "--db", url, "evidence", "export", "--output", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "1 report written" in done.stdout
    with out.open("rb") as stream:
        found = [
            (r.rec_type, r.rec_headers, r.http_headers, r.content_stream().read())
            for r in ArchiveIterator(stream, check_digests="raise")
        ]
    kinds = [f[0] for f in found]
    assert kinds == ["warcinfo", "response", "request", "metadata"]
    response = found[1]
    assert response[3] == body  # the exact bytes, ISO-8859-1 and all
    assert response[1].get_header("WARC-Payload-Digest").startswith("sha256:")
    assert response[2].get_header("X-Test") == "kept"
    meta = json.loads(found[3][3])
    assert meta["item"] == "https://e.org/1" and meta["body_sha256"] == sha256(body)
    # the outlet's own date, and as it wrote it: what an advocate cites beside the text
    assert meta["published"] == "2026-11-22T23:00:00+00:00"
    assert meta["published_as_written"] == "Mon, 23 Nov 2026 08:00:00 +0900"
    with out.open("rb") as stream:
        assert verify(stream).problems == ()
    ok = watcher("evidence", "verify", str(out))
    assert ok.returncode == 0 and "digests verified" in ok.stdout


def test_an_article_page_is_kept_beside_the_feed(store: Store, server: FeedServer) -> None:
    page = (
        "<html><body><article>"
        + "".join(
            f"<p>China repatriated North Korean escapees, sentence {n} of the report.</p>"
            for n in range(10)
        )
        + "</article></body></html>"
    ).encode()
    server.route("/a/1", body=page, content_type="text/html; charset=utf-8")
    route = server.route("/f", body=feed(("Old", server.url("/a/0"))))
    config = with_rules([feed_source(server, "s", "/f", fetch_article=True)])
    run(config, store, Clock(T0))  # baseline: articles are not fetched
    route.body = feed(("China repatriates North Koreans", server.url("/a/1")), ("Old", "x"))
    run(config, store, Clock(T0.replace(hour=10)))
    with store.engine.connect() as conn:
        kinds = {(r.item_key, r.capture.kind): r for r in records(conn)}
    article = kinds[(server.url("/a/1"), "article")]
    assert article.capture.body == page
    assert kinds[(server.url("/a/1"), "feed")].capture.body == route.body
    assert "sentence 9 of the report" in article.text


def test_the_item_page_links_its_evidence_and_says_what_each_digest_is_of(
    store: Store, server: FeedServer
) -> None:
    """The item page is the record an advocate cites: it links the item's own WARC file, and
    each SHA-256 says what it hashes (the whole feed the item came in, or its article page)."""
    from bs4 import BeautifulSoup
    from starlette.testclient import TestClient

    from watcher.web import create_app

    page = b"<html><body><article><p>China repatriated North Koreans.</p></article></body></html>"
    server.route("/a/1", body=page, content_type="text/html; charset=utf-8")
    route = server.route("/f", body=feed(("Old", server.url("/a/0"))))
    config = with_rules([feed_source(server, "s", "/f", fetch_article=True)])
    run(config, store, Clock(T0))
    route.body = feed(
        ("China repatriates North Koreans", server.url("/a/1")),
        ("North Koreans repatriated from Dandong", server.url("/a/2")),  # no page: feed only
        ("Old", "x"),
    )
    run(config, store, Clock(T0.replace(hour=10)))
    with store.engine.connect() as conn:
        ids = dict(conn.execute(select(t.items.c.url, t.items.c.id)).all())
    with TestClient(create_app(store, config)) as client:
        found = ids[server.url("/a/1")]
        item = BeautifulSoup(client.get(f"/items/{found}").text, "html.parser")
        link = item.select_one("#evidence a")
        assert link is not None and link["href"] == f"/items/{found}/evidence.warc.gz"
        lines = [li.get_text(" ", strip=True) for li in item.select("#evidence li")]
        assert len(lines) == 2
        feed_line, article_line = sorted(lines, key=lambda line: "article" in line)
        assert feed_line.startswith("the feed it came in, " + server.url("/f"))
        assert sha256(route.body) in feed_line
        assert "of the whole response as fetched, not of this article" in feed_line
        assert article_line.startswith("the article page, " + server.url("/a/1"))
        assert sha256(page) in article_line and "of the page as fetched" in article_line

        download = client.get(link["href"])
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/warc"
        with io.BytesIO(download.content) as stream:
            responses = [
                r.content_stream().read()
                for r in ArchiveIterator(stream)
                if r.rec_type == "response"
            ]
        assert sorted(responses) == sorted([route.body, page])  # this item's records only

        # an item with no evidence (the baseline's) has no link; a missing one is 404
        old = BeautifulSoup(client.get(f"/items/{ids[server.url('/a/0')]}").text, "html.parser")
        assert old.select_one("#evidence") is None
        assert client.get(f"/items/{ids[server.url('/a/0')]}/evidence.warc.gz").status_code == 404
        assert client.get("/items/x/evidence.warc.gz").status_code == 404

        story = client.get(f"/items/{ids[server.url('/a/2')]}")
        story_link = BeautifulSoup(story.text, "html.parser").select_one("a[href^='/stories/']")
        text = BeautifulSoup(client.get(story_link["href"]).text, "html.parser").get_text(" ")
        assert "the feed it came in, fetched" in text and "of the whole response as fetched" in text


def capture(body: bytes = b"<rss>China repatriates 60</rss>") -> Record:
    cap = Capture(
        kind="feed",
        url="https://e.org/feed",
        final_url="https://e.org/feed.xml",
        status=200,
        headers=(("Content-Type", "application/rss+xml"), ("Content-Encoding", "gzip")),
        fetched_at=T0,
        body=body,
    )
    return Record(
        item_key="k",
        item_url="https://e.org/1",
        title="China repatriates 60",
        source_id="s",
        story_id=3,
        capture=cap,
        text="lead",
        body_sha256=sha256(body),
        text_sha256=sha256(text_bytes("China repatriates 60", "lead")),
    )


def test_verify_finds_a_flipped_byte(tmp_path: Path) -> None:
    out = io.BytesIO()
    assert warc_records([capture(), capture()], out, gzip=False) == 2
    data = out.getvalue()
    assert verify(io.BytesIO(data)).problems == ()
    at = data.index(b"China repatriates 60</rss>")
    bad = tmp_path / "bad.warc"
    bad.write_bytes(data[:at] + b"X" + data[at + 1 :])
    with bad.open("rb") as stream:
        problems = verify(stream).problems
    assert any("WARC-Payload-Digest does not match" in p for p in problems)
    done = watcher("evidence", "verify", str(bad))
    assert done.returncode == 1 and "does not match" in done.stderr


def test_verify_finds_a_flipped_byte_in_a_compressed_file(tmp_path: Path) -> None:
    out = io.BytesIO()
    warc_records([capture()], out, gzip=True)
    data = bytearray(out.getvalue())
    good = tmp_path / "good.warc.gz"
    good.write_bytes(bytes(data))
    assert watcher("evidence", "verify", str(good)).returncode == 0
    data[len(data) // 2] ^= 0x01  # inside the compressed response
    bad = tmp_path / "bad.warc.gz"
    bad.write_bytes(bytes(data))
    with bad.open("rb") as stream:
        assert verify(stream).problems
    assert watcher("evidence", "verify", str(bad)).returncode == 1


def test_an_undated_report_has_no_publication_time_in_its_metadata() -> None:
    out = io.BytesIO()
    warc_records([capture()], out, gzip=False)
    (meta,) = [
        json.loads(r.content_stream().read())
        for r in ArchiveIterator(io.BytesIO(out.getvalue()))
        if r.rec_type == "metadata"
    ]
    assert meta["published"] is None and meta["published_as_written"] is None
    assert meta["fetched_at"] == T0.isoformat()


def test_verify_finds_edited_text_and_unreadable_files(tmp_path: Path) -> None:
    out = io.BytesIO()
    warc_records([capture()], out, gzip=False)
    data = out.getvalue().replace(b'"text": "lead"', b'"text": "lEad"')
    assert any("text does not match" in p for p in verify(io.BytesIO(data)).problems)
    assert "not a WARC record" in verify(io.BytesIO(b"not a warc at all\r\n\r\n")).problems[0]
    assert verify(io.BytesIO(b"")).problems == ("no WARC records",)


def test_the_wire_encoding_headers_are_kept_under_other_names() -> None:
    out = io.BytesIO()
    warc_records([capture()], out, gzip=False)
    response = next(
        r for r in ArchiveIterator(io.BytesIO(out.getvalue())) if r.rec_type == "response"
    )
    assert response.http_headers.get_header("Content-Encoding") is None
    assert response.http_headers.get_header("X-Archive-Orig-Content-Encoding") == "gzip"
    assert response.http_headers.get_header("Content-Length") == str(len(capture().capture.body))
    assert response.content_stream().read() == capture().capture.body


def warc_text(data: bytes) -> bytes:
    """Every record of a WARC file as it reads: WARC headers (WARC-Target-URI), HTTP headers
    (a request's line), payload (the metadata's requested_url)."""
    out = b""
    for r in ArchiveIterator(io.BytesIO(data)):
        out += r.rec_headers.to_str().encode()
        if r.http_headers is not None:
            out += r.http_headers.to_str().encode()
        out += r.content_stream().read()
    return out


FEED_KEY = "fk-7a1c93e05b"
APPNAME = "app-secret-4d2e81"


def test_keys_in_a_sources_url_or_params_are_never_kept_or_exported(
    store: Store, server: FeedServer, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    from watcher import log
    from watcher.web import create_app

    server.route(
        "/feed",
        body=feed(("China repatriates 60 North Koreans", "https://e.org/1")),
        content_type="application/rss+xml; charset=ISO-8859-1",
    )
    report = {"t": "North Korean defectors repatriated, API says", "u": "https://e.org/2"}
    server.route(
        "/api", body=json.dumps({"data": [report]}).encode(), content_type="application/json"
    )
    doc = {
        "sources": [
            {"id": "keyed", "kind": "feed", "url": server.url("/feed") + "?key=${FEED_KEY}"},
            {
                "id": "api",
                "kind": "json",
                "url": server.url("/api"),
                "params": {"appname": "${APPNAME}", "page": 1},
                "items": "data",
                "fields": {"title": "t", "url": "u"},
            },
        ],
        "settings": {"retries": 1, "jitter": 0, "allow_private_addresses": True},
        **RULES,
    }
    env = {"FEED_KEY": FEED_KEY, "APPNAME": APPNAME}
    loaded = load_config_text(yaml.safe_dump(doc), "e.yaml", env)
    log.add_secrets(loaded.secrets)  # as `watcher run` does when it loads the file
    run(loaded.config, store, Clock(T0))
    assert {hit.path for hit in server.requests} == {
        f"/feed?key={FEED_KEY}",
        f"/api?appname={APPNAME}&page=1",
    }  # fetched with the keys

    with store.engine.connect() as conn:
        rows = {r.kind + ":" + r.url: r.final_url for r in conn.execute(select(t.evidence))}
        every = repr([tuple(r) for r in conn.execute(select(t.evidence))])
    assert rows == {
        "feed:" + server.url("/feed?key=${FEED_KEY}"): server.url("/feed?key=***"),
        "feed:" + server.url("/api"): server.url("/api?appname=***&page=1"),
    }
    assert FEED_KEY not in every and APPNAME not in every

    out = tmp_path / "e.warc.gz"
    url = str(store.engine.url.render_as_string(hide_password=False))
    done = watcher(
        "--config", "/nonexistent.yaml", "--db", url, "evidence", "export", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    exported = warc_text(out.read_bytes())
    assert b"key=${FEED_KEY}" in exported and b"appname=***" in exported
    assert FEED_KEY.encode() not in exported and APPNAME.encode() not in exported

    with store.engine.connect() as conn:
        stories = sorted({r.story_id for r in records(conn)})
    served = b""
    with TestClient(create_app(store, loaded.config)) as client:  # any reader of the pages
        for story in stories:
            download = client.get(f"/stories/{story}/evidence.warc.gz")
            assert download.status_code == 200
            served += warc_text(download.content)
    assert b"key=${FEED_KEY}" in served and b"appname=***" in served
    assert FEED_KEY.encode() not in served and APPNAME.encode() not in served

    # Evidence kept before keys were redacted when stored: the export redacts it, with the
    # database given by --db as by WATCHER_DATABASE_URL (the file still names the keys).
    with store.engine.begin() as conn:
        conn.execute(
            t.evidence.update().values(final_url=server.url(f"/feed?key={FEED_KEY}&page=2026"))
        )
    cfg = tmp_path / "e.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    for given in (["--db", url], []):
        old = tmp_path / f"old{len(given)}.warc.gz"
        env = {**env, **({} if given else {"WATCHER_DATABASE_URL": url})}
        args = ("--config", str(cfg), *given, "evidence", "export", "-o", str(old))
        done = watcher(*args, env=env)
        assert done.returncode == 0, done.stderr
        exported = warc_text(old.read_bytes())
        assert FEED_KEY.encode() not in exported and b"key=***&page=2026" in exported
