"""What apprise 2.2.0 actually sends for our messages: Slack, Telegram and email, end to end.

The HTTP boundary is intercepted with `responses` (apprise uses requests); email goes to a
real SMTP server in the test process. These tests pin the apprise behaviour render.py relies
on: Slack's CommonMark → mrkdwn translation, Telegram's title-in-bold and HTML reduction, and
email's multipart/alternative with a plain-text part converted from our HTML.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import apprise
import pytest
import responses
from apprise.plugins.slack import NotifySlack
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.mailserver import MailServer
from watcher import render
from watcher.types import AlertView, Message, Report

# apprise's email plugin imports PGP support, which imports the stdlib `imghdr` (deprecated).
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

SLACK_URL = "slack://TokenA/TokenB/TokenC/#channel"
SLACK_HOOK = "https://hooks.slack.com/services/TokenA/TokenB/TokenC"
TELEGRAM_URL = "tgram://123456789:abcdefg_hijklmnop/987654321"
TELEGRAM_API = "https://api.telegram.org/bot123456789:abcdefg_hijklmnop/sendMessage"

T0 = datetime(2026, 11, 20, 8, 5, tzinfo=UTC)
HOSTILE = "<b>x</b> *bold* _it_ [link](javascript:alert(1)) @channel <!here> <script>"
FIRST_URL = "https://www.yna.co.kr/view/1?a=1&b=2"


def report(**kw: Any) -> Report:
    values: dict[str, Any] = {
        "source_id": "yonhap",
        "source_name": "Yonhap",
        "title": HOSTILE,
        "url": FIRST_URL,
        "published_at": T0,
        "lang": "ko",
        "text": HOSTILE,
    }
    values.update(kw)
    return Report(**values)


def hostile_view(**kw: Any) -> AlertView:
    values: dict[str, Any] = {
        "kind": "alert",
        "story_id": 12,
        "revision": 3,
        "events": ("un_action",),
        "severity": "critical",
        "rules": ("un-review",),
        "first": report(),
        "others": (
            report(source_id="evil", source_name="Evil <!channel>", url="javascript:alert(1)"),
            report(
                source_id="rfa", source_name="RFA", title="중국 강제북송", url="https://rfa.org/1"
            ),
        ),
    }
    values.update(kw)
    return AlertView(**values)


def huge_view() -> AlertView:
    """A 20,000-character lead and 40 other outlets."""
    others = tuple(
        report(
            source_id=f"s{i}",
            source_name=f"Outlet {i}",
            title=f"{i} 탈북민 강제북송 & <b>news</b> " * 6,
            url=f"https://outlet{i}.example/{i}?a=1&b=2",
            published_at=T0 + timedelta(minutes=i),
        )
        for i in range(40)
    )
    return hostile_view(
        first=report(text="중국 당국이 <탈북민>을 북송했다 & " * 1000), others=others
    )


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, SLACK_HOOK, body="ok")
        mock.add(responses.POST, TELEGRAM_API, json={"ok": True, "result": {"message_id": 1}})
        yield mock


def send(url: str, msg: Message, http: responses.RequestsMock) -> dict[str, Any]:
    """Send `msg` through apprise to `url`; the one JSON payload it posted."""
    app = apprise.Apprise()
    assert app.add(url)
    assert app.notify(title=msg.title, body=msg.body, body_format=msg.format)
    (call,) = http.calls
    payload: dict[str, Any] = json.loads(call.request.body)
    return payload


class Tags(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.seen: set[str] = set()
        self.hrefs: list[str] = []
        self.balanced = True
        self.feed(text)
        self.close()
        self.balanced = self.balanced and not self.stack

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        self.stack.append(tag)
        self.hrefs += [v or "" for k, v in attrs if k == "href"]

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.balanced = False


# --------------------------------------------------------------------------- Slack

# What Slack receives for the hostile headline: entities for &, < and >, fullwidth lookalikes
# for the formatting characters, a zero-width space after @, a native <url|label> link.
SLACK_HOSTILE = (
    "&lt;b&gt;x&lt;/b&gt; ＊bold＊ ＿it＿ [link](javascript:alert(1)) @\u200bchannel "
    "&lt;!here&gt; &lt;script&gt;"
)


def test_slack_legacy_payload_carries_our_escaped_text(http: responses.RequestsMock) -> None:
    msg = render.render_alert(hostile_view(), "slack", "Asia/Seoul")
    payload = send(SLACK_URL, msg, http)

    assert payload["channel"] == "#channel" and payload["mrkdwn"] is True
    (attachment,) = payload["attachments"]
    # apprise escapes the title itself; our part is the inert mention.
    assert attachment["title"] == (
        "[CRITICAL] UN action: &lt;b&gt;x&lt;/b&gt; *bold* _it_ [link](javascript:alert(1)) "
        "@\u200bchannel &lt;!here&gt; &lt;script&gt;"
    )
    lines = attachment["text"].split("\n")
    assert lines[:2] == ["*CRITICAL* · UN action", ""]
    assert lines[2] == "First: *Yonhap* (ko) · 2026-11-20 17:05 KST"
    assert lines[3] == f"<https://www.yna.co.kr/view/1?a=1&amp;b=2|{SLACK_HOSTILE}>"
    assert lines[4] == f"> {SLACK_HOSTILE}"
    assert lines[6:9] == [
        "Also:",
        f"• *Evil &lt;!channel&gt;* (ko) · 17:05 KST: {SLACK_HOSTILE}",
        "• *RFA* (ko) · 17:05 KST: <https://rfa.org/1|중국 강제북송>",
    ]
    assert lines[-2:] == ["Matched: un-review", "story #12, revision 3"]
    # No live mention, no link but ours.
    text = attachment["text"]
    assert "<!" not in text and "<@" not in text
    assert text.count("<") == text.count("<https://") == 2


def test_slack_blocks_payload_stays_within_block_kit_limits(
    http: responses.RequestsMock,
) -> None:
    msg = render.render_alert(huge_view(), "slack", "Asia/Seoul")
    payload = send(SLACK_URL + "?blocks=yes", msg, http)

    header, section, _footer = payload["attachments"][0]["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    assert section["text"]["type"] == "mrkdwn"
    text = section["text"]["text"]
    # The estimate render.py makes of apprise's translation holds: under one section's limit,
    # and not wastefully far under it.
    assert 2000 < len(text) <= 3000
    assert "more outlets" in text and text.startswith("*CRITICAL* · UN action")
    assert "<!" not in text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_no_source_text_survives_apprise_as_slack_markup(title: str) -> None:
    view = hostile_view(first=report(title=title, text=""), others=())
    body = NotifySlack._commonmark_to_slack(render.render_alert(view, "slack", "UTC").body)
    prefix = "<https://www.yna.co.kr/view/1?a=1&amp;b=2|"
    start = body.index(prefix) + len(prefix)
    label = body[start : body.index(">", start)]
    assert not set(label) & set("<*_~`|")
    assert label.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").count("&") == 0
    assert body.count("<") == 1  # our link, nothing from the title


# --------------------------------------------------------------------------- Telegram


def test_telegram_payload_is_html_with_our_title_in_bold(http: responses.RequestsMock) -> None:
    msg = render.render_alert(hostile_view(), "telegram", "Asia/Seoul")
    payload = send(TELEGRAM_URL, msg, http)

    assert payload["parse_mode"] == "HTML" and payload["chat_id"] == 987654321
    escaped = (
        "&lt;b&gt;x&lt;/b&gt; *bold* _it_ [link](javascript:alert(1)) @\u200bchannel "
        "&lt;!here&gt; &lt;script&gt;"
    )
    lines = payload["text"].split("\r\n")
    assert lines[0] == f"<b>[CRITICAL] UN action: {escaped}</b>"
    # who reported it first and when, right under the title (a notification shows two lines)
    assert lines[1] == "First: <b>Yonhap</b> (ko) · 2026-11-20 17:05 KST"
    assert lines[2] == f'<a href="https://www.yna.co.kr/view/1?a=1&amp;b=2">{escaped}</a>'
    assert lines[3] == f"<i>{escaped}</i>"
    assert lines[4:6] == ["", "<b>CRITICAL</b> · UN action"]
    assert lines[7:10] == [
        "Also:",
        f"• <b>Evil &lt;!channel&gt;</b> (ko) · 17:05 KST: {escaped}",
        '• <b>RFA</b> (ko) · 17:05 KST: <a href="https://rfa.org/1">중국 강제북송</a>',
    ]
    tags = Tags(payload["text"])
    assert tags.balanced and tags.seen == {"b", "i", "a"}
    assert tags.hrefs == ["https://www.yna.co.kr/view/1?a=1&b=2", "https://rfa.org/1"]


def test_telegram_text_stays_within_4096_characters(http: responses.RequestsMock) -> None:
    view = huge_view()
    assert len(view.first.text) > 20_000 and len(view.others) == 40
    msg = render.render_alert(view, "telegram", "Asia/Seoul")
    payload = send(TELEGRAM_URL, msg, http)

    text = payload["text"]
    assert 3000 < len(text) <= 4096
    assert text.startswith("<b>[CRITICAL] UN action: ")
    assert "more outlets" in text
    tags = Tags(text)
    assert tags.balanced and tags.seen <= {"b", "i", "a"}


def test_telegram_digest_stays_within_4096_characters(http: responses.RequestsMock) -> None:
    views = [hostile_view(story_id=i, first=report(title=f"{i} " + HOSTILE * 3)) for i in range(50)]
    msg = render.render_digest(views, "daily", "telegram", "Asia/Seoul")
    text = send(TELEGRAM_URL, msg, http)["text"]
    assert len(text) <= 4096 and "more stories" in text and Tags(text).balanced


# --------------------------------------------------------------------------- email


@pytest.mark.parametrize(
    "headline",
    [
        "China deports defectors =?utf-8?q?=E2=80=AE?=gnp.exe "
        "=?utf-8?b?QmNjOiB2aWN0aW1AZXhhbXBsZS5vcmc=?=",
        "=?UTF-8?Q?=E2=80=AE?= 중국 강제북송 =?utf-8?B?4oCu?=",
    ],
    ids=["ascii", "non-ascii"],
)
def test_an_encoded_word_in_a_headline_is_not_decoded_in_the_subject(headline: str) -> None:
    """A headline's RFC 2047 encoded words reach the reader as the text they are written in:
    a mail reader that decodes the Subject finds no bidi override and no hidden words."""
    view = hostile_view(first=report(title=headline, text="t"))
    msg = render.render_alert(view, "email", "Asia/Seoul")
    with MailServer() as mail:
        app = apprise.Apprise()
        assert app.add(mail.apprise_url())
        assert app.notify(title=msg.title, body=msg.body, body_format=msg.format)
        (sent,) = mail.messages
    subject = str(sent["Subject"])  # as a reader decodes it (policy default)
    assert "\u202e" not in subject and "Bcc" not in subject and "victim" not in subject
    assert subject == msg.title
    assert "?utf-8?q?=e2=80=ae?=" in subject.replace("\u200b", "").lower()  # shown as written


def test_email_is_multipart_with_a_plain_text_part() -> None:
    msg = render.render_alert(hostile_view(), "email", "Asia/Seoul")
    with MailServer() as mail:
        app = apprise.Apprise()
        assert app.add(mail.apprise_url())
        assert app.notify(title=msg.title, body=msg.body, body_format=msg.format)
        (sent,) = mail.messages

    assert sent["Subject"] == msg.title
    assert [p.get_content_type() for p in sent.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    html = sent.get_body(("html",)).get_content()
    assert "&lt;b&gt;x&lt;/b&gt; *bold*" in html and "<script>" not in html
    assert 'href="https://www.yna.co.kr/view/1?a=1&amp;b=2"' in html
    # apprise's HTML → text conversion drops link targets; render shows the URLs as text too.
    plain = sent.get_body(("plain",)).get_content()
    assert HOSTILE in plain and FIRST_URL in plain and "https://rfa.org/1" in plain
    assert "2026-11-20 17:05 KST" in plain and "story #12, revision 3" in plain
