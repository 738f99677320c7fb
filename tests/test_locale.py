"""Alerts in the advocate's language: a route's `locale: ko` writes labels, event names,
severities and dates in Korean, in every channel format, with the English path's escaping;
reports keep their own titles; an English route is unchanged; a wrong locale is a config error."""

from __future__ import annotations

import asyncio
import html
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from tests.helpers import watcher
from tests.messages import (
    HOSTILE,
    HOSTILE_SHOWN,
    T0,
    TELEGRAM_TAGS,
    Sender,
    item,
    queue,
    report,
    view,
)
from watcher import render
from watcher.config import ConfigError, load_config_text
from watcher.config.models import LOCALES
from watcher.outbox import Deliverer
from watcher.store import Store
from watcher.store.outbox import Outbox
from watcher.types import AlertView, Delivery, Message

EMAIL_TAGS = {"div", "p", "strong", "a", "blockquote", "ul", "li", "span", "br"}

#: Labels of the English templates that a Korean message must not contain.
ENGLISH_LABELS = ("First:", "Also:", "Matched:", "more outlet", "revision", "story #", "people")


def korean(v: AlertView, channel: str) -> Message:
    return render.render_alert(v, channel, "Asia/Seoul", locale="ko")


def shown_text(channel: str, body: str) -> str:
    """What a reader sees of a message body (markup removed, entities decoded)."""
    if channel in ("email", "telegram"):
        return BeautifulSoup(body, "html.parser").get_text()
    return body.replace("**", "")


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("channel", ["email", "slack", "telegram"])
def test_a_korean_route_writes_labels_events_and_dates_in_korean(channel: str) -> None:
    msg = korean(view(), channel)
    assert msg.title.startswith("[긴급] 강제북송: 600명 · Dandong, Tumen")
    seen = shown_text(channel, msg.body)
    for words in (
        "긴급",  # severity
        "강제북송",  # event
        "600명",  # people
        "2026년 11월 19일",  # a date the report states
        "최초 보도",  # first report
        "Yonhap (ko) · 2026년 11월 20일 17:05 KST",  # outlet, language, local time in Korean
        "다른 보도",  # other outlets
        "탐지 근거",  # the why line's heading
        "사건 #12 · 3차 개정",
    ):
        assert words in seen, (words, seen)
    for label in ENGLISH_LABELS:
        assert label not in seen
    # The reports keep their own titles, in their own language.
    assert "중국, 탈북민 600여명 강제북송" in seen
    assert "China sends back 600 North Koreans" in seen


@pytest.mark.parametrize("channel", ["email", "slack", "telegram"])
def test_updates_reminders_and_digests_are_korean_too(channel: str) -> None:
    update = korean(view(kind="update", new_outlets=("RFA",)), channel)
    assert update.title.startswith("[긴급] 업데이트 · 강제북송")
    assert "매체 +1곳: RFA" in shown_text(channel, update.body)
    again = korean(view(kind="reminder"), channel)
    assert again.title.startswith("[긴급] 다시 알림 · 강제북송")
    assert "2026년 11월 20일 18:05 KST 이후 변동 없음" in shown_text(channel, again.body)
    digest = render.render_digest(
        [view(), view(story_id=13, events=("detention",), severity="high", people=None)],
        "morning",
        channel,
        "Asia/Seoul",
        locale="ko",
    )
    assert digest.title == "요약 · 사건 2건 · morning"
    seen = shown_text(channel, digest.body)
    for words in ("강제북송", "구금", "긴급", "중요", "외 매체 1곳", "#13"):
        assert words in seen, (words, seen)
    assert "stor" not in seen and "outlet" not in seen


def test_every_locale_has_words_and_every_template() -> None:
    assert set(render.WORDS) == set(LOCALES)
    for locale in LOCALES:
        for channel in render.CHANNELS:
            for kind in ("alert", "update", "reminder"):
                assert render.render_alert(view(kind=kind), channel, "UTC", locale=locale).body
            assert render.render_digest([view()], "d", channel, "UTC", locale=locale).body
            assert render.render_digest([], "d", channel, "UTC", locale=locale).body


