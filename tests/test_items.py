"""Normalisation: canonical URLs, clean text, dates in the page's zone, language, keys."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher.items import (
    canonical_url,
    clean_text,
    detect_lang,
    future_date,
    language_tag,
    make_item,
    parse_date,
    published_day,
    stable_key,
    without_feed_footer,
    without_secrets,
)
from watcher.parsers import decode, looks_like_html

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "base", "expected"),
    [
        (
            "HTTPS://WWW.DailyNK.com/20261120-1/?utm_source=rss&utm_medium=feed",
            None,
            "https://www.dailynk.com/20261120-1/",
        ),
        ("https://e.org/a?id=5&fbclid=x&page=2#comments", None, "https://e.org/a?id=5&page=2"),
        ("http://e.org:80/a", None, "http://e.org/a"),
        ("https://e.org:8443/a", None, "https://e.org:8443/a"),
        (
            "./202611/t20261120_11234567.html",
            "https://www.mfa.gov.cn/eng/xw/fyrbt/lxjzh/",
            "https://www.mfa.gov.cn/eng/xw/fyrbt/lxjzh/202611/t20261120_11234567.html",
        ),
        (
            "/en/press-releases/2026/11/x",
            "https://www.ohchr.org/en/press-releases",
            "https://www.ohchr.org/en/press-releases/2026/11/x",
        ),
        (
            "https://news.un.org/feed/view/en/story/2026/10/1168559",
            None,
            "https://news.un.org/en/story/2026/10/1168559",
        ),
        ("https://e.org", None, "https://e.org/"),
        # credentials are never part of an article's identity
        ("https://user:secret@E.org/a", None, "https://e.org/a"),
        ("https://user@e.org:8443/a", None, "https://e.org:8443/a"),
        ("javascript:alert(1)", None, None),
        ("mailto:a@b.org", None, None),
        ("", None, None),
        ("http://[::1", None, None),
        # a host holding a control character names no site: the item keeps going without it
        ("https://e\x00.org/a", None, None),
        ("https://e\x85.org/a", None, None),
        ("https://e\u202e.org/a", None, None),
        ("https://e.org/\x00\ud800", None, None),  # a lone surrogate has no UTF-8 form
        ("https://e.org/a\x00b?q=\x1b", None, "https://e.org/a%00b?q=%1B"),  # escaped, kept
        # a link to the document itself names no item (nor takes its address and key)
        ("#1", "https://api.e.org/v1/items?key=k-9b3e#top", None),
        ("#", "https://api.e.org/v1/items?key=k-9b3e", None),
        ("?", "https://api.e.org/v1/items?key=k-9b3e", None),
        ("  ", "https://api.e.org/v1/items?key=k-9b3e", None),
        ("items?key=k-9b3e&utm_source=x", "https://api.e.org/v1/items?key=k-9b3e", None),
        ("?page=2", "https://api.e.org/v1/items?key=k-9b3e", "https://api.e.org/v1/items?page=2"),
        ("#2", "https://www.ohchr.org/en/press-releases", None),
    ],
)
def test_canonical_url(raw: str, base: str | None, expected: str | None) -> None:
    assert canonical_url(raw, base) == expected


@given(st.text(min_size=1, max_size=40).map(lambda s: f"https://Example.org/p/{s}?utm_x=1&q={s}"))
def test_canonical_url_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    assert once is None or canonical_url(once) == once


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "<p>Chinese police <b>detained</b> 20</p><p>defectors.</p>",
            "Chinese police detained 20 defectors.",
        ),
        ("A&amp;B &lt;tag&gt;", "A&B <tag>"),
        ("<script>alert(1)</script>Safe", "Safe"),
        ("  many\n\n  spaces\t here ", "many spaces here"),
        ("탈북민 \u1112\u1161\u11ab", "탈북민 한"),  # decomposed Hangul → NFC
        (None, ""),
    ],
)
def test_clean_text(raw: str | None, expected: str) -> None:
    assert clean_text(raw) == expected


@given(st.text(alphabet=st.characters(blacklist_characters="&<"), max_size=200))
def test_clean_text_is_idempotent_on_text_without_markup(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once
    assert once == once.strip() and "  " not in once
    assert all(ch.isprintable() for ch in once)


def test_clean_text_caps_length() -> None:
    assert len(clean_text("가" * 200_000)) == 100_000


@pytest.mark.parametrize(
    ("raw", "zone", "expected"),
    [
        ("Mon, 23 Nov 2026 08:00:00 +0900", "UTC", "2026-11-22T23:00:00+00:00"),
        ("Mon, 23 Nov 2026 08:00:00 GMT", "Asia/Seoul", "2026-11-23T08:00:00+00:00"),
        ("2026-11-20T10:00:00Z", "UTC", "2026-11-20T10:00:00+00:00"),
        ("2026-09-27 19:00:00", "Asia/Seoul", "2026-09-27T10:00:00+00:00"),
        ("2024.04.26 14:05", "Asia/Seoul", "2024-04-26T05:05:00+00:00"),
        ("2024년 4월 26일", "Asia/Seoul", "2024-04-25T15:00:00+00:00"),
        ("2024년 4월 26일 오후 2시 5분", "Asia/Seoul", "2024-04-26T05:05:00+00:00"),
        ("입력 2024.04.26. 오전 9:30", "Asia/Seoul", "2024-04-26T00:30:00+00:00"),
        ("2026年11月20日", "Asia/Shanghai", "2026-11-19T16:00:00+00:00"),
        ("November 20, 2026", "UTC", "2026-11-20T00:00:00+00:00"),
        ("2026-11-20", "Asia/Tokyo", "2026-11-19T15:00:00+00:00"),
        ("not a date", "UTC", None),
        ("", "UTC", None),
        ("2024.13.45", "UTC", None),
        # a part of a date is no date: no day, month or year is taken from today
        ("November 2026", "UTC", None),
        ("2026", "UTC", None),
        ("14:05", "Asia/Seoul", None),
        ("Tuesday", "UTC", None),
        ("20 November", "UTC", None),
        ("Friday, November 20, 2026", "UTC", "2026-11-20T00:00:00+00:00"),
        ("Nov 20 2026 3:05 pm", "UTC", "2026-11-20T15:05:00+00:00"),
    ],
)
def test_parse_date(raw: str, zone: str, expected: str | None) -> None:
    parsed = parse_date(raw, zone)
    assert (parsed.isoformat() if parsed else None) == expected


@pytest.mark.parametrize(
    ("text", "declared", "expected"),
    [
        ("중국, 탈북민 600여명 강제북송", None, "ko"),
        ("中国遣返朝鲜脱北者", None, "zh"),
        ("中国が脱北者を強制送還", None, "ja"),
        ("脱北者 強制送還", "ja", "ja"),
        ("China repatriates North Koreans", None, "en"),
        ("China repatriates North Koreans", "ko", "en"),
        ("Chine : rapatriement", "fr", "fr"),
        ("12345", "ko", "ko"),
    ],
)
def test_detect_lang(text: str, declared: str | None, expected: str) -> None:
    assert detect_lang(text, declared) == expected


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("en", "en"),
        ("ko", "ko"),
        (" zh-Hant ", "zh-Hant"),
        ("en_US", "en_US"),
        ("es-419", "es-419"),
        ("en\x00", None),
        ("e\x00n", None),
        ("\x1b]0;owned\x07", None),
        ('en"><script>', None),
        ("x" * 300, None),
        ("", None),
        (None, None),
    ],
)
def test_language_tag(declared: str | None, expected: str | None) -> None:
    assert language_tag(declared) == expected


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("fr", "fr"), ("f\x00r", "en"), ("x" * 300, "en"), (None, "en")],
)
def test_a_declared_language_that_is_no_tag_is_detected_instead(
    lang: str | None, expected: str
) -> None:
    item = make_item(
        source_id="s", title="Chine : rapatriement", link=None, lang=lang, fetched_at=NOW
    )
    assert item.lang == expected


def test_stable_key_prefers_canonical_url_then_guid_then_hash() -> None:
    assert stable_key("s", "https://e.org/a", "g1", "T", None) == "https://e.org/a"
    assert stable_key("s", None, "g1", "T", None) == "s:g1"
    hashed = stable_key("s", None, None, "T", "2026-11-20")
    assert hashed.startswith("s:h:") and hashed == stable_key("s", None, None, "T", "2026-11-20")
    assert hashed != stable_key("s", None, None, "T", "2026-11-21")
    long_url = "https://e.org/" + "x" * 300
    assert stable_key("s", long_url, None, "T", None).startswith("u:")


@pytest.mark.parametrize(
    ("guid", "expected"),
    [
        ("g1", "s:g1"),
        ("g\x00x", "s:g:"),  # NUL, which PostgreSQL refuses: hashed
        (" \x00 ", "s:g:"),
        ("g\ud800x", "s:g:"),  # a lone surrogate, which is no UTF-8: hashed
        # anything else is the key it always was: an item stored before is not new again
        ("12345\xa0A", "s:12345\xa0A"),
        ("기사\u3000123", "s:기사\u3000123"),
        ("g\x1b[31m", "s:g\x1b[31m"),  # shown cleaned wherever a key is shown
    ],
)
def test_stable_key_from_a_guid_is_stored_by_any_database(guid: str, expected: str) -> None:
    key = stable_key("s", None, guid, "T", None)
    assert "\x00" not in key and key.encode("utf-8")  # no NUL; no lone surrogate
    if expected.endswith(":g:"):
        assert key.startswith(expected) and len(key) == len(expected) + 64
    else:
        assert key == expected


@pytest.mark.parametrize("link", ["#1", "#", "?", " ", "https://api.e.org/v1/items?key=k-9b3e"])
def test_a_link_to_the_source_itself_is_no_link_and_the_key_stays_stable(link: str) -> None:
    """An item whose link is `#1` (or blank, or the feed's own address) does not take the
    source's address (and the key in its query): it has no link, and its key is its guid or
    the hash of its title and date, the same at every poll."""
    base = "https://api.e.org/v1/items?key=k-9b3e"

    def item(guid: str | None, title: str) -> object:
        return make_item(
            source_id="api", title=title, link=link, guid=guid, fetched_at=NOW, base_url=base
        )

    with_id, untitled = item("71", "Defectors held"), item(None, "Defectors held")
    assert with_id.url is None and untitled.url is None  # type: ignore[attr-defined]
    assert with_id.key == "api:71"  # type: ignore[attr-defined]
    assert untitled.key == item(None, "Defectors held").key  # type: ignore[attr-defined]
    assert untitled.key != item(None, "Another report").key  # type: ignore[attr-defined]
    assert "k-9b3e" not in untitled.key  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("link", "guid", "url", "key"),
    [
        (
            "https://api.e.org/story/7?key=k-9b3e7f2a%2F",
            None,
            "https://api.e.org/story/7?key=***",
            "https://api.e.org/story/7?key=***",
        ),
        (
            "https://api.e.org/k-9b3e7f2a//7",
            None,
            "https://api.e.org/***/7",
            "https://api.e.org/***/7",
        ),
        (None, "k-9b3e7f2a/", None, "api:***"),
        ("https://e.org/" + "x" * 300 + "?k=k-9b3e7f2a/", None, "https://e.org/", "hashed"),
        ("https://e.org/a", None, "https://e.org/a", "https://e.org/a"),
    ],
    ids=["query", "path", "guid", "long-link-key", "none"],
)
def test_a_source_secret_in_an_items_link_and_key_is_replaced(
    link: str | None, guid: str | None, url: str | None, key: str
) -> None:
    item = make_item(source_id="api", title="T", link=link, guid=guid, fetched_at=NOW)
    clean = without_secrets(item, {"k-9b3e7f2a/"})
    if key == "hashed":  # a key hashed from the link is the hash of the redacted link
        assert clean.url is not None and clean.url.startswith(url or "")
        assert "k-9b3e7f2a" not in clean.url and clean.url.endswith("?k=***")
        assert clean.key == stable_key("api", clean.url, None, "T", None) != item.key
    else:
        assert (clean.url, clean.key) == (url, key)
    assert without_secrets(item, ()) is item


@pytest.mark.parametrize(
    ("link", "url"),
    [
        # a plain word that is also a variable's value (an app name) is cut from no word
        (
            "https://reliefweb.int/report/democratic-peoples-republic-korea/north-korea-stop",
            "https://reliefweb.int/report/democratic-peoples-republic-korea/north-korea-stop",
        ),
        ("https://e.org/korea/1", "https://e.org/korea/1"),  # short: only as a query value
        ("https://e.org/a?appname=korea&p=1", "https://e.org/a?appname=***&p=1"),
        ("https://e.org/a?q=south-korea", "https://e.org/a?q=south-korea"),
        # a long one wherever it stands whole, never inside a longer token
        ("https://e.org/k/SECRET-123/items", "https://e.org/k/***/items"),
        ("https://e.org/k/xSECRET-123/items", "https://e.org/k/xSECRET-123/items"),
    ],
)
def test_a_secret_is_replaced_only_where_it_stands_whole(link: str, url: str) -> None:
    item = make_item(source_id="api", title="T", link=link, fetched_at=NOW)
    assert without_secrets(item, {"korea", "SECRET-123"}).url == url


def test_make_item_shared_link_falls_back_to_guid() -> None:
    item = make_item(
        source_id="voa",
        title="Video",
        link="https://www.voakorea.com/z/2712",
        guid="12345",
        fetched_at=NOW,
        shared_url=True,
    )
    assert item.key == "voa:12345"
    assert item.url == "https://www.voakorea.com/z/2712"


@pytest.mark.parametrize(
    ("body", "header", "expected_text", "expected_codec"),
    [
        ("탈북민".encode("euc-kr"), None, "탈북민", "cp949"),
        (
            '<?xml version="1.0" encoding="euc-kr"?><t>탈북민</t>'.encode("euc-kr"),
            None,
            '<?xml version="1.0" encoding="euc-kr"?><t>탈북민</t>',
            "cp949",
        ),
        (
            "<p>똠방각하 탈북민 강제북송 소식입니다</p>".encode("cp949"),
            "ISO-8859-1",
            "<p>똠방각하 탈북민 강제북송 소식입니다</p>",
            "cp949",
        ),
        ("遣返".encode("gb18030"), "gb2312", "遣返", "gb18030"),
        ("\ufeffhello".encode(), "iso-8859-1", "hello", "utf-8"),
        (b"caf\xe9", "iso-8859-1", "café", "cp1252"),
    ],
)
def test_decode(body: bytes, header: str | None, expected_text: str, expected_codec: str) -> None:
    assert decode(body, header) == (expected_text, expected_codec)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<!DOCTYPE html><html>", True),
        ("\n  <html lang='ko'>", True),
        ("<?xml version='1.0'?>\n<!-- c --><html>", True),
        ("<?xml version='1.0'?><rss>", False),
        ("<feed xmlns='http://www.w3.org/2005/Atom'>", False),
    ],
)
def test_looks_like_html(text: str, expected: bool) -> None:
    assert looks_like_html(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # WordPress's feed footer (Yoast SEO), on English and Korean sites alike
        (
            "Sixty were sent back at dawn. The post Sixty sent back from Dandong appeared "
            "first on Daily NK English.",
            "Sixty were sent back at dawn.",
        ),
        (
            "새벽 강제북송. The post [단독] 中 단둥서 탈북민 60여 명 새벽 강제북송 appeared "
            "first on 데일리NK.",
            "새벽 강제북송.",
        ),
        # an item that is only the footer (a feed without excerpts) keeps nothing
        ("The post A title appeared first on NK News.", ""),
        # an excerpt's continuation mark is a plain ellipsis
        (
            "must immediately halt the forced return [&hellip;]",
            "must immediately halt the forced return…",
        ),
        ("must press China to end [...]", "must press China to end…"),
        ("says Amnesty […] The post X appeared first on Amnesty International.", "says Amnesty…"),
        # the same words inside a report, or far from its end, stay
        (
            "The post appeared first on the bulletin board, police said, and 20 were held.",
            "The post appeared first on the bulletin board, police said, and 20 were held.",
        ),
        (
            "He wrote the post. It appeared first on Monday",
            "He wrote the post. It appeared first on Monday",
        ),
        ("an outpost appeared first on the ridge.", "an outpost appeared first on the ridge."),
        # a report about a post goes on after the site: it is not the footer
        (
            "Six were held, a rights group said. The post by a Chinese netizen appeared first "
            "on Douyin late Tuesday; it said they would be sent back within days.",
            "Six were held, a rights group said. The post by a Chinese netizen appeared first "
            "on Douyin late Tuesday; it said they would be sent back within days.",
        ),
        (
            "The post by a netizen appeared first on Douyin. Police then came.",
            "The post by a netizen appeared first on Douyin. Police then came.",
        ),
        # two footers (a feed that appends it twice), one without a space before it, a title
        # holding "the post" itself
        ("Lead. The post A appeared first on B. The post C appeared first on D.", "Lead."),
        ("Lead.The post A appeared first on B.", "Lead."),
        ("Lead. The post Why The post office closed appeared first on NK News.", "Lead."),
        ("", ""),
    ],
)
def test_without_feed_footer(text: str, expected: str) -> None:
    assert without_feed_footer(text) == expected


@given(st.text(alphabet="The post apeardfirston .[]…", max_size=300))
def test_without_feed_footer_only_shortens_and_is_idempotent(text: str) -> None:
    once = without_feed_footer(text)
    assert len(once) <= len(text.rstrip()) + 1  # "[…]" becomes "…"
    assert without_feed_footer(once) == once


def test_a_hostile_text_of_footers_and_near_footers_is_handled() -> None:
    # 20,000 footers in a row are all footers; near-footers (no "The post") stop at once
    assert without_feed_footer("The post x appeared first on y. " * 20_000) == ""
    near = "A post appeared first on y. " * 20_000
    assert without_feed_footer(near) == near.rstrip()
    marks = "[…]" * 100_000  # only the last is the excerpt's mark
    assert without_feed_footer(marks) == marks[:-3] + "…"


def test_feed_items_lose_the_wordpress_footer() -> None:
    item = make_item(
        source_id="dailynk-ko",
        title="단둥서 탈북민 60여 명 강제북송",
        link="https://www.dailynk.com/20261120-4/",
        summary="<p>단둥에서 탈북민 60여 명이 새벽에 북송됐다.</p><p>The post <a href="
        '"https://www.dailynk.com/20261120-4/">단둥서 탈북민 60여 명 강제북송</a> appeared first '
        'on <a href="https://www.dailynk.com">데일리NK</a>.</p>',
        fetched_at=NOW,
    )
    assert item.text == "단둥에서 탈북민 60여 명이 새벽에 북송됐다."


#: A poll at 16:00:00.5 UTC on 3 December: 01:00 on the 4th in Seoul.
FETCHED = datetime(2026, 12, 3, 16, 0, 0, 500_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "zone", "published", "day", "ahead"),
    [
        # a few minutes ahead is a clock's skew, kept as given
        (
            "Thu, 03 Dec 2026 16:10:00 +0000",
            "UTC",
            datetime(2026, 12, 3, 16, 10, tzinfo=UTC),
            None,
            False,
        ),
        (
            "Thu, 03 Dec 2026 15:00:00 +0000",
            "UTC",
            datetime(2026, 12, 3, 15, tzinfo=UTC),
            None,
            False,
        ),
        # further ahead: the fetch time is used, the date given kept as written
        ("Thu, 03 Dec 2026 16:20:00 +0000", "UTC", FETCHED, None, True),
        ("Fri, 04 Dec 2026 04:00:00 +0000", "UTC", FETCHED, None, True),
        # Seoul's 01:00 labelled +0000: nine hours ahead
        ("Fri, 04 Dec 2026 01:00:00 +0000", "Asia/Seoul", FETCHED, None, True),
        # a zone-less time read in the source's zone: 01:00 in Seoul is now
        ("2026-12-04 01:00", "Asia/Seoul", datetime(2026, 12, 3, 16, tzinfo=UTC), None, False),
        # a day alone: today where the source is is not ahead, tomorrow is
        (
            "2026-12-04",
            "Asia/Seoul",
            datetime(2026, 12, 3, 15, tzinfo=UTC),
            date(2026, 12, 4),
            False,
        ),
        ("2026-12-03", "UTC", datetime(2026, 12, 3, tzinfo=UTC), date(2026, 12, 3), False),
        ("2026-12-05", "Asia/Seoul", FETCHED, None, True),
        ("2026-12-04", "UTC", FETCHED, None, True),
        (None, "UTC", None, None, False),
    ],
)
def test_a_date_after_the_fetch_is_taken_as_the_fetch_time(
    raw: str | None, zone: str, published: datetime | None, day: date | None, ahead: bool
) -> None:
    item = make_item(
        source_id="s", title="T", link=None, date_raw=raw, zone=zone, fetched_at=FETCHED
    )
    assert (item.published_at, published_day(item), future_date(item)) == (published, day, ahead)
    assert item.published_raw == raw  # as the outlet wrote it


def test_a_parsed_date_after_the_fetch_is_taken_as_the_fetch_time() -> None:
    # (the feed parser's own reading of a date `parse_date` does not read)
    ahead = datetime(2026, 12, 4, 4, tzinfo=UTC)
    item = make_item(source_id="s", title="T", link=None, published_at=ahead, fetched_at=FETCHED)
    assert (item.published_at, future_date(item)) == (FETCHED, True)
