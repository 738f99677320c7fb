"""Parsers, data-driven over recorded bodies.

- `fixtures/sources/<id>/`: one body per shipped source, in that outlet's real format, parsed
  with the source's own entry in the shipped `sources.yaml` (so a wrong selector fails here).
- `fixtures/formats/<case>/`: encodings and formats seen in the wild (EUC-KR, CP949 under a
  wrong header, RSS 0.91/1.0, Atom, Korean HTML dates, nested JSON, HTML instead of a feed).
- `fixtures/feedparser-suite/`: feedparser's own ill-formed and edge-case feeds; none may crash
  a parser or leave a non-NFC, empty or multi-line field behind.

Each case directory holds `body.*`, `headers.json` (content type, validators) and
`expected.json` (count, every item's title/url/date, or `error_contains`).
"""

from __future__ import annotations

import asyncio
import json
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from watcher.config import load_config, load_config_text
from watcher.parsers import ParseResult, decode, parse
from watcher.pipeline import Parsing
from watcher.types import FetchResult

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
#: After every recorded item's date (a date after the fetch is taken as the fetch time).
FETCHED_AT = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
SHIPPED = {s.id: s for s in load_config(ROOT / "sources.yaml", env={}).config.sources}


def _body(case: Path) -> bytes:
    (path,) = [p for p in case.iterdir() if p.name.startswith("body.")]
    return path.read_bytes()


def _fetch(source: Any, case: Path) -> FetchResult:
    headers = json.loads((case / "headers.json").read_text())
    content_type = headers.get("content_type")
    charset = None
    if content_type and "charset=" in content_type:
        charset = content_type.split("charset=", 1)[1].split(";")[0].strip()
    return FetchResult(
        source_id=source.id,
        url=source.url,
        final_url=source.url,
        status=200,
        body=_body(case),
        encoding=charset,
        content_type=content_type,
        etag=headers.get("etag"),
        last_modified=headers.get("last_modified"),
    )


def _format_source(case: Path, expected: dict[str, Any]) -> Any:
    entry: dict[str, Any] = {"id": case.name, "url": expected["url"], "lang": expected["lang"]}
    if "selectors" in expected:
        entry |= {"kind": "html", "selectors": expected["selectors"], "robots": False}
    elif "fields" in expected:
        entry |= {"kind": "json", "items": expected["items_path"], "fields": expected["fields"]}
    else:
        entry["kind"] = "feed"
    text = yaml.safe_dump({"sources": [entry]}, allow_unicode=True)
    return load_config_text(text, f"{case.name}.yaml", {}).config.sources[0]


def _cases() -> list[Any]:
    out = []
    for case in sorted((FIXTURES / "sources").iterdir()):
        out.append(pytest.param(SHIPPED[case.name], case, id=f"sources/{case.name}"))
    for case in sorted((FIXTURES / "formats").iterdir()):
        if case.is_dir():
            expected = json.loads((case / "expected.json").read_text())
            out.append(
                pytest.param(_format_source(case, expected), case, id=f"formats/{case.name}")
            )
    return out


def test_every_shipped_source_has_a_recorded_body() -> None:
    recorded = {p.name for p in (FIXTURES / "sources").iterdir() if p.is_dir()}
    assert recorded == set(SHIPPED)


@pytest.mark.parametrize(("source", "case"), _cases())
def test_recorded_body_parses_to_the_expected_items(source: Any, case: Path) -> None:
    expected = json.loads((case / "expected.json").read_text())
    result = parse(source, _fetch(source, case), FETCHED_AT)
    if "error_contains" in expected:
        assert result.items == ()
        assert result.error is not None and expected["error_contains"] in result.error
        return
    assert result.error is None
    got = [
        {
            "title": item.title,
            "url": item.url,
            "published_at": item.published_at.isoformat() if item.published_at else None,
        }
        for item in result.items
    ]
    assert len(got) == expected["count"]
    assert got == expected["items"]
    for item in result.items:
        assert item.source_id == source.id
        assert item.fetched_at == FETCHED_AT
        assert item.lang == (source.lang or item.lang)
        assert unicodedata.is_normalized("NFC", item.title + item.text)
        assert "\ufffd" not in item.title, "mojibake: the body was decoded with the wrong codec"
    assert len({item.key for item in result.items}) == len(result.items)