@pytest.mark.parametrize("channel", list(render.CHANNELS))
def test_korean_messages_hold_no_english_label(channel: str) -> None:
    body = korean(view(kind="update", new_outlets=("RFA",)), channel).body
    digest = render.render_digest([view()], "d", channel, "UTC", locale="ko").body
    for label in (*ENGLISH_LABELS, "Update", "also", "No stories"):
        assert label not in body and label not in digest, (label, channel)


def test_an_unknown_locale_is_a_bug_not_a_fallback() -> None:
    with pytest.raises(ValueError, match="unknown locale 'kr'"):
        render.render_alert(view(), "telegram", "UTC", locale="kr")


# --------------------------------------------------------------------------- glosses


def test_glosses_stay_where_the_report_language_differs_from_the_route() -> None:
    ko = korean(view(), "text").body
    # Korean terms need no English gloss for a Korean reader; Chinese ones keep theirs.
    assert "return: 강제북송 near 탈북민;" in ko
    assert "(forced repatriation)" not in ko and "(North Korean escapees)" not in ko
    assert "zh-return: 遣返 (repatriation) + 脱北者 (defectors)" in ko
    en = render.render_alert(view(), "text", "Asia/Seoul").body
    assert "강제북송 (forced repatriation) near 탈북민 (North Korean escapees)" in en
    assert "遣返 (repatriation) + 脱北者 (defectors)" in en


# --------------------------------------------------------------------------- escaping


def hostile() -> AlertView:
    """HOSTILE everywhere: the Korean path must show it as the English one does (HOSTILE_SHOWN)."""
    return view(
        first=report(title=HOSTILE, text=HOSTILE, source_name=HOSTILE),
        others=(report(source_name="RFA", title=HOSTILE, url="https://rfa.org/<x>"),),
        places=(HOSTILE,),
        rules=(f"r: {HOSTILE}",),
        new_outlets=(HOSTILE,),
        kind="update",
    )


@pytest.mark.parametrize("channel", ["email", "slack", "telegram"])
def test_hostile_titles_are_escaped_as_on_the_english_path(channel: str) -> None:
    ko = korean(hostile(), channel)
    en = render.render_alert(hostile(), channel, "Asia/Seoul")
    expected = HOSTILE_SHOWN[channel]
    assert ko.body.count(expected) >= 4  # title, lead, outlet, the other report's title
    assert ko.body.count(expected) == en.body.count(expected)
    assert "<script>" not in ko.body and "<!here>" not in ko.body
    assert "@channel" not in ko.title or channel == "email"


@pytest.mark.parametrize("channel", list(render.CHANNELS))
def test_every_korean_format_escapes_with_the_english_paths_functions(channel: str) -> None:
    spec = render.CHANNELS[channel]
    dialect = render.DIALECTS[spec.syntax]
    shown = dialect.text(HOSTILE)
    if dialect.html:
        shown = html.escape(shown, quote=False)
    ko = korean(hostile(), channel).body
    en = render.render_alert(hostile(), channel, "Asia/Seoul").body
    assert ko.count(shown) >= 3 and ko.count(shown) == en.count(shown)


@pytest.mark.parametrize(
    ("channel", "allowed"), [("email", EMAIL_TAGS), ("telegram", TELEGRAM_TAGS)]
)
def test_hostile_korean_html_holds_only_our_markup(channel: str, allowed: set[str]) -> None:
    body = korean(hostile(), channel).body
    soup = BeautifulSoup(body, "html.parser")
    assert {tag.name for tag in soup.find_all(True)} <= allowed
    hrefs = [a["href"] for a in soup.find_all("a")]
    assert hrefs == [
        "https://www.yna.co.kr/view/1?a=1&b=2",
        "https://rfa.org/%3Cx%3E",
    ]
    assert html.unescape(HOSTILE_SHOWN[channel]) in soup.get_text()


