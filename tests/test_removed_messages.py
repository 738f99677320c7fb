"""Messages about reports removed at source (a re-check found the page gone: 404/410).

A delivery of kind "removed" renders as a message of its own kind: its title says so and its
body lists the removed reports (outlet and headline, escaped like every headline in the
format) above the story. Any other message about such a story (alert, update, reminder, a
digest entry) names them in one line. A story without removed reports renders exactly as
before. End to end: `item_checks.removed_at` → `Outbox.view` → render → the sender.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape
from sqlalchemy import select, update

from tests.messages import (
    CHAT,
    ENGLISH,
    HOSTILE_ALPHABET,
    OTHER_URL,
    PLAIN,
    RULE_AND_CHANNELS,
    T0,
    bare_url,
    english_view,
    every_kind,
    expected_hrefs,
    item,
    links,
    live_mention,
    queue,
    send_due,
    signature,
    text_view,
)
from tests.messages import report as sample_report
from watcher import render
from watcher.outbox import _superseded
from watcher.store import Store
from watcher.store import tables as t
from watcher.store.outbox import Outbox
from watcher.types import AlertView, Delivery, Message, Report

HOSTILE = '<b>x</b> & "y" @channel'
GONE = f"RFA: {HOSTILE}"
FORMATS = list(render.CHANNELS)
LOCALES = list(render.WORDS)
CASES = [(f, loc) for f in FORMATS for loc in LOCALES]
IDS = [f"{f}-{loc}" for f, loc in CASES]

#: The title's head and the one line's label, by locale.
HEAD = {"en": "Removed at source", "ko": "출처에서 삭제됨"}


def report(**kw: Any) -> Report:
    """Yonhap's English report; `kw` replaces any field."""
    return sample_report(**(ENGLISH | kw))


def view(**kw: Any) -> AlertView:
    """The English sample, with RFA's hostile headline as the other report."""
    rfa = report(source_id="rfa", source_name="RFA", title=HOSTILE, url="https://rfa.org/1")
    return english_view(**({"others": (rfa,)} | kw))


def shown(fmt: str, text: str) -> str:
    """`text` as the format writes an untrusted value (its dialect, then HTML escaping)."""
    dialect = render.DIALECTS[render.CHANNELS[fmt].syntax]
    out = dialect.text(render.clean(text))
    return str(escape(out)) if dialect.html else out


def one_line(fmt: str, locale: str, text: str) -> str:
    label = f"<strong>{HEAD[locale]}:</strong>" if fmt == "email" else f"{HEAD[locale]}:"
    return f"{label} {shown(fmt, text)}"


def messages(v: AlertView, fmt: str, locale: str) -> dict[str, Message]:
    """An alert, an update, a reminder and a digest (with a second story) about `v`."""
    return every_kind(v, fmt, locale, replace(v, story_id=7, removed=()))


# --------------------------------------------------------------------------- the message


@pytest.mark.parametrize(("fmt", "locale"), CASES, ids=IDS)
def test_a_removed_message_says_so_and_names_the_report_escaped(fmt: str, locale: str) -> None:
    msg = render.render_alert(view(kind="removed", removed=(GONE,)), fmt, "UTC", locale=locale)
    head = render.CHANNELS[fmt].title(f"[{render.WORDS[locale].severity('critical')}] ")
    assert msg.title.startswith(f"{head}{HEAD[locale]} · "), msg.title
    body = msg.body
    assert HEAD[locale] in body
    listed = shown(fmt, GONE)
    assert listed in body, body
    # Above the story: before the first report's headline.
    assert body.index(listed) < body.index("China sends back 600 North Koreans")
    # Never live: the headline's markup is text, its mention notifies nobody.
    assert "<b>x</b>" not in body
    if fmt != "email":  # mail has no mentions
        assert "@channel" not in body
    # The list replaces the one line other messages carry.
    assert one_line(fmt, locale, GONE) not in body


@pytest.mark.parametrize(("fmt", "locale"), CASES, ids=IDS)
def test_every_message_about_a_story_with_a_removed_report_says_so_in_one_line(
    fmt: str, locale: str
) -> None:
    for kind, msg in messages(view(removed=(GONE,)), fmt, locale).items():
        assert msg.body.count(one_line(fmt, locale, GONE)) == 1, (kind, msg.body)
        assert HEAD[locale] not in msg.title, kind


