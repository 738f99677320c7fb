"""Hostile and unlucky bodies: one bad byte or one bad item never loses a feed, a declared
charset is kept, dangerous charsets are refused with one clear line, and generated documents
(seeded from feedparser's ill-formed suite) never make a parser fail."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.config import load_config_text
from watcher.parsers import decode_body, parse
from watcher.types import FetchResult

FIXTURES = Path(__file__).parent / "fixtures"
FETCHED_AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCE = load_config_text(
    "sources:\n  - {id: s, kind: feed, url: 'https://example.org/feed', lang: ko}\n", "t.yaml", {}
).config.sources[0]


def fetched(body: bytes, charset: str | None = None) -> FetchResult:
    return FetchResult(
        source_id="s",
        url="https://example.org/feed",
        final_url="https://example.org/feed",
        status=200,
        body=body,
        encoding=charset,
        content_type="application/rss+xml" + (f"; charset={charset}" if charset else ""),
    )


def rss(*items: str, decl: str = '<?xml version="1.0" encoding="UTF-8"?>') -> bytes:
    return (
        f'{decl}<rss version="2.0"><channel><title>T</title><link>https://example.org/</link>'
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def item(title: str, link: str, extra: str = "") -> str:
    return f"<item><title>{title}</title><link>{link}</link>{extra}</item>"


GOOD = [item(f"탈북민 {n}명 강제북송 우려", f"https://example.org/{n}") for n in (1, 2, 3)]


def test_one_invalid_byte_keeps_the_declared_utf8() -> None:
    body = rss(*GOOD).replace("우려".encode(), "우려".encode() + b"\xff", 1)
    decoded = decode_body(body, "utf-8")
    assert decoded.codec == "utf-8" and decoded.replaced == 1
    written = body.replace("탈북민 3명".encode(), "탈북민 \ufffd3명".encode())  # the feed's own
    assert decode_body(written, "utf-8").replaced == 1
    parsed = parse(SOURCE, fetched(body, "utf-8"), FETCHED_AT)
    assert [i.title for i in parsed.items][1:] == [
        "탈북민 2명 강제북송 우려",
        "탈북민 3명 강제북송 우려",
    ]
    assert parsed.items[0].title.startswith("탈북민 1명 강제북송 우려")  # only the bad byte lost
    assert parsed.replaced == 1


def test_xml_without_a_declared_encoding_is_utf8() -> None:
    body = rss(*GOOD, decl='<?xml version="1.0"?>') + b"\xff"
    assert decode_body(body, None).codec == "utf-8"


@pytest.mark.parametrize(
    ("charset", "said"),
    [
        ("punycode", "not a document encoding"),
        ("unicode_escape", "not a document encoding"),
        ("base64", "not a document encoding"),
        ("x-no-such-charset", "unknown charset"),
    ],
)
def test_a_dangerous_or_unknown_charset_is_refused_in_one_line(charset: str, said: str) -> None:
    parsed = parse(SOURCE, fetched(rss(*GOOD), charset), FETCHED_AT)
    assert parsed.items == ()
    assert parsed.error and said in parsed.error and charset in parsed.error
    assert "\n" not in parsed.error


@pytest.mark.parametrize(
    "bad",
    [
        item("Control char after markup <b>x</b>\x07", "https://example.org/c"),
        item("A broken IPv6 link", "http://[2001:db8::1/bad"),
        item("A stray end tag </width> in the title", "https://example.org/w"),
        item("<![CDATA[<p>nested <b>markup</p>]]>", "https://example.org/m"),
        item("Port out of range", "https://example.org:99999/x"),
    ],
)
def test_one_bad_item_never_costs_the_feed(bad: str) -> None:
    parsed = parse(SOURCE, fetched(rss(GOOD[0], bad, GOOD[1], GOOD[2]), "utf-8"), FETCHED_AT)
    assert parsed.error is None
    titles = [i.title for i in parsed.items]
    for n in (1, 2, 3):
        assert f"탈북민 {n}명 강제북송 우려" in titles
    assert len(parsed.items) + len(parsed.skipped) == 4


JSON_SOURCE = load_config_text(
    "sources:\n  - {id: j, kind: json, url: 'https://example.org/api', items: data,"
    " fields: {title: t, url: u}}\n",
    "t.yaml",
    {},
).config.sources[0]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "not JSON: arrays or objects nested too deeply to read"),
        (b'{"data": [', "not JSON: Expecting value at line 1 column 11"),
    ],
    ids=["nested-200000-deep", "cut-short"],
)
def test_json_python_cannot_read_is_refused_in_one_line(body: bytes, said: str) -> None:
    parsed = parse(JSON_SOURCE, fetched(body, "utf-8"), FETCHED_AT)
    assert parsed.items == () and parsed.error == said


def test_a_number_longer_than_python_reads_costs_nothing() -> None:
    """Python refuses integers of more than 4,300 digits (its guard against slow parsing): one
    in an entry is kept as its text, and the feed and the entry are read."""
    long = b"1" * 5000
    body = b'{"data": [{"t": "Kept", "u": "https://e.org/a", "n": ' + long + b'}, {"t": ' + long
    body += b', "u": "https://e.org/b"}, {"t": 7, "u": "https://e.org/c"}]}'
    parsed = parse(JSON_SOURCE, fetched(body, "utf-8"), FETCHED_AT)
    assert parsed.error is None
    assert [i.url for i in parsed.items] == [
        "https://e.org/a",
        "https://e.org/b",
        "https://e.org/c",
    ]
    assert parsed.items[0].title == "Kept" and parsed.items[2].title == "7"
    assert parsed.items[1].title.startswith("1111") and len(parsed.items[1].title) <= 5000


def test_a_feed_behind_a_stray_html_doctype_is_a_feed() -> None:
    body = (FIXTURES / "feedparser-suite" / "illformed" / "always_strip_doctype.xml").read_bytes()
    parsed = parse(SOURCE, fetched(body), FETCHED_AT)
    assert parsed.error is None


SEEDS = sorted(
    p.read_bytes()
    for p in (FIXTURES / "feedparser-suite").rglob("*.xml")
    if p.is_file() and p.stat().st_size < 20_000
)
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=20),
    st.sampled_from(
        [
            b"<item><title>x</title><link>http://[::1/bad</link></item>",
            b"<item><title>\x07\x1b</title></item>",
            b"</width>",
            b"<![CDATA[",
            b"&#0;&#xD800;&nosuch;",
            b'<?xml version="1.0" encoding="punycode"?>',
            b"<item><link>javascript:alert(1)</link><title><script>x</script></title></item>",
            "<item><title>탈북민 强制遣返 脱北者</title></item>".encode(),
        ]
    ),
)


@settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,  # the same 2,000 documents every run: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.sampled_from(SEEDS),
    at=st.floats(0, 1),
    fragment=HOSTILE,
    charset=st.sampled_from([None, "utf-8"]),
)
def test_generated_documents_never_make_a_parser_fail(
    seed: bytes, at: float, fragment: str | bytes, charset: str | None
) -> None:
    cut = int(len(seed) * at)
    piece = fragment.encode("utf-8", "surrogatepass") if isinstance(fragment, str) else fragment
    parsed = parse(SOURCE, fetched(seed[:cut] + piece + seed[cut:], charset), FETCHED_AT)
    assert parsed.error is None or not parsed.error.startswith("parser failed"), parsed.error
    for found in parsed.items:
        assert found.key and found.title is not None