def test_a_hostile_korean_title_is_plain_where_apprise_puts_it() -> None:
    v = view(people=None, places=(), first=report(title=HOSTILE))
    assert korean(v, "telegram").title.startswith("[긴급] 강제북송: &lt;b&gt;x&lt;/b&gt;")
    assert "@\u200bchannel" in korean(v, "slack").title


# --------------------------------------------------------------------------- English


def test_an_english_route_is_unchanged() -> None:
    v = view()
    assert render.render_alert(v, "telegram", "Asia/Seoul", locale="en") == render.render_alert(
        v, "telegram", "Asia/Seoul"
    )
    msg = render.render_alert(v, "telegram", "Asia/Seoul")
    assert msg.title == "[CRITICAL] Forced repatriation: 600 people · Dandong, Tumen"
    assert msg.body == (
        "First: <b>Yonhap</b> (ko) · 2026-11-20 17:05 KST\n"
        '<a href="https://www.yna.co.kr/view/1?a=1&amp;b=2">중국, 탈북민 600여명 강제북송</a>\n'
        "<i>중국 당국이 탈북민 600여명을 북송했다.</i>\n"
        "\n"
        "<b>CRITICAL</b> · Forced repatriation\n"
        "600 people · Dandong, Tumen · 2026-11-19\n"
        "\n"
        "Also:\n"
        '• <b>RFA</b> (en) · 18:05 KST: <a href="https://www.rfa.org/english/1">China sends '
        "back 600 North Koreans</a>\n"
        "\n"
        "Matched: return: 강제북송 (forced repatriation) near 탈북민 (North Korean escapees); "
        "zh-return: 遣返 (repatriation) + 脱北者 (defectors)\n"
        "<i>story #12, revision 3</i>\n"
    )
    digest = render.render_digest([v], "morning", "email", "UTC")
    assert digest.title == "Digest · 1 story · morning"
    assert "1 story for morning, newest first." in digest.body


# --------------------------------------------------------------------------- configuration

BASE = """\
sources:
  - {id: yonhap, name: Yonhap, kind: feed, url: "https://e.org/y", lang: en}
  - {id: dailynk-ko, name: 데일리NK, kind: feed, url: "https://e.org/d", lang: ko}
concepts:
  nk_people: {gloss: North Korean escapees, en: [north korean*], ko: [탈북민]}
  sent_back: {gloss: sent back, en: [repatriat*], ko: [북송]}
rules:
  - {id: return, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}
channels:
  - {id: tg-ko, url: "tgram://1:abc/2"}
  - {id: tg-en, url: "tgram://1:abc/3"}
  - {id: ops-mail, url: "mailto://u:p@example.org"}
routes:
  - {id: ops, channels: [ops-mail], ops: true}
"""
ROUTE_LINE = BASE.count("\n") + 1


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("kr", "unknown locale 'kr' (did you mean 'ko'?)"),
        ("ko-KR", "unknown locale 'ko-KR' (did you mean 'ko'?)"),
        ("korean", "unknown locale 'korean' (did you mean 'ko'?)"),
        ("fr", "unknown locale 'fr' (alerts can be written in: en, ko)"),
    ],
)
def test_an_unknown_locale_is_an_error_on_its_line(locale: str, expected: str) -> None:
    text = BASE + f"  - id: seoul\n    channels: [tg-ko]\n    locale: {locale}\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "w.yaml", {})
    assert info.value.problems == [f"w.yaml:{ROUTE_LINE + 2}: routes[1].locale: {expected}"]


def test_locale_is_its_own_key_not_the_langs_filter() -> None:
    text = BASE + "  - {id: seoul, channels: [tg-ko], locale: ko, langs: [en]}\n"
    (_, route) = load_config_text(text, "w.yaml", {}).config.routes
    assert route.locale == "ko" and route.langs == ("en",)
    (_, plain) = load_config_text(BASE + "  - {channels: [tg-en]}\n", "w.yaml", {}).config.routes
    assert plain.locale == "en"


