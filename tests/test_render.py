"""render: per-format layout, escaping of untrusted text, time zones and length limits."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from bs4 import BeautifulSoup
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.messages import HOSTILE, HOSTILE_SHOWN, RFA, T0, TELEGRAM_TAGS, Tags
from tests.messages import report as sample_report
from tests.messages import view as sample_view
from watcher import render
from watcher.types import AlertView, Message, Report, StoredReport, Told

CHANNELS = ["email", "telegram", "slack", "text"]
HTML_CHANNELS = ["email", "telegram"]
FORMATS = {"email": "html", "telegram": "html", "slack": "markdown", "text": "text"}

# The same, with a bidi override, a NUL and a newline that must never reach any format.
HOSTILE_RAW = (
    "<b>x</b>\u202e *bold* _it_\x00 [link](javascript:alert(1))\n@channel <!here> <script>"
)

# --------------------------------------------------------------------------- factories


@pytest.fixture
def make_report() -> Callable[..., Report]:
    return sample_report


@pytest.fixture
def make_view(make_report: Callable[..., Report]) -> Callable[..., AlertView]:
    """The sample view, with English rule ids and two other outlets (RFA, Daily NK)."""
    rfa = make_report(**RFA)
    others = (
        replace(
            rfa,
            title="China repatriates 600 North Koreans",
            published_at=T0 + timedelta(minutes=95),
        ),
        replace(
            rfa,
            source_id="dailynk",
            source_name="Daily NK",
            title="Hundreds sent back from Dandong",
            url="https://www.dailynk.com/english/2",
            published_at=T0 + timedelta(days=1),
        ),
    )
    return partial(sample_view, rules=("forced-repatriation", "mass-scale"), others=others)


# --------------------------------------------------------------------------- helpers


def telegram_length(msg: Message) -> int:
    """What apprise 2.2.0 sends to Telegram: <b>title</b>, then the body, newlines as CRLF."""
    text = f"<b>{msg.title}</b>\r\n{msg.body}".replace("\n", "\r\n").replace("\r\r\n", "\r\n")
    return len(text.encode("utf-16-le")) // 2


def every_message(view: AlertView, channel: str) -> list[Message]:
    return [
        render.render_alert(view, channel, "Asia/Seoul"),
        render.render_digest([view], "morning", channel, "Asia/Seoul"),
    ]


# --------------------------------------------------------------------------- channel formats


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mailto://user:pw@example.org", "email"),
        ("mailtos://user:pw@example.org?to=a@example.org", "email"),
        ("MAILTOS://user:pw@example.org", "email"),
        ("ses://user@example.org/AKIA/secret/us-east-1/", "email"),
        ("sendgrid://key:from@example.org", "email"),
        ("mailgun://user@example.org/key", "email"),
        ("slack://TokenA/TokenB/TokenC/#channel", "slack"),
        ("https://hooks.slack.com/services/T1/B1/C1", "slack"),
        ("tgram://123456789:abcdefg_hijklmnop/987654321", "telegram"),
        ("https://api.telegram.org/bot123456789:abcdefg/", "telegram"),
        ("discord://webhook_id/webhook_token", "discord"),
        ("ntfy://topic", "ntfy"),
        ("json://example.org/hook", "text"),
        ("https://example.org/hook", "text"),
        ("not a url", "text"),
    ],
)
def test_channel_format_by_scheme(url: str, expected: str) -> None:
    assert render.channel_format(url) == expected


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_renderer_declares_the_channel_body_format(
    channel: str, make_view: Callable[..., AlertView]
) -> None:
    view = make_view()
    messages = [
        *every_message(view, channel),
        render.render_ops("Source failing", ["HTTP 503"], channel),
        render.render_test(channel),
    ]
    assert {m.format for m in messages} == {FORMATS[channel]}
    assert all(m.title and m.body.strip() for m in messages)


def test_unknown_channel_is_a_bug_not_a_fallback(make_view: Callable[..., AlertView]) -> None:
    with pytest.raises(ValueError, match="unknown channel format 'sms'"):
        render.render_alert(make_view(), "sms", "UTC")


# --------------------------------------------------------------------------- titles


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "[CRITICAL] Forced repatriation: 600 people · Dandong, Tumen"),
        (
            {"kind": "update"},
            "[CRITICAL] Update · Forced repatriation: 600 people · Dandong, Tumen",
        ),
        (
            {"kind": "reminder", "severity": "high"},
            "[HIGH] Reminder · Forced repatriation: 600 people · Dandong, Tumen",
        ),
        ({"people": 1, "places": ()}, "[CRITICAL] Forced repatriation: 1 person"),
        ({"people": 1200, "places": ()}, "[CRITICAL] Forced repatriation: 1,200 people"),
        (
            {"events": ("detention", "forced_repatriation"), "people": None},
            "[CRITICAL] Detention, Forced repatriation: Dandong, Tumen",
        ),
        # Nothing extracted: the first headline says what it is about.
        (
            {"events": ("un_action",), "severity": "low", "people": None, "places": ()},
            "[LOW] UN action: 중국, 탈북민 600여명 강제북송",
        ),
        (
            {"events": ("new_kind",), "people": None, "places": ("Hyesan",)},
            "[CRITICAL] New kind: Hyesan",
        ),
    ],
)
def test_alert_title(
    changes: dict[str, Any], expected: str, make_view: Callable[..., AlertView]
) -> None:
    for channel in ("email", "text", "slack", "telegram"):
        assert render.render_alert(make_view(**changes), channel, "UTC").title == expected


# --------------------------------------------------------------------------- layout per format

#: Fragments every alert body holds, per format (the default view, shown in Asia/Seoul).
ALERT_FRAGMENTS = {
    "email": [
        '<strong style="color: #b00020;">CRITICAL</strong> · Forced repatriation',
        "600 people · Dandong, Tumen · 2026-11-19",
        "First: <strong>Yonhap</strong> (ko) · 2026-11-20 17:05 KST",
        '<a href="https://www.yna.co.kr/view/1?a=1&amp;b=2">중국, 탈북민 600여명 강제북송</a>',
        ">중국 당국이 탈북민 600여명을 북송했다.</blockquote>",
        '<strong>RFA</strong> (en) · 18:40 KST: <span lang="en">'
        '<a href="https://www.rfa.org/english/1">China repatriates 600 North Koreans</a>',
        "<strong>Daily NK</strong> (en) · 2026-11-21 17:05 KST",
        "Matched: forced-repatriation; mass-scale<br>story #12, revision 3",
    ],
    "telegram": [
        "<b>CRITICAL</b> · Forced repatriation\n600 people · Dandong, Tumen · 2026-11-19\n",
        "First: <b>Yonhap</b> (ko) · 2026-11-20 17:05 KST\n"
        '<a href="https://www.yna.co.kr/view/1?a=1&amp;b=2">중국, 탈북민 600여명 강제북송</a>\n'
        "<i>중국 당국이 탈북민 600여명을 북송했다.</i>\n",
        "Also:\n• <b>RFA</b> (en) · 18:40 KST: "
        '<a href="https://www.rfa.org/english/1">China repatriates 600 North Koreans</a>\n'
        "• <b>Daily NK</b> (en) · 2026-11-21 17:05 KST: ",
        "Matched: forced-repatriation; mass-scale\n<i>story #12, revision 3</i>",
    ],
    "slack": [
        "**CRITICAL** · Forced repatriation\n600 people · Dandong, Tumen · 2026-11-19\n",
        "First: **Yonhap** (ko) · 2026-11-20 17:05 KST\n"
        "[중국, 탈북민 600여명 강제북송](<https://www.yna.co.kr/view/1?a=1&b=2>)\n"
        "> 중국 당국이 탈북민 600여명을 북송했다.\n",
        "Also:\n• **RFA** (en) · 18:40 KST: "
        "[China repatriates 600 North Koreans](<https://www.rfa.org/english/1>)\n"
        "• **Daily NK** (en) · 2026-11-21 17:05 KST: ",
        "Matched: forced-repatriation; mass-scale\nstory #12, revision 3",
    ],
    "text": [
        "CRITICAL · Forced repatriation\n600 people · Dandong, Tumen · 2026-11-19\n",
        "First: Yonhap (ko) · 2026-11-20 17:05 KST\n중국, 탈북민 600여명 강제북송\n"
        "https://www.yna.co.kr/view/1?a=1&b=2\n\n중국 당국이 탈북민 600여명을 북송했다.\n",
        "Also:\n- RFA (en) · 18:40 KST: China repatriates 600 North Koreans\n"
        "  https://www.rfa.org/english/1\n",
        "Matched: forced-repatriation; mass-scale\nstory #12, revision 3",
    ],
}

#: Fragments that mark an update or a reminder, per format.
KIND_FRAGMENTS = {
    ("update", "email"): "<strong>Update</strong> · +2 outlets: VOA Korean, Daily NK</p>",
    ("update", "telegram"): "<b>Update</b> · +2 outlets: VOA Korean, Daily NK\n",
    ("update", "slack"): "**Update** · +2 outlets: VOA Korean, Daily NK\n",
    ("update", "text"): "Update · +2 outlets: VOA Korean, Daily NK\n",
    ("reminder", "email"): "<strong>Reminder</strong> (unchanged since 2026-11-21 17:05 KST)",
    ("reminder", "telegram"): "<b>Reminder</b> (unchanged since 2026-11-21 17:05 KST)\n",
    ("reminder", "slack"): "**Reminder** (unchanged since 2026-11-21 17:05 KST)\n",
    ("reminder", "text"): "Reminder (unchanged since 2026-11-21 17:05 KST)\n",
}


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("kind", ["alert", "update", "reminder"])
def test_alert_layout(kind: str, channel: str, make_view: Callable[..., AlertView]) -> None:
    view = make_view(kind=kind, new_outlets=("VOA Korean", "Daily NK") if kind == "update" else ())
    body = render.render_alert(view, channel, "Asia/Seoul").body
    for fragment in ALERT_FRAGMENTS[channel]:
        assert fragment in body
    for other in ("update", "reminder"):
        if other == kind:
            assert KIND_FRAGMENTS[(other, channel)] in body
        else:
            assert other.capitalize() not in body


@pytest.mark.parametrize("channel", CHANNELS)
def test_an_update_without_new_outlets_still_says_it_is_one(
    channel: str, make_view: Callable[..., AlertView]
) -> None:
    body = render.render_alert(make_view(kind="update"), channel, "UTC").body
    assert "Update" in body and "(revision 3)" in body and "outlets:" not in body


def _plain(body: str) -> str:
    """A message's words without its markup: tags, bold marks and entities."""
    return html.unescape(re.sub(r"<[^>]+>", "", body)).replace("**", "").replace("*", "")