@pytest.mark.parametrize(("fmt", "locale"), CASES, ids=IDS)
def test_without_removed_reports_every_message_is_as_it_was(fmt: str, locale: str) -> None:
    absent = messages(view(), fmt, locale)  # the field left out, as before it existed
    empty = messages(view(removed=()), fmt, locale)
    for kind, msg in absent.items():
        assert empty[kind] == msg, kind  # byte for byte, title and format too
        assert HEAD[locale] not in msg.body and HEAD[locale] not in msg.title, kind
    # Nor does a removed report change anything but its line: written out, the same bytes.
    with_line = messages(view(removed=(GONE,)), fmt, locale)
    for kind, msg in absent.items():
        line = one_line(fmt, locale, GONE)
        body = with_line[kind].body
        if fmt == "email" and kind != "digest":
            body = body.replace(f'<p style="margin: 12px 0 0;">{line}</p>\n', "")
        elif fmt == "email":
            body = body.replace(f"<br>{line}", "")
        elif kind != "digest":
            sep = render.CHANNELS[fmt].line_break
            blank = "" if fmt == "teams" else sep
            body = body.replace(f"{blank}{line}{sep}", "")
        else:
            indent = "  " if fmt in ("text", "ntfy") else ""
            body = body.replace(f"{indent}{line}{render.CHANNELS[fmt].line_break}", "")
        assert body == msg.body, (kind, with_line[kind].body)


@pytest.mark.parametrize("locale", LOCALES)
def test_a_removed_message_of_a_story_without_removed_reports_still_says_its_kind(
    locale: str,
) -> None:
    """A "removed" delivery whose report left the story since (a split) is still not an
    alert: its title keeps the kind."""
    msg = render.render_alert(view(kind="removed"), "text", "UTC", locale=locale)
    assert HEAD[locale] in msg.title