@pytest.mark.parametrize(
    ("case", "codec"),
    [("euc-kr-feed", "cp949"), ("cp949-wrong-header", "cp949"), ("html-euc-kr", "cp949")],
)
def test_korean_legacy_encodings_are_detected(case: str, codec: str) -> None:
    path = FIXTURES / "formats" / case
    headers = json.loads((path / "headers.json").read_text())
    charset = (
        headers["content_type"].split("charset=")[1]
        if "charset=" in headers.get("content_type", "")
        else None
    )
    text, used = decode(_body(path), charset)
    assert used == codec
    assert "탈북" in text


# ------------------------------------------------------------------ feedparser's own suite

SUITE = sorted(p for p in (FIXTURES / "feedparser-suite").rglob("*.xml") if p.is_file())
_SUITE_SOURCE = load_config_text(
    "sources:\n  - {id: suite, kind: feed, url: 'https://example.org/feed'}\n", "suite.yaml", {}
).config.sources[0]


def test_the_suite_is_there() -> None:
    assert len(SUITE) >= 40


@pytest.mark.parametrize("path", SUITE, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_ill_formed_feed_never_crashes_a_parser(path: Path) -> None:
    result = FetchResult(
        source_id="suite",
        url="https://example.org/feed",
        final_url="https://example.org/feed",
        status=200,
        body=path.read_bytes(),
        content_type="application/xml",
    )
    parsed = parse(_SUITE_SOURCE, result, FETCHED_AT)
    assert parsed.error is None or not parsed.error.startswith("parser failed"), parsed.error
    if parsed.error is not None:
        assert "\n" not in parsed.error and len(parsed.error) <= 300
    for item in parsed.items:
        assert item.key and item.title
        assert "\n" not in item.title
        assert unicodedata.is_normalized("NFC", item.title + item.text)
        assert item.url is None or item.url.startswith(("http://", "https://"))


def test_worker_processes_parse_exactly_like_the_main_process() -> None:
    cases = [(s, c) for s, c in (p.values for p in _cases())]

    async def run(parsing: Parsing) -> list[ParseResult]:
        try:
            return [await parsing(s, _fetch(s, c), FETCHED_AT) for s, c in cases]
        finally:
            parsing.close()

    inline = asyncio.run(run(Parsing(processes=0)))
    pooled = asyncio.run(run(Parsing(processes=2)))
    assert pooled == inline
    assert sum(len(r.items) for r in inline) > 100


def test_worker_processes_match_exactly_like_the_main_process() -> None:
    from watcher.rules import compile_rules

    matcher = compile_rules(load_config(ROOT / "sources.yaml", env={}).config)
    cases = [(s, c) for s, c in (p.values for p in _cases())]

    async def run(parsing: Parsing) -> list[ParseResult]:
        try:
            return [await parsing(s, _fetch(s, c), FETCHED_AT) for s, c in cases]
        finally:
            parsing.close()

    inline = asyncio.run(run(Parsing(processes=0, matcher=matcher)))
    pooled = asyncio.run(run(Parsing(processes=2, matcher=matcher)))
    assert pooled == inline
    matched = [m for r in inline for m in (r.matches or ())]
    assert len({m.item_key for m in matched}) >= 10  # the recorded bodies carry on-topic items
    assert {m.event for m in matched} >= {"forced_repatriation", "detention"}


def test_a_selector_check_refuses_fails_its_poll_in_one_line() -> None:
    # `watcher check` refuses it; a file loaded without check still must not log three lines
    source = load_config_text(
        "sources:\n  - {id: h, kind: html, url: 'https://example.org/', "
        "selectors: {item: li, title: 'h3[class'}}\n",
        "h.yaml",
        {},
    ).config.sources[0]
    result = FetchResult(
        source_id="h",
        url="https://example.org/",
        final_url="https://example.org/",
        status=200,
        body=b"<ul><li><a href='/a'><h3 class='x'>A</h3></a></li></ul>",
        content_type="text/html",
    )
    parsed = parse(source, result, FETCHED_AT)
    assert parsed.error is not None and parsed.error.startswith("parser failed: ")
    assert "\n" not in parsed.error and "h3[class" in parsed.error


# ------------------------------------------------------------------ documents cut short

_FEED_CASES = sorted(
    case
    for case in [*(FIXTURES / "sources").iterdir(), *(FIXTURES / "formats").iterdir()]
    if (case / "body.xml").is_file()
)


@pytest.mark.parametrize(
    "path", [*SUITE, *(c / "body.xml" for c in _FEED_CASES)], ids=lambda p: str(p.parent.name)
)
def test_a_whole_feed_is_never_taken_for_one_cut_short(path: Path) -> None:
    """Ill-formed but whole documents (feedparser's suite, the recorded sources) are read as
    before: no cut reported, nothing dropped. Only the suite's CDATA cut mid-token is one."""
    source = _SUITE_SOURCE
    result = FetchResult(
        source_id="suite",
        url=source.url,
        final_url=source.url,
        status=200,
        body=path.read_bytes(),
        content_type="application/xml",
    )
    parsed = parse(source, result, FETCHED_AT)
    if path.name == "rss_incomplete_cdata.xml":
        assert parsed.error == (
            "feed cut short: the document ends inside <rss> after 371 bytes, before any whole entry"
        )
        return
    assert parsed.truncated is None
    assert not (parsed.error or "").startswith("feed cut short")


_WHOLE_RSS = (
    '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
    "<item><title>Kept report</title><link>https://e.org/kept</link>"
    "<pubDate>Mon, 23 Nov 2026 08:00:00 +0900</pubDate></item>"
    "<item><title>China forcibly repatriated about 60 North Korean defectors</title>"
    "<link>https://e.org/repatriated</link>"
    "<pubDate>Mon, 23 Nov 2026 09:00:00 +0900</pubDate></item></channel></rss>"
)
_WHOLE_ATOM = (
    '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
    "<title>T</title><id>urn:t</id><updated>2026-11-23T00:00:00Z</updated>"
    '<entry><title>Kept report</title><link href="https://e.org/kept"/><id>urn:1</id>'
    "<updated>2026-11-23T00:00:00Z</updated></entry>"
    "<entry><title>China forcibly repatriated about 60 North Korean defectors</title>"
    '<link href="https://e.org/repatriated"/><id>urn:2</id>'
    "<updated>2026-11-23T01:00:00Z</updated></entry></feed>"
)


def _cut(whole: str, after: str, extra: int = 0) -> bytes:
    body = whole.encode()
    return body[: body.index(after.encode()) + len(after.encode()) + extra]


@pytest.mark.parametrize(
    ("body", "kept", "dropped"),
    [
        # the reviewer's case: cut inside the last entry's link (a title, no link, no date)
        (_cut(_WHOLE_RSS, "<link>https://e.org/rep"), 1, True),
        (_cut(_WHOLE_RSS, "repatriated about"), 1, True),
        (_cut(_WHOLE_RSS, "</item><item>", 2), 1, True),
        (_cut(_WHOLE_ATOM, '<link href="https://e.org/rep'), 1, True),
        (_cut(_WHOLE_ATOM, "<id>urn:2</id>"), 1, True),
        # cut between entries: every entry read is whole, more may have followed
        (_cut(_WHOLE_RSS, "</item>"), 1, False),
        (_cut(_WHOLE_ATOM, "</entry><en"), 1, False),
    ],
    ids=[
        "rss-in-link",
        "rss-in-title",
        "rss-in-start-tag",
        "atom-in-link",
        "atom-before-end",
        "rss-between",
        "atom-between",
    ],
)
def test_a_feed_cut_short_keeps_its_whole_entries_and_says_so(
    body: bytes, kept: int, dropped: bool
) -> None:
    source = _SUITE_SOURCE
    result = FetchResult(
        source_id="suite", url=source.url, final_url=source.url, status=200, body=body
    )
    parsed = parse(source, result, FETCHED_AT)
    assert parsed.error is None
    assert [i.title for i in parsed.items] == ["Kept report"][:kept]
    assert all(i.url and i.published_at for i in parsed.items)
    assert parsed.truncated is not None and parsed.truncated.startswith("feed cut short: ")
    assert ("unfinished last entry was dropped, 1 kept" in parsed.truncated) is dropped


def test_a_feed_cut_before_any_whole_entry_fails() -> None:
    source = _SUITE_SOURCE
    body = _cut(_WHOLE_RSS, "<title>Kept")
    result = FetchResult(
        source_id="suite", url=source.url, final_url=source.url, status=200, body=body
    )
    parsed = parse(source, result, FETCHED_AT)
    assert parsed.items == ()
    assert parsed.error == (
        f"feed cut short: the document ends inside <rss> after {len(body)} bytes, "
        "before any whole entry"
    )