#: What the last message on the channel said: 60 held in Dandong, a detention, high.
BEFORE = Told(severity="high", events=("detention",), people=60, places=("Dandong",))


@pytest.mark.parametrize(
    ("before", "now", "line"),
    [
        # the count, the severity, a graver event and a new place: gravest news first
        (
            BEFORE,
            {"events": ("forced_repatriation", "detention")},
            "60 → 600 people · HIGH → CRITICAL · now also: Forced repatriation · "
            "now also in Tumen · +2 outlets: VOA Korean, Daily NK",
        ),
        # a count where the last message had none
        (
            replace(BEFORE, people=None, severity="critical"),
            {"events": ("detention",), "places": ("Dandong",)},
            "600 people (first count) · +2 outlets: VOA Korean, Daily NK",
        ),
        # one person is a person
        (
            replace(BEFORE, people=2, severity="critical"),
            {"people": 1, "events": ("detention",), "places": ("Dandong",)},
            "2 → 1 person · +2 outlets",
        ),
        # an approximate count keeps its hedge on either side of the arrow ("about 60")
        (
            replace(BEFORE, people_approximate=True),
            {"events": ("forced_repatriation", "detention")},
            "~60 → 600 people · HIGH → CRITICAL · now also: Forced repatriation · "
            "now also in Tumen · +2 outlets: VOA Korean, Daily NK",
        ),
        (
            BEFORE,
            {
                "events": ("detention",),
                "severity": "high",
                "places": ("Dandong",),
                "people_approximate": True,
            },
            "60 → ~600 people · +2 outlets",
        ),
        # the same number, now exact: the count was confirmed
        (
            replace(BEFORE, people=600, people_approximate=True, severity="critical"),
            {"events": ("detention",), "places": ("Dandong",)},
            "~600 → 600 people · +2 outlets",
        ),
        # nothing it showed changed (the news went in a message this channel did not get)
        (
            replace(BEFORE, people=600, severity="critical"),
            {"events": ("detention",), "places": ("Dandong",)},
            "Update · +2 outlets: VOA Korean, Daily NK",
        ),
    ],
)
@pytest.mark.parametrize("channel", CHANNELS)
def test_an_update_says_what_changed_since_the_last_message(
    channel: str,
    before: Told,
    now: dict[str, Any],
    line: str,
    make_view: Callable[..., AlertView],
) -> None:
    view = make_view(kind="update", before=before, new_outlets=("VOA Korean", "Daily NK"), **now)
    body = render.render_alert(view, channel, "UTC").body
    assert line in _seen(body)
    if "now also" not in line:
        assert "now also" not in body