def test_the_english_removed_message_reads_as_designed() -> None:
    v = view(kind="removed", removed=(GONE,), others=(report(source_name="RFA", title="t"),))
    msg = render.render_alert(v, "text", "Asia/Seoul")
    assert msg.title == "[CRITICAL] Removed at source · Forced repatriation: 600 people · Dandong"
    assert msg.body.startswith(
        "Removed at source · no longer online:\n"
        '- RFA: <\u200bb>x<\u200b/b> & "y" @\u200bchannel\n'
        "\n"
        "CRITICAL · Forced repatriation\n"
    )
    ko = render.render_alert(v, "telegram", "Asia/Seoul", locale="ko")
    assert ko.title.startswith("[긴급] 출처에서 삭제됨 · 강제북송: 600명")
    assert ko.body.startswith(
        "<b>출처에서 삭제됨</b> · 원문 페이지가 사라진 보도:\n"
        "• RFA: &lt;b&gt;x&lt;/b&gt; &amp; &#34;y&#34; @\u200bchannel\n"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_many_removed_reports_still_fit_the_channel(fmt: str) -> None:
    spec = render.CHANNELS[fmt]
    others = tuple(
        report(source_id=f"s{n}", source_name=f"Outlet {n}", title="long headline " * 20)
        for n in range(60)
    )
    gone = tuple(f"Outlet {n}: {'long headline ' * 20}" for n in range(60))
    for v in (
        view(kind="removed", others=others, removed=gone),
        view(kind="alert", others=others, removed=gone),
    ):
        msg = render.render_alert(v, fmt, "UTC")
        if spec.limit is not None:
            assert spec.cost(msg.title, msg.body) <= spec.limit, v.kind
        assert "more" in msg.body  # what was left out is counted
    digest = render.render_digest([view(removed=gone)], "d", fmt, "UTC")
    assert "Outlet 2: " in digest.body and "Outlet 3: " not in digest.body
    assert "+57 more" in digest.body


@settings(max_examples=60, deadline=None)
@given(st.lists(HOSTILE_ALPHABET, max_size=40).map("".join))
def test_no_removed_headline_ever_becomes_markup_or_a_mention(text: str) -> None:
    """The property test of test_channel_formats, for the removed list and the one line."""
    base = text_view(PLAIN, OTHER_URL)
    for fmt in CHAT:
        for kind in ("removed", "alert"):
            msg = render.render_alert(replace(base, kind=kind, removed=(text,)), fmt, "UTC")
            plain = render.render_alert(replace(base, kind=kind, removed=(PLAIN,)), fmt, "UTC")
            if render.clean(text):
                assert signature(fmt, msg.body) == signature(fmt, plain.body), (fmt, kind)
            assert live_mention(fmt, msg.body) is None, (fmt, kind)
            assert bare_url(fmt, msg.body, expected_hrefs(fmt, [OTHER_URL])) is None, fmt
            assert [u for _, u in links(fmt, msg.body)] == [u for _, u in links(fmt, plain.body)]


# --------------------------------------------------------------------------- the sender


def delivery(id: int, kind: str, story: int = 1, route: str = "now") -> Delivery:
    return Delivery(
        id=id,
        story_id=story,
        revision=id,
        route=route,
        channel="tg",
        kind=kind,
        seq=0,
        status="pending",
        due_at=T0,
        attempts=0,
        last_error=None,
        sent_at=None,
        subject=None,
        body=None,
        created_at=T0,
    )


def test_a_removed_message_is_neither_superseded_by_an_update_nor_supersedes_one() -> None:
    alert, removed, upd = delivery(1, "alert"), delivery(2, "removed"), delivery(3, "update")
    later = _superseded([alert, removed, upd])
    assert later == {1: [upd]}  # the update repeats the alert; the removed message does not
    assert _superseded([removed, upd]) == {}


def test_queued_removed_messages_of_one_story_go_out_once() -> None:
    """After an outage, the first carries every report removed by the time it is sent."""
    first, again, other = delivery(1, "removed"), delivery(2, "removed"), delivery(3, "removed", 2)
    assert _superseded([first, again, other]) == {1: [again]}


# --------------------------------------------------------------------------- end to end

SOURCES = """\
sources:
  - {id: dailynk, name: Daily NK, kind: feed, url: "https://e.org/d", lang: en}
  - {id: rfa, name: RFA, kind: feed, url: "https://e.org/r", lang: en}
"""
ROUTES = """\
routes:
  - {id: now, channels: [tg, hook], group_wait: 0s}
settings:
  timezone: UTC
"""
CONFIG = SOURCES + RULE_AND_CHANNELS + ROUTES
RFA_TITLE = f"{HOSTILE} China repatriates 60 North Korean defectors"


def test_a_removed_report_is_named_by_the_message_the_sender_sends(store: Store) -> None:
    items = [
        item("https://d.org/1", "dailynk", "China repatriates 60 North Korean defectors"),
        item("https://r.org/1", "rfa", RFA_TITLE),
    ]
    config = queue(store, CONFIG, items)
    outbox = Outbox(store)
    (story_id,) = {d.story_id for d in outbox.listing()}
    assert story_id is not None
    first = send_due(store, config, T0 + timedelta(hours=1))
    assert set(first) == {"tgram://1:abc/2", "json://127.0.0.1:9/hook"}
    assert "Removed at source" not in first["tgram://1:abc/2"].body

    # The re-check found RFA's page gone: what the lead's runner records and queues.
    now = T0 + timedelta(days=1)
    with store.engine.begin() as conn:
        rfa_id = conn.execute(
            select(t.items.c.id).where(t.items.c.key == "https://r.org/1")
        ).scalar_one()
        conn.execute(
            t.item_checks.insert().values(
                item_id=rfa_id, first_seen_at=T0, done=1, removed_at=now, last_status=404
            )
        )
        conn.execute(update(t.stories).where(t.stories.c.id == story_id).values(revision=2))
    outbox.add(
        story_id=story_id,
        revision=2,
        route="now",
        channel="tg",
        kind="removed",
        due_at=now,
        now=now,
    )
    pending = outbox.listing(status="pending")
    assert [d.kind for d in pending] == ["removed"]
    names = {"dailynk": "Daily NK", "rfa": "RFA"}
    found = outbox.view(pending[0], names)
    assert found is not None
    assert found[0].kind == "removed"
    assert found[0].removed == (f"RFA: {RFA_TITLE}",)
    # Any other message about the story names it too (the view, whatever the kind).
    sent_alert = next(d for d in outbox.listing(status="sent") if d.channel == "hook")
    other = outbox.view(sent_alert, names)
    assert other is not None and other[0].removed == (f"RFA: {RFA_TITLE}",)

    sent = send_due(store, config, now + timedelta(minutes=1))
    assert set(sent) == {"tgram://1:abc/2"}
    msg = sent["tgram://1:abc/2"]
    assert msg.title.startswith("[HIGH] Removed at source · Forced repatriation")
    assert msg.body.startswith(
        f"<b>Removed at source</b> · no longer online:\n• RFA: {shown('telegram', RFA_TITLE)}\n"
    )
    assert "<b>x</b>" not in msg.body
    assert {d.status for d in outbox.listing()} == {"sent"}
    # The story's other report is not listed as removed.
    assert "Daily NK: " not in msg.body