def test_a_locale_on_an_ops_route_is_refused() -> None:
    text = BASE.replace("ops: true}", "ops: true, locale: ko}")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "w.yaml", {})
    assert info.value.problems == [
        f"w.yaml:{ROUTE_LINE - 1}: routes[0].locale: locale has no effect on an ops route: it "
        "gets operator notices, not stories (remove it, or remove ops: true)"
    ]


@pytest.mark.e2e
def test_check_exits_2_naming_the_file_and_line_of_an_unknown_locale(tmp_path: Path) -> None:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(BASE + "  - id: seoul\n    channels: [tg-ko]\n    locale: kr\n")
    result = watcher("--config", str(cfg), "check")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{cfg}:{ROUTE_LINE + 2}: routes[1].locale: unknown locale 'kr' (did you mean 'ko'?)",
        "1 problem found; nothing was changed.",
    ]


# --------------------------------------------------------------------------- end to end

ROUTES = """\
  - {id: seoul, channels: [tg-ko], locale: ko, group_wait: 0s}
  - {id: geneva, channels: [tg-en], group_wait: 0s}
settings: {timezone: Asia/Seoul}
"""


def queued_story(store: Store) -> Any:
    """One Korean report matched, grouped and queued for both routes, as a poll does."""
    title = "<b>중국</b>, 탈북민 60여명 북송 @channel"
    text = "중국 당국이 탈북민 60여명을 북송했다."
    found = item("https://d.org/1", "dailynk-ko", title, text=text, lang="ko")
    return queue(store, BASE + ROUTES, [found])


def test_a_queued_delivery_renders_in_its_routes_locale(store: Store) -> None:
    """The store's view of each queued delivery, rendered as the outbox renders it."""
    config = queued_story(store)
    outbox = Outbox(store)
    deliveries: list[Delivery] = sorted(outbox.listing(), key=lambda d: d.route)
    assert [(d.route, d.channel, d.kind) for d in deliveries] == [
        ("geneva", "tg-en", "alert"),
        ("seoul", "tg-ko", "alert"),
    ]
    routes = {r.key(i): r for i, r in enumerate(config.routes)}
    names = {s.id: s.display_name for s in config.sources}
    bodies = {}
    for d in deliveries:
        found = outbox.view(d, names)
        assert found is not None
        route = routes[d.route]
        bodies[d.route] = render.render_alert(
            found[0], "telegram", config.settings.timezone, locale=route.locale
        )
    assert bodies["seoul"].title.startswith("[중요] 강제북송")
    assert "최초 보도: <b>데일리NK</b> (ko) · 2026년 11월 20일 17:05 KST" in bodies["seoul"].body
    assert "&lt;b&gt;중국&lt;/b&gt;, 탈북민 60여명 북송 @\u200bchannel" in bodies["seoul"].body
    assert bodies["geneva"].title.startswith("[HIGH] Forced repatriation")
    assert "First: <b>데일리NK</b> (ko) · 2026-11-20 17:05 KST" in bodies["geneva"].body


def test_the_outbox_sends_a_korean_routes_message_in_korean(store: Store) -> None:
    """Through the delivery worker itself: claim, render, send (a recording sender)."""
    config = queued_story(store)
    sent = Sender()
    deliverer = Deliverer(store, config, clock=lambda: T0 + timedelta(minutes=1), send=sent)
    assert asyncio.run(deliverer.run_due()) == 2
    ko, en = sent["tgram://1:abc/2"], sent["tgram://1:abc/3"]
    assert ko.title.startswith("[중요] 강제북송")
    assert "최초 보도" in ko.body and "탐지 근거" in ko.body and "First:" not in ko.body
    assert "&lt;b&gt;중국&lt;/b&gt;" in ko.body and "<b>중국</b>" not in ko.body
    assert en.title.startswith("[HIGH] Forced repatriation") and "First:" in en.body
    # What was sent is what the outbox recorded as sent.
    assert {d.status for d in Outbox(store).listing()} == {"sent"}