@pytest.mark.parametrize("channel", CHANNELS)
def test_an_update_without_a_known_last_message_names_no_change(
    channel: str, make_view: Callable[..., AlertView]
) -> None:
    # sent before watcher kept what messages said, or never sent on this channel
    body = render.render_alert(make_view(kind="update", before=None), channel, "UTC").body
    assert "→" not in body and "now also" not in body and "(revision 3)" in body


@pytest.mark.parametrize("channel", CHANNELS)
def test_an_update_in_korean_says_what_changed_in_korean(
    channel: str, make_view: Callable[..., AlertView]
) -> None:
    view = make_view(kind="update", before=BEFORE, events=("forced_repatriation", "detention"))
    body = _plain(render.render_alert(view, channel, "UTC", locale="ko").body)
    assert "60명 → 600명 · 중요 → 긴급 · 사건 유형 추가: 강제북송 · 장소 추가: Tumen" in body
    hedged = replace(view, before=replace(BEFORE, people_approximate=True))
    body = _plain(render.render_alert(hedged, channel, "UTC", locale="ko").body)
    assert "약 60명 → 600명 · 중요 → 긴급" in body


def _seen(text: str) -> str:
    """What a reader sees of a message in any format: `_plain`, without the escapes a format
    puts before or after a character ("\\~", a zero-width space) or the full-width forms a
    format shows instead of a markup character ("～" for "~")."""
    shown = _plain(text).replace("\\", "").replace("\u200b", "")
    return shown.replace("～", "~").replace("［", "[").replace("］", "]")


@pytest.mark.parametrize("locale", ["en", "ko"])
@pytest.mark.parametrize("channel", sorted(render.CHANNELS))
def test_an_approximate_count_keeps_the_outlets_hedge(channel: str, locale: str) -> None:
    """ "중국, 탈북민 600여명 강제북송" says about 600: every alert and digest says "~600 people"
    (약 600명 in Korean), as the outlet did; an exact count is shown without it."""
    from watcher.extract import count
    from watcher.rules import normalize

    stated = count(normalize("중국, 탈북민 600여명 강제북송"))
    assert stated is not None
    view = sample_view(people=stated.n, people_approximate=stated.approximate)
    hedged, exact = {"en": ("~600 people", "600 people"), "ko": ("약 600명", "600명")}[locale]
    messages = [
        render.render_alert(view, channel, "Asia/Seoul", locale=locale),
        render.render_digest([view], "morning", channel, "Asia/Seoul", locale=locale),
    ]
    for msg in messages:
        assert hedged in _seen(f"{msg.title}\n{msg.body}")
    assert hedged in _seen(messages[0].title)  # the first line an advocate reads
    for msg in (
        render.render_alert(replace(view, people_approximate=False), channel, "UTC", locale=locale),
        render.render_digest(
            [replace(view, people_approximate=False)], "morning", channel, "UTC", locale=locale
        ),
    ):
        seen = _seen(f"{msg.title}\n{msg.body}")
        assert exact in seen and hedged not in seen


#: A hostile name short enough to be shown whole as a place (60) and as an event type.
HOSTILE_NAME = "<b>x</b> [link](javascript:alert(1)) @channel <script>"
HOSTILE_NAME_SHOWN = {
    "email": "&lt;b&gt;x&lt;/b&gt; [link](javascript:alert(1)) @channel &lt;script&gt;",
    "telegram": "&lt;b&gt;x&lt;/b&gt; [link](javascript:alert(1)) @\u200bchannel &lt;script&gt;",
    "slack": "\\<b\\>x\\</b\\> \\[link\\](javascript:alert(1)) @\u200bchannel \\<script\\>",
    "text": "<\u200bb>x<\u200b/b> [link]\u200b(javascript:alert(1)) @\u200bchannel <\u200bscript>",
}


@pytest.mark.parametrize("channel", CHANNELS)
def test_what_changed_is_escaped_like_any_source_text(
    channel: str, make_view: Callable[..., AlertView]
) -> None:
    # a place or event name is the rules' word, but the stored row is read back as data
    view = make_view(
        kind="update", before=BEFORE, places=("Dandong", HOSTILE_NAME), events=(HOSTILE_NAME,)
    )
    body = render.render_alert(view, channel, "UTC").body
    (line,) = [x for x in body.splitlines() if "now also in" in x]
    shown = HOSTILE_NAME_SHOWN[channel]
    assert f"now also: {shown} · now also in {shown}" in line


@pytest.mark.parametrize("channel", CHANNELS)
def test_reminder_without_any_report_time_names_the_revision(
    channel: str, make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    view = make_view(kind="reminder", first=make_report(published_at=None), others=())
    body = render.render_alert(view, channel, "UTC").body
    assert "(unchanged since revision 3)" in body and "time unknown" in body


@pytest.mark.parametrize(
    ("tz", "shown"),
    [
        ("Asia/Seoul", "2026-11-20 17:05 KST"),
        ("UTC", "2026-11-20 08:05 UTC"),
        ("Europe/Zurich", "2026-11-20 09:05 CET"),
        ("America/New_York", "2026-11-20 03:05 EST"),
        ("Asia/Shanghai", "2026-11-20 16:05 CST"),
    ],
)
@pytest.mark.parametrize("channel", CHANNELS)
def test_report_times_are_shown_in_the_route_zone(
    tz: str, shown: str, channel: str, make_view: Callable[..., AlertView]
) -> None:
    body = render.render_alert(make_view(), channel, tz).body
    assert shown in body


def test_utc_to_seoul_is_nine_hours_later_even_across_midnight(
    make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    late = make_report(published_at=datetime(2026, 12, 31, 20, 30, tzinfo=UTC))
    body = render.render_alert(make_view(first=late, others=()), "text", "Asia/Seoul").body
    assert "2027-01-01 05:30 KST" in body


@pytest.mark.parametrize("channel", CHANNELS)
def test_korean_and_chinese_text_render_intact(
    channel: str, make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    zh = "中国外交部：不存在所谓“脱北者”问题"
    ko = '단둥서 탈북민 600여명 강제북송…"국제법 위반"'
    view = make_view(
        first=make_report(title=zh, text=ko, lang="zh"),
        places=("단둥", "丹东"),
        new_outlets=("연합뉴스",),
        kind="update",
    )
    msg = render.render_alert(view, channel, "Asia/Seoul")
    assert zh in msg.body and "단둥, 丹东" in msg.body and "연합뉴스" in msg.body
    assert "단둥서 탈북민 600여명 강제북송…" in msg.body
    assert "단둥, 丹东" in msg.title


# --------------------------------------------------------------------------- hostile text


@pytest.fixture
def hostile_view(
    make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> AlertView:
    """Source text trying every trick: markup, mentions, a javascript: link, bidi, controls."""
    return make_view(
        first=make_report(title=HOSTILE_RAW, text=HOSTILE_RAW, source_name="Yonhap <i>"),
        others=(
            make_report(
                source_id="evil",
                source_name=HOSTILE_RAW,
                title=HOSTILE_RAW,
                url="javascript:alert(1)",
            ),
            make_report(source_id="quote", title="q", url='https://e.org/"><script>x</script>'),
        ),
        places=(),
        people=None,
        events=("un_action",),
        rules=("rule<1>",),
    )


@pytest.mark.parametrize("channel", CHANNELS)
def test_hostile_text_renders_literally_and_inertly(channel: str, hostile_view: AlertView) -> None:
    for msg in every_message(hostile_view, channel):
        assert HOSTILE_SHOWN[channel] in msg.body
        for gone in ("\u202e", "\x00", "\n@channel"):
            assert gone not in msg.body and gone not in msg.title


@pytest.mark.parametrize("channel", HTML_CHANNELS)
def test_hostile_html_holds_only_our_markup(channel: str, hostile_view: AlertView) -> None:
    for msg in every_message(hostile_view, channel):
        soup = BeautifulSoup(msg.body, "html.parser")
        assert soup.find("script") is None
        assert all(b.get_text() != "x" for b in soup.find_all("b"))
        hrefs = [a["href"] for a in soup.find_all("a")]
        assert hrefs and all(h.startswith(("https://", "http://")) for h in hrefs)
        checker = Tags(msg.body)
        assert checker.balanced
        if channel == "telegram":
            assert set(checker.tags) <= TELEGRAM_TAGS


@pytest.mark.parametrize("channel", HTML_CHANNELS)
def test_a_quote_in_a_url_cannot_leave_the_href(channel: str, hostile_view: AlertView) -> None:
    body = render.render_alert(hostile_view, channel, "UTC").body
    soup = BeautifulSoup(body, "html.parser")
    hrefs = [a["href"] for a in soup.find_all("a")]
    assert "https://e.org/%22%3E%3Cscript%3Ex%3C/script%3E" in hrefs
    # Two reports have http(s) links; the javascript: one is listed without a link.
    assert len(hrefs) == 2 and not any("javascript" in h for h in hrefs)


@pytest.mark.parametrize(
    ("channel", "title"),
    [
        (
            "email",
            "[CRITICAL] UN action: <b>x</b> *bold* _it_ [link](javascript:alert(1)) @channel",
        ),
        (
            "telegram",
            "[CRITICAL] UN action: &lt;b&gt;x&lt;/b&gt; *bold* _it_ [link](javascript:alert(1)) "
            "@\u200bchannel",
        ),
        (
            "slack",
            "[CRITICAL] UN action: <b>x</b> *bold* _it_ [link](javascript:alert(1)) @\u200bchannel",
        ),
        (
            "text",
            "[CRITICAL] UN action: <\u200bb>x<\u200b/b> *bold* _it_ "
            "[link]\u200b(javascript:alert(1)) @\u200bchannel",
        ),
    ],
)
def test_hostile_title_is_plain_or_escaped_for_where_apprise_puts_it(
    channel: str, title: str, hostile_view: AlertView
) -> None:
    # Email subjects and Slack titles are plain text (apprise escapes Slack's); Telegram's
    # title goes unescaped into the HTML body, so it arrives escaped.
    assert render.render_alert(hostile_view, channel, "UTC").title.startswith(title)


def test_hostile_slack_link_parts_cannot_break_the_link(
    make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    first = make_report(title="a|b <c> [d]", url="https://e.org/x|y<z>?q=a b")
    body = render.render_alert(make_view(first=first), "slack", "UTC").body
    assert "[a｜b \\<c\\> \\[d\\]](<https://e.org/x%7Cy%3Cz%3E?q=a%20b>)" in body


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://www.yna.co.kr/view/AKR1?input=1195m",
            "https://www.yna.co.kr/view/AKR1?input=1195m",
        ),
        ("HTTP://Example.ORG", "http://example.org/"),
        (
            "https://e.org/한국?q=북송#frag",
            "https://e.org/%ED%95%9C%EA%B5%AD?q=%EB%B6%81%EC%86%A1#frag",
        ),
        ("https://e.org/a%20b", "https://e.org/a%20b"),
        ("https://e.org:8443/x", "https://e.org:8443/x"),
        ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
        ("https://e.org/\"onmouseover='x'", "https://e.org/%22onmouseover=%27x%27"),
        ("javascript:alert(1)", None),
        ("JaVaScRiPt:alert(1)", None),
        ("java\nscript:alert(1)", None),
        ("data:text/html,<script>", None),
        ("mailto:a@example.org", None),
        ("//e.org/x", None),
        ("/relative", None),
        ("https://news.example@evil.example/", None),
        ("https://e.org:99999/", None),
        ("https://", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_url(url: str | None, expected: str | None) -> None:
    assert render.safe_url(url) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\u202ab\u202ec\u2066d\u2069e", "abcde"),
        ("line\nbreak\r\nand\ttab\u2028sep", "line break and tab sep"),
        ("nul\x00bell\x07esc\x1b[31m c1\x85", "nulbellesc[31m c1"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("  spaced   out  ", "spaced out"),
        ("강제북송 遣返", "강제북송 遣返"),
        (None, ""),
    ],
)
def test_clean(text: str | None, expected: str) -> None:
    assert render.clean(text) == expected


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_no_source_text_ever_becomes_telegram_or_email_markup(text: str) -> None:
    report = Report(source_id="s", source_name=text, title=text, url=text, text=text)
    view = AlertView(
        kind="update",
        story_id=1,
        revision=1,
        events=("detention",),
        severity="high",
        rules=(text,),
        places=(text,),
        first=report,
        others=(report,),
        new_outlets=(text,),
    )
    for channel in HTML_CHANNELS:
        msg = render.render_alert(view, channel, "UTC")
        checker = Tags(msg.body)
        assert checker.balanced
        assert all(h.startswith(("http://", "https://")) for h in checker.hrefs)
        ours = (
            {"b", "i", "a"}
            if channel == "telegram"
            else {"div", "p", "strong", "br", "a", "span", "blockquote", "ul", "li"}
        )
        assert set(checker.tags) <= ours
        if channel == "telegram":  # apprise wraps the title in <b>; an email subject is text
            assert Tags(f"<b>{msg.title}</b>").tags == ["b"]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_slack_escaping_leaves_no_markup_character(text: str) -> None:
    escaped = render.md_escape(render.clean(text))
    assert not set(escaped) & set("*_~`")
    # Every <, >, [, ], # carries a backslash, and no backslash escapes a following character.
    stripped = escaped.replace("\\<", "").replace("\\>", "").replace("\\[", "").replace("\\]", "")
    stripped = stripped.replace("\\#", "").replace("\\\u200b", "")
    assert not set(stripped) & set("<>[]#\\")


# --------------------------------------------------------------------------- length limits


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("hello world again", 13, "hello world…"),  # at a word end when one is near
        ("hello world again", 15, "hello world ag…"),  # else mid-word
        ("강제북송강제북송", 5, "강제북송…"),
        ("abc", 1, "…"),
        ("abc", 0, ""),
    ],
)
def test_cut(text: str, limit: int, expected: str) -> None:
    assert render.cut(text, limit) == expected


@pytest.mark.parametrize(
    ("channel", "measure"),
    [
        # apprise escapes &, < and > in Slack titles; a header block holds 150 characters.
        ("slack", lambda t: len(t) + 4 * t.count("&") + 3 * (t.count("<") + t.count(">")) <= 150),
        ("telegram", lambda t: len(html.unescape(t)) <= 200),
        ("email", lambda t: len(t) <= 250),
        ("text", lambda t: len(t) <= 250),
    ],
)
def test_titles_are_cut_to_the_channel_limit(
    channel: str,
    measure: Callable[[str], bool],
    make_view: Callable[..., AlertView],
    make_report: Callable[..., Report],
) -> None:
    first = make_report(title="탈북민 & <강제북송> @here " * 40)
    title = render.render_alert(
        make_view(people=None, places=(), first=first), channel, "UTC"
    ).title
    assert measure(title) and not measure(title + "x" * 60)
    assert title.startswith("[CRITICAL] Forced repatriation: 탈북민") and title.endswith("…")


@pytest.mark.parametrize("channel", CHANNELS)
def test_an_empty_digest_or_notice_still_has_a_body(channel: str) -> None:
    # apprise and Telegram refuse an empty body.
    assert "No stories." in render.render_digest([], "daily", channel, "UTC").body
    notice = render.render_ops("Source yonhap recovered", [], channel)
    assert "Source yonhap recovered" in notice.body


@pytest.fixture
def huge_view(make_view: Callable[..., AlertView], make_report: Callable[..., Report]) -> AlertView:
    """A 20,000-character lead and 40 other outlets with long, markup-heavy titles."""
    others = tuple(
        make_report(
            source_id=f"s{i}",
            source_name=f"Outlet {i} & <Co>",
            title=f"{i}: " + "탈북민 <b>강제북송</b> & 'quoted' " * 12,
            url=f"https://outlet{i}.example/news/{i}?a=1&b=2",
            published_at=T0 + timedelta(minutes=i),
        )
        for i in range(40)
    )
    return make_view(
        first=make_report(text="중국 당국이 <탈북민> 600여명을 북송했다. " * 800),
        others=others,
    )


def test_telegram_cap_with_a_20000_character_lead_and_40_outlets(huge_view: AlertView) -> None:
    assert len(huge_view.first.text) > 20_000
    msg = render.render_alert(huge_view, "telegram", "Asia/Seoul")
    assert telegram_length(msg) <= 4096
    checker = Tags(msg.body)
    assert checker.balanced and set(checker.tags) <= TELEGRAM_TAGS
    # The facts survive: headline, first report's link, the others counted.
    assert "<b>CRITICAL</b> · Forced repatriation\n600 people" in msg.body
    assert '<a href="https://www.yna.co.kr/view/1?a=1&amp;b=2">' in msg.body
    shown = msg.body.count("• <b>Outlet")
    assert shown + int(msg.body.split("\n+")[1].split(" more outlets")[0]) == 40


def test_slack_cap_keeps_the_body_under_one_block(huge_view: AlertView) -> None:
    msg = render.render_alert(huge_view, "slack", "Asia/Seoul")
    grown = len(msg.body) + 4 * msg.body.count("&") + 2 * msg.body.count("\\<")
    grown += 2 * msg.body.count("\\>")
    assert 1500 < grown <= 3000
    assert "more outlets" in msg.body and len(msg.title) <= 150


@pytest.mark.parametrize("channel", ["email", "text"])
def test_email_and_text_keep_every_outlet_but_cap_the_lead(
    channel: str, huge_view: AlertView
) -> None:
    body = render.render_alert(huge_view, channel, "Asia/Seoul").body
    assert all(f"Outlet {i} " in body for i in range(40)) and "more outlets" not in body
    lead = max(body.split("\n"), key=lambda line: line.count("북송했다"))
    assert lead.count("북송했다") >= 50 and lead.count("북송했다") < 80  # 2,000 characters
    assert "…" in lead


def test_a_short_alert_is_never_cut(make_view: Callable[..., AlertView]) -> None:
    msg = render.render_alert(make_view(), "telegram", "UTC")
    assert "more outlets" not in msg.body and "…" not in msg.body


@pytest.mark.parametrize("channel", ["telegram", "slack"])
def test_a_long_digest_fits_and_says_how_many_were_left_out(
    channel: str, make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    views = [
        make_view(
            story_id=i,
            first=make_report(title=f"Story {i} " + "긴 제목 & <tag> " * 30),
            events=("detention",),
        )
        for i in range(60)
    ]
    msg = render.render_digest(views, "daily", channel, "UTC")
    if channel == "telegram":
        assert telegram_length(msg) <= 4096 and Tags(msg.body).balanced
    else:
        assert len(msg.body) + 4 * msg.body.count("&") + 4 * msg.body.count("\\<") <= 3000
    shown = msg.body.count("Story ")
    hidden = int(msg.body.rsplit("+", 1)[1].split(" more stories")[0])
    assert shown + hidden == 60 and hidden > 0
    # the message names the stories it shows: only they count as told to the channel
    assert len(msg.stories) == shown
    assert all(f"Story {i} " in msg.body for i in msg.stories)


@pytest.mark.parametrize("locale", ["en", "ko"])
@pytest.mark.parametrize(
    "channel", sorted(name for name, spec in render.CHANNELS.items() if spec.limit is not None)
)
def test_the_stories_a_digest_leaves_out_are_one_link_away(
    channel: str,
    locale: str,
    make_view: Callable[..., AlertView],
    make_report: Callable[..., Report],
) -> None:
    # 120 stories, a day apart at 20:00 UTC (05:00 the next day in Seoul): those cut to fit
    # are the oldest; "+N more stories" links the timeline from the oldest one's day, there
    views = [
        make_view(
            story_id=i,
            first=make_report(
                title=f"Story {i} " + "long title " * 12,
                published_at=datetime(2026, 6, 1, 20, tzinfo=UTC) + timedelta(days=i),
            ),
            others=(),
        )
        for i in range(120)
    ]
    timeline = "https://watch.example.org/"
    msg = render.render_digest(
        views, "daily", channel, "Asia/Seoul", locale=locale, timeline_url=timeline
    )
    left_out = [i for i in range(120) if i not in msg.stories]
    assert left_out and min(left_out) == 0
    day = (datetime(2026, 6, 1, 20, tzinfo=UTC) + timedelta(hours=9)).date().isoformat()
    body = html.unescape(msg.body)
    assert f"https://watch.example.org/?since={day}&tz=Asia/Seoul" in body
    spec = render.CHANNELS[channel]
    assert spec.limit is not None and spec.cost(msg.title, msg.body) <= spec.limit  # still fits
    # no timeline configured, or nothing left out: no link
    alone = render.render_digest(views, "daily", channel, "Asia/Seoul", locale=locale)
    assert "?since=" not in alone.body
    few = render.render_digest(
        views[:2], "daily", channel, "Asia/Seoul", locale=locale, timeline_url=timeline
    )
    assert "?since=" not in few.body


#: Every channel format with a length limit: a message over it is refused or cut.
LIMITED = [name for name, spec in render.CHANNELS.items() if spec.limit is not None]


@pytest.mark.parametrize("channel", LIMITED)
@pytest.mark.parametrize("length", [1_200, 4_500, 20_000])
def test_a_report_with_a_very_long_address_still_fits_the_channel(
    channel: str,
    length: int,
    make_view: Callable[..., AlertView],
    make_report: Callable[..., Report],
) -> None:
    # Tracking parameters and session blobs make addresses of thousands of characters; one
    # used to push a Telegram, Slack or Discord alert over the limit, and the alert was refused.
    long_url = "https://news.example/article?id=" + "a" * length
    others = tuple(
        make_report(source_id=f"s{i}", source_name=f"Outlet {i}", url=f"{long_url}&n={i}")
        for i in range(5)
    )
    view = make_view(first=make_report(title="China sends back 600", url=long_url), others=others)
    spec = render.CHANNELS[channel]
    assert spec.limit is not None
    for msg in every_message(view, channel):
        assert spec.cost(msg.title, msg.body) <= spec.limit, (channel, len(msg.body))
        assert "China sends back 600" in msg.body  # the report is told, unlinked if need be


@pytest.mark.parametrize("channel", LIMITED)
def test_an_ordinary_long_address_keeps_its_link(
    channel: str, make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    url = "https://news.example/article?id=" + "a" * 400
    msg = render.render_alert(make_view(first=make_report(url=url)), channel, "UTC")
    assert "a" * 400 in msg.body


@pytest.mark.parametrize(
    ("channel", "length"),
    [
        ("email", 2_100),
        ("discord", 1_200),  # one link of 1,200 characters fits Discord's 2,000
        ("slack", 1_900),
    ],
)
def test_a_long_address_keeps_its_link_when_the_message_fits_with_it(
    channel: str,
    length: int,
    make_view: Callable[..., AlertView],
    make_report: Callable[..., Report],
) -> None:
    """An advocate's only way to the report is its link: it goes only when the message
    cannot fit with it (email has no limit: it never goes)."""
    url = "https://news.example/article?id=" + "a" * length
    msg = render.render_alert(make_view(first=make_report(url=url)), channel, "UTC")
    assert "a" * length in msg.body


def test_plain_text_to_a_service_of_unknown_limit_leaves_a_very_long_link_out(
    make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    """Plain text goes to any other service (an SMS gateway, a pager): its limit is unknown,
    so a link of thousands of characters is not written, its title is."""
    url = "https://news.example/article?id=" + "a" * 2_100
    view = make_view(first=make_report(title="China sends back 600", url=url))
    msg = render.render_alert(view, "text", "UTC")
    assert "a" * 2_100 not in msg.body and "China sends back 600" in msg.body
    kept = render.render_alert(make_view(first=make_report(url=url[:1_500])), "text", "UTC")
    assert url[:1_500] in kept.body


def test_telegram_alert_with_a_4500_character_address_fits_as_apprise_sends_it(
    make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    long_url = "https://news.example/article?id=" + "a" * 4_500
    msg = render.render_alert(make_view(first=make_report(url=long_url)), "telegram", "UTC")
    assert telegram_length(msg) <= 4096
    assert Tags(msg.body).balanced and "news.example" not in msg.body


# --------------------------------------------------------------------------- digests


def test_digest_groups_by_event_gravest_type_first_newest_first_within(
    make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    def story(i: int, event: str, hours: int) -> AlertView:
        first = make_report(title=f"story-{i}", published_at=T0 + timedelta(hours=hours))
        return make_view(story_id=i, events=(event,), first=first, others=())

    views = [
        story(1, "detention", 1),
        story(2, "forced_repatriation", 3),
        story(3, "detention", 5),
        story(4, "un_action", 2),
    ]
    body = render.render_digest(views, "morning", "text", "UTC").body
    order = [body.index(f"story-{i}") for i in (2, 3, 1, 4)]
    assert order == sorted(order)
    groups = [body.index(name) for name in ("Forced repatriation\n", "Detention\n", "UN action\n")]
    assert groups == sorted(groups)


@pytest.mark.parametrize("channel", ["discord", "ntfy", "slack", "telegram"])
def test_a_digest_cut_to_fit_keeps_the_gravest_stories(
    channel: str, make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    # one critical story 20 hours old among many newer low ones: cut to fit, the critical
    # one stays (it was left out for newer ones while the message still showed as critical)
    long = "Regular press conference of the foreign ministry spokesperson " * 3
    critical = make_view(
        story_id=1,
        severity="critical",
        first=make_report(title="story-critical", published_at=T0 - timedelta(hours=20)),
        others=(),
    )
    low = [
        make_view(
            story_id=100 + n,
            severity="low",
            events=("china_position",),
            first=make_report(title=f"{long} {n}", published_at=T0 + timedelta(minutes=n)),
            others=(),
        )
        for n in range(40)
    ]
    message = render.render_digest([*low, critical], "morning", channel, "UTC")
    assert 1 in message.stories and len(message.stories) < 41
    assert "story-critical" in message.body and "more stories" in message.body
    assert message.severity == "critical"


@pytest.mark.parametrize(
    ("channel", "fragments"),
    [
        (
            "email",
            [
                "1 story for morning, newest first.",
                '<h3 style="margin: 16px 0 4px; font-size: 16px;">Forced repatriation</h3>',
                "<strong>CRITICAL</strong> · also Detention · 600 people · Dandong, Tumen",
                'Yonhap · 2026-11-20 17:05 KST: <span lang="ko"><a href="https://www.yna.co.kr/',
                "</a></span> +2 outlets · story #12",
            ],
        ),
        (
            "telegram",
            [
                "<b>Forced repatriation</b>\n• <b>CRITICAL</b> · also Detention · 600 people",
                "Yonhap · 2026-11-20 17:05 KST: <a href=",
                "</a> +2 outlets · <i>#12</i>",
            ],
        ),
        (
            "slack",
            [
                "**Forced repatriation**\n• **CRITICAL** · also Detention · 600 people",
                "Yonhap · 2026-11-20 17:05 KST: [중국, 탈북민 600여명 강제북송](<https://",
                ") +2 outlets · story #12",
            ],
        ),
        (
            "text",
            [
                "Forced repatriation\n- CRITICAL · also Detention · 600 people",
                "  Yonhap · 2026-11-20 17:05 KST: 중국, 탈북민 600여명 강제북송 +2 outlets · "
                "story #12",
                "  https://www.yna.co.kr/view/1?a=1&b=2",
            ],
        ),
    ],
)
def test_digest_layout(
    channel: str, fragments: list[str], make_view: Callable[..., AlertView]
) -> None:
    view = make_view(events=("forced_repatriation", "detention"))
    msg = render.render_digest([view], "morning", channel, "Asia/Seoul")
    assert msg.title == "Digest · 1 story · morning"
    for fragment in fragments:
        assert fragment in msg.body


# --------------------------------------------------------------------------- operator notices


@pytest.mark.parametrize(
    ("channel", "line"),
    [
        ("email", '<p style="margin: 0 0 6px;">HTTP 502: &lt;html&gt;Bad gateway&lt;/html&gt;</p>'),
        ("telegram", "HTTP 502: &lt;html&gt;Bad gateway&lt;/html&gt;\n"),
        ("slack", "HTTP 502: \\<html\\>Bad gateway\\</html\\>\n"),
        ("text", "HTTP 502: <\u200bhtml>Bad gateway<\u200b/html>\n"),
    ],
)
def test_ops_notice_escapes_quoted_server_errors(channel: str, line: str) -> None:
    msg = render.render_ops(
        "Source dailynk unhealthy",
        ["5 failures since 04:10 UTC", "HTTP 502: <html>Bad gateway</html>"],
        channel,
    )
    assert msg.title == "[watcher] Source dailynk unhealthy"
    assert line in msg.body and "5 failures since 04:10 UTC" in msg.body


def test_ops_notice_with_many_lines_fits_telegram() -> None:
    lines = [f"delivery {i} failed: " + "x" * 300 for i in range(100)]
    msg = render.render_ops("Deliveries failing", lines, "telegram")
    assert telegram_length(msg) <= 4096 and "more lines" in msg.body


@pytest.mark.parametrize("channel", CHANNELS)
def test_test_message_names_the_format_and_shows_korean(channel: str) -> None:
    msg = render.render_test(channel)
    assert msg.title == "[watcher] Test notification"
    assert f"Channel format: {channel} (sent as {FORMATS[channel]})." in msg.body
    assert "강제북송 = forced repatriation" in msg.body


# --------------------------------------------------------------------------- overrides


def test_operator_template_overrides_one_file_and_keeps_the_rest(
    tmp_path: Any, make_view: Callable[..., AlertView]
) -> None:
    (tmp_path / "alert.text.j2").write_text(
        "CUSTOM {{ severity_label }} {{ first.outlet }}\n", encoding="utf-8"
    )
    view = make_view()
    assert render.render_alert(view, "text", "UTC", templates_dir=str(tmp_path)).body == (
        "CUSTOM CRITICAL Yonhap\n"
    )
    # Not overridden: the package template.
    assert render.render_alert(view, "email", "UTC", templates_dir=tmp_path).body == (
        render.render_alert(view, "email", "UTC").body
    )
    digest = render.render_digest([view], "r", "text", "UTC", templates_dir=str(tmp_path))
    assert "story #12" in digest.body


def test_operator_notices_can_be_overridden_too(tmp_path: Any) -> None:
    (tmp_path / "ops.telegram.html.j2").write_text(
        "<b>{{ subject }}</b>\n{{ lines|join(' / ') }}\n", encoding="utf-8"
    )
    msg = render.render_ops("Down <now>", ["a", "b<c>"], "telegram", templates_dir=tmp_path)
    assert msg.body == "<b>Down &lt;now&gt;</b>\na / b&lt;c&gt;\n"
    test = render.render_test("telegram", templates_dir=tmp_path)
    assert test.body.startswith("<b>Test notification</b>\nThis is a test message")


@pytest.mark.parametrize(
    ("name", "channel", "expected"),
    [
        ("alert.slack.md.j2", "slack", "T: \\<b\\>x\\</b\\> ＊bold＊"),
        ("alert.telegram.html.j2", "telegram", "T: &lt;b&gt;x&lt;/b&gt; *bold*"),
        ("alert.email.html.j2", "email", "T: &lt;b&gt;x&lt;/b&gt; *bold*"),
    ],
)
def test_an_overriding_template_gets_the_same_escaping(
    name: str,
    channel: str,
    expected: str,
    tmp_path: Any,
    make_view: Callable[..., AlertView],
    make_report: Callable[..., Report],
) -> None:
    (tmp_path / name).write_text("T: {{ first.title }}\n", encoding="utf-8")
    view = make_view(first=make_report(title=HOSTILE))
    body = render.render_alert(view, channel, "UTC", templates_dir=str(tmp_path)).body
    assert body.startswith(expected)


def test_more_outlets_counts_outlets_not_reports(
    make_view: Callable[..., AlertView], make_report: Callable[..., Report]
) -> None:
    # three reports from the first report's own outlet and one from another: "+1 outlet"
    first = make_report(source_id="yna", source_name="Yonhap", title="first")
    others = (
        make_report(source_id="yna", source_name="Yonhap", title="second"),
        make_report(source_id="yna", source_name="Yonhap", title="third"),
        make_report(source_id="dnk", source_name="Daily NK", title="fourth"),
    )
    view = make_view(first=first, others=others)
    body = render.render_digest([view], "morning", "text", "UTC").body
    assert " +1 outlet · story #" in body, body
    only_own = make_view(first=first, others=others[:2])
    body = render.render_digest([only_own], "morning", "text", "UTC").body
    assert " outlet" not in body, body


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(
    ("locale", "shown"),
    [
        ("en", r"undated, found (2026-11-20 )?14:05 KST"),
        ("ko", r"날짜 미상, (2026년 11월 20일 )?14:05 KST 수집"),
    ],
)
def test_an_undated_report_shows_when_it_was_found_never_as_a_publication_time(
    channel: str, locale: str, shown: str
) -> None:
    found = datetime(2026, 11, 20, 5, 5, tzinfo=UTC)  # 14:05 KST
    undated = sample_report(published_at=None, found_at=found)
    dated = sample_report(**RFA)
    for first, others in ((undated, (dated,)), (dated, (undated,))):
        view = sample_view(first=first, others=others)
        body = html.unescape(render.render_alert(view, channel, "Asia/Seoul", locale=locale).body)
        body = body.replace("\u00a0", " ")
        assert re.search(shown, body), body
        # the time it was found is shown once, and only as such
        assert body.count("14:05 KST") == 1, body


def test_a_stored_report_without_a_publication_time_is_shown_undated() -> None:
    fetched = datetime(2026, 11, 20, 5, 5, tzinfo=UTC)
    stored = StoredReport(
        item_id=1,
        key="k",
        source_id="rfa",
        title="t",
        url=None,
        lang="en",
        published_at=None,
        fetched_at=fetched,
        added_at=fetched,
    )
    shown = stored.shown({"rfa": "RFA"})
    assert (shown.published_at, shown.found_at, shown.source_name) == (None, fetched, "RFA")
    dated = replace(stored, published_at=fetched - timedelta(hours=3)).shown({})
    assert (dated.published_at, dated.found_at) == (fetched - timedelta(hours=3), None)


@pytest.mark.parametrize(
    ("locale", "written", "shown"),
    [
        ("en", "2026-11-19", "2026-11-19"),
        ("en", "2026-11-16/2026-11-20", "2026-11-16 to 2026-11-20"),
        ("en", "--02-21", "02-21 (year not given)"),
        ("ko", "2026-11-16/2026-11-20", "2026년 11월 16일–2026년 11월 20일"),
        ("ko", "--02-21", "2월 21일(연도 미상)"),
        ("ko", "2026-10", "2026년 10월"),
    ],
)
def test_the_dates_of_the_summary_read_as_dates(locale: str, written: str, shown: str) -> None:
    view = sample_view(dates=(written,))
    body = render.render_alert(view, "text", "Asia/Seoul", locale=locale).body
    assert f"Dandong, Tumen · {shown}" in body, body
