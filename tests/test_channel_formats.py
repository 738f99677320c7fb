"""Every channel format against hostile headlines: no live mention, no link but ours, in limits.

Each row of HOSTILE is a source's headline (and lead, outlet name, place, rule text…) trying
one trick; each is rendered as an alert, a digest and an operator notice in every format of
`render.CHANNELS`. The checks read the output the way the receiving client does, with the
small model of each markup in tests/messages.py, so they do not trust render.py's own escaping
to define what is safe:

- no live mention: every "@" a reader sees is followed by a zero-width space, and no "<" can
  open a <@123>, <!here>, <#chan>, <users/all> or <at> form;
- untrusted text adds no markup: the hostile message has exactly the markup of the same
  message with plain words in it (same unescaped markup characters, same tags, same lines);
- the only links are ours, to `safe_url` results, and no bare URL in a headline is live;
- the text still reads: the headline, as cleaned, is in what the reader sees;
- lengths: measured as the service does, on the message and on what apprise actually posts.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import apprise
import pytest
import responses
from apprise.plugins.slack import NotifySlack
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.messages import (
    CHAT,
    FAMILY,
    HOSTILE_ALPHABET,
    OTHER_URL,
    PLAIN,
    ZW,
    Tags,
    bare_url,
    expected_hrefs,
    links,
    live_mention,
    seen,
    shown_title,
    signature,
    text_view,
)
from watcher import render
from watcher.types import AlertView, Message

# apprise's email plugin imports PGP support, which imports the stdlib `imghdr` (deprecated).
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

#: Tags our HTML templates write.
OUR_TAGS = {
    "email": {"div", "p", "strong", "br", "a", "span", "blockquote", "ul", "li", "h3"},
    "telegram": {"b", "i", "a"},
    "matrix": {"b", "i", "a", "br"},
}
LOOKALIKES = str.maketrans("＊＿～｀［］＜＞＃｜＼", "*_~`[]<>#|\\")

#: id → (headline, the report's URL). The headline is also the lead, outlet name, place, rule,
#: route name and ops line. All stay short enough that no format has to drop an outlet.
HOSTILE: dict[str, tuple[str, str]] = {
    "mentions": (
        "@everyone @here @channel @all @room <@123> <@!456> <@&789> <#C042> <!here> "
        "<!channel> <!subteam^S1> <users/all> <at>Everyone</at> ＠fullwidth 연합@channel",
        "https://e.org/1",
    ),
    "markdown-link-javascript": (
        "Read [the report](javascript:alert(document.cookie)) now",
        "javascript:alert(1)",
    ),
    "nested-brackets": (
        "[[inner](https://evil.example/a)](https://evil.example/b) ![img](https://evil.example/i.png)"
        " [ref]: https://evil.example/ref",
        "https://e.org/2",
    ),
    "backticks": ("`code` ``two`` ```fence``` ~~~tilde~~~ \\`escaped\\`", "https://e.org/3"),
    "html-tags": (
        '<b>bold</b> <script>alert(1)</script> <a href="https://evil.example">x</a> '
        "<img src=x onerror=alert(1)> &lt;i&gt; &#64;everyone &amp;",
        'https://e.org/"><script>alert(1)</script>',
    ),
    "bidi": (
        "Seoul\u202e lubnatsI\u202c \u2066isolate\u2069 \u202aembed\u202c end",
        "https://e.org/4",
    ),
    "credentials-url": (
        "see https://news.example@evil.example/ and <https://evil.example/x> www.evil.example",
        "https://news.example@evil.example/",
    ),
    "emphasis-and-blocks": (
        "**bold** __under__ *it* _it_ ~~strike~~ ||spoiler|| # Heading ## h2 > quote -# sub",
        "https://e.org/@everyone?q=<x>",
    ),
    "line-start-list": ("- item that would be a list", "https://e.org/5"),
    "line-start-number": ("1. numbered 2) also", "https://e.org/6"),
    "line-start-setext": ("=== underline ---", "https://e.org/7"),
    "backslashes": ("\\*not bold\\* \\\\[x](javascript:1) trailing \\", "https://e.org/8"),
    "controls": ("nul\x00 esc\x1b[31m cr\r lf\n ls\u2028 tab\t done", "https://e.org/9"),
    "matrix-pill": (
        "pill @admin:matrix.org #room:matrix.org",
        "https://matrix.to/#/@admin:matrix.org",
    ),
}
LONG = "탈북민 600여명 강제북송 *중국* [단둥](javascript:x) @everyone <@1> & " * 400  # ~20,000


# --------------------------------------------------------------------------- building messages


def messages(text: str, url: str, fmt: str) -> dict[str, Message]:
    view = text_view(text, url)
    # a retraction quotes the headline, and who marked the story and why (operator text,
    # held to the same rules here)
    retraction = replace(view, kind="retraction", corrected_by=text, correction_reason=text)
    return {
        "alert": render.render_alert(view, fmt, "Asia/Seoul"),
        "retraction": render.render_alert(retraction, fmt, "Asia/Seoul"),
        "retraction-ko": render.render_alert(retraction, fmt, "Asia/Seoul", locale="ko"),
        "reinstated": render.render_alert(replace(retraction, kind="reinstated"), fmt, "UTC"),
        "digest": render.render_digest([view], text, fmt, "Asia/Seoul"),
        "ops": render.render_ops(text, [text, f"again: {text}"], fmt),
    }


def reads(fmt: str, text: str) -> str:
    """`seen` as the words a reader takes in: zero-width spaces gone, lookalikes as ASCII."""
    return seen(fmt, text).replace(ZW, "").translate(LOOKALIKES)


# --------------------------------------------------------------------------- limits


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def sizes(fmt: str, msg: Message) -> list[tuple[int, int]]:
    """(size, the service's limit) pairs, measured as each service does on what apprise
    makes of the message; the first is the message's. Email and plain text have none."""
    title, body = msg.title, msg.body
    if fmt == "telegram":
        sent = f"<b>{title}</b>\r\n{body}".replace("\n", "\r\n").replace("\r\r\n", "\r\n")
        return [(utf16(sent), 4096), (len(html.unescape(title)), 200)]
    if fmt == "slack":
        # One Block Kit section and one header block.
        slack = NotifySlack._commonmark_to_slack(body)
        return [(len(slack), 3000), (len(html.escape(title, quote=False)), 150)]
    if fmt == "discord":
        # Message content (title and body), or an embed's title and description.
        return [(utf16(f"{title}\r\n{body.rstrip()}"), 2000), (utf16(title), 256)]
    if fmt == "mattermost":
        return [(len(f"{title}\r\n{body.rstrip()}"), 4000)]
    if fmt == "teams":
        # Teams refuses a card over 28 KB, which some count as UTF-16: 14,000 bytes of JSON,
        # of which the card's own structure takes about a thousand.
        return [(len(json.dumps([title, body])), 13_000)]
    if fmt == "matrix":
        # 65,536 bytes per event, which holds the title and the body twice (HTML and text).
        return [(2 * len(f"{title}{body}".encode()), 63_000)]
    if fmt == "ntfy":
        return [(len(body.rstrip().encode()), 4096), (len(title), 200)]
    return []


def within_limit(fmt: str, msg: Message) -> bool:
    return all(size <= limit for size, limit in sizes(fmt, msg))


# --------------------------------------------------------------------------- the table


def test_every_format_is_covered_here() -> None:
    assert set(FAMILY) == set(render.CHANNELS)
    assert {s.syntax for s in render.CHANNELS.values()} <= set(render.DIALECTS)


CASES = [(case, fmt) for case in HOSTILE for fmt in FAMILY]


@pytest.mark.parametrize(("case", "fmt"), CASES, ids=[f"{c}-{f}" for c, f in CASES])
def test_hostile_text_adds_no_markup(case: str, fmt: str) -> None:
    text, url = HOSTILE[case]
    hostile = messages(text, url, fmt)
    plain = messages(PLAIN, url, fmt)
    for kind, msg in hostile.items():
        assert signature(fmt, msg.body) == signature(fmt, plain[kind].body), kind
        if FAMILY[fmt] == "html":
            tags = Tags(msg.body)
            assert tags.balanced and set(tags.tags) <= OUR_TAGS[fmt], kind
        assert not re.search("[\u202a-\u202e\u2066-\u2069\x00-\x08\x1b]", msg.title + msg.body)


@pytest.mark.parametrize(
    ("case", "fmt"),
    [(c, f) for c, f in CASES if f in CHAT],
    ids=[f"{c}-{f}" for c, f in CASES if f in CHAT],
)
def test_no_live_mention(case: str, fmt: str) -> None:
    text, url = HOSTILE[case]
    for kind, msg in messages(text, url, fmt).items():
        assert live_mention(fmt, msg.body) is None, kind
        assert live_mention(fmt, msg.title, title=True) is None, kind


@pytest.mark.parametrize(("case", "fmt"), CASES, ids=[f"{c}-{f}" for c, f in CASES])
def test_the_only_links_are_ours(case: str, fmt: str) -> None:
    text, url = HOSTILE[case]
    msgs = messages(text, url, fmt)
    alert = msgs["alert"].body
    wanted = expected_hrefs(fmt, [url, OTHER_URL])
    family = FAMILY[fmt]
    if family == "html":
        assert Tags(alert).hrefs == wanted
    elif family == "text":
        shown = [line.strip() for line in alert.split("\n") if "://" in line and ZW not in line]
        assert shown == wanted
    else:
        assert [target for _label, target in links(fmt, alert)] == wanted
        # Discord and Slack put the target in <…> (no preview; apprise's Slack translation).
        if fmt in ("discord", "slack"):
            assert all(f"](<{t}>)" in alert for t in wanted)
        # Not even an escaped bracket in a label: Discord's link pattern stops at any.
        if fmt != "slack":
            assert not any(set(label) & set("[]") for label, _ in links(fmt, alert))
    for kind, msg in msgs.items():
        targets = Tags(msg.body).hrefs if family == "html" else [t for _, t in links(fmt, msg.body)]
        assert set(targets) <= set(wanted), kind
        # Whatever safe_url says: no credentials trick, no script, nothing that ends markup.
        for target in targets:
            assert target.startswith(("https://", "http://")) and "evil.example" not in target
            assert not set(target) & set("\"'<> \\|()[]`"), target
            assert fmt == "email" or "@" not in target, target
        assert bare_url(fmt, msg.body, wanted) is None, kind
        if fmt != "email":  # a subject is plain text
            assert re.search(r":(?!\u200b)//", shown_title(fmt, msg.title)) is None, kind


@pytest.mark.parametrize(("case", "fmt"), CASES, ids=[f"{c}-{f}" for c, f in CASES])
def test_the_text_still_reads(case: str, fmt: str) -> None:
    text, url = HOSTILE[case]
    words = render.clean(text)
    msgs = messages(text, url, fmt)
    for kind, msg in msgs.items():
        body = reads(fmt, msg.body)
        # Markdown bodies also hold our "**"; the reader's words are between them.
        assert words in body.replace("**", "") or words in body, kind
    title = msgs["alert"].title
    shown = shown_title(fmt, title).replace(ZW, "").translate(LOOKALIKES)
    assert shown.startswith("[CRITICAL] Update · Forced repatriation: 600 people · ")
    head = words[:20]
    assert head in shown or shown.endswith("…"), shown


@pytest.mark.parametrize(("case", "fmt"), CASES, ids=[f"{c}-{f}" for c, f in CASES])
def test_hostile_messages_fit(case: str, fmt: str) -> None:
    text, url = HOSTILE[case]
    for kind, msg in messages(text, url, fmt).items():
        assert within_limit(fmt, msg), kind


# --------------------------------------------------------------------------- very long text


@pytest.fixture(scope="module")
def huge() -> AlertView:
    """A 20,000-character headline and lead, and 40 other outlets with long titles."""
    view = text_view(LONG, "https://e.org/long?a=1&b=2", others=40, lead=LONG)
    assert len(view.first.title) > 19_000 and len(view.others) == 40
    return view


@pytest.mark.parametrize("fmt", list(FAMILY))
def test_very_long_text_fits_every_format(fmt: str, huge: AlertView) -> None:
    msgs = [
        render.render_alert(huge, fmt, "Asia/Seoul"),
        render.render_digest([huge] * 60, LONG, fmt, "Asia/Seoul"),
        render.render_ops(LONG, [LONG] * 50, fmt),
    ]
    for msg in msgs:
        assert within_limit(fmt, msg)
        if fmt in CHAT:
            assert live_mention(fmt, msg.body) is None
            assert live_mention(fmt, msg.title, title=True) is None
        assert bare_url(fmt, msg.body, expected_hrefs(fmt, [huge.first.url, OTHER_URL])) is None
    alert, digest = msgs[0].body, msgs[1].body
    # Cut, never dropped: the first report and its link survive, the rest are counted.
    assert "탈북민 600여명 강제북송" in reads(fmt, alert)
    assert "e.org/long?a=1" in alert
    assert link_count(fmt, alert, OTHER_URL) + more(alert, "outlets") == 40
    assert digest.count("#7") + more(digest, "stories") == 60
    if render.CHANNELS[fmt].limit in (2000, 3000, 4000, 4096):  # the small ones must cut
        assert more(alert, "outlets") > 0 and more(digest, "stories") > 0


def link_count(fmt: str, body: str, url: str) -> int:
    (href,) = expected_hrefs(fmt, [url])
    if FAMILY[fmt] == "html":
        return Tags(body).hrefs.count(href)
    if FAMILY[fmt] == "text":
        return sum(line.strip() == href for line in body.split("\n"))
    return [t for _, t in links(fmt, body)].count(href)


def more(body: str, what: str) -> int:
    found = re.search(rf"\+(\d+) more {what}", body)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("fmt", [f for f, s in render.CHANNELS.items() if s.limit])
def test_limits_are_used_not_wasted(fmt: str, huge: AlertView) -> None:
    """A long story fills most of the room: render's measures are not wildly pessimistic."""
    ((size, limit), *_) = sizes(fmt, render.render_alert(huge, fmt, "Asia/Seoul"))
    assert limit * 0.6 < size <= limit


# --------------------------------------------------------------------------- any text at all


@settings(max_examples=80, deadline=None)
@given(st.lists(HOSTILE_ALPHABET, max_size=40).map("".join))
def test_no_source_text_ever_becomes_markup_or_a_mention(text: str) -> None:
    for fmt in CHAT:
        msg = render.render_alert(text_view(text, OTHER_URL), fmt, "UTC")
        plain = render.render_alert(text_view(PLAIN, OTHER_URL), fmt, "UTC")
        if render.clean(text) and not render.clean(text).isspace():
            assert signature(fmt, msg.body) == signature(fmt, plain.body), fmt
        assert live_mention(fmt, msg.body) is None, fmt
        assert live_mention(fmt, msg.title, title=True) is None, fmt
        assert bare_url(fmt, msg.body, expected_hrefs(fmt, [OTHER_URL])) is None, fmt
        assert [t for _, t in links(fmt, msg.body)] == [t for _, t in links(fmt, plain.body)], fmt


# --------------------------------------------------------------------------- channel_format


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("discord://1234/abcd", "discord"),
        ("https://discord.com/api/webhooks/1234/abcd", "discord"),
        ("https://discordapp.com/api/webhooks/1234/abcd", "discord"),
        ("mmost://chat.example.org/token", "mattermost"),
        ("MMOSTS://chat.example.org/token", "mattermost"),
        ("msteams://group@tenant/a/b/c", "teams"),
        ("https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d", "teams"),
        ("workflows://prod-1.westeurope.logic.azure.com:443/wf/sig/", "teams"),
        (
            "https://prod-1.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/"
            "invoke?api-version=2016-06-01&sig=x",
            "teams",
        ),
        ("matrix://user:pw@matrix.example.org/#room", "matrix"),
        ("matrixs://token@matrix.example.org/!room", "matrix"),
        ("https://webhooks.t2bot.io/api/v1/matrix/hook/abc", "matrix"),
        ("ntfy://topic", "ntfy"),
        ("ntfys://user:pw@ntfy.example.org/topic", "ntfy"),
        ("https://ntfy.sh/topic", "ntfy"),
        ("slack://a/b/c/#chan", "slack"),
        ("tgram://123:abc/456", "telegram"),
        ("mailtos://u:p@example.org", "email"),
        # Look-alikes are not the service.
        ("https://discord.com.evil.example/api/webhooks/1/a", "text"),
        ("https://example.org/workflows/abc", "text"),
        ("https://[broken/", "text"),
        ("rocket://user:pw@chat.example.org/#room", "text"),
        ("gchat://workspace/key/token", "text"),
    ],
)
def test_channel_format(url: str, expected: str) -> None:
    assert render.channel_format(url) == expected


def test_the_web_pages_use_the_same_safe_url() -> None:
    from watcher.web import base

    assert base.safe_url is render.safe_url


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("discord", "alert.md.j2"),
        ("teams", "alert.teams.md.j2"),
        ("matrix", "alert.matrix.html.j2"),
    ],
)
def test_an_overriding_template_gets_the_formats_escaping(
    fmt: str, name: str, tmp_path: Any
) -> None:
    (tmp_path / name).write_text("T: {{ first.title }}\nU: {{ first.href }}\n", encoding="utf-8")
    text, url = HOSTILE["emphasis-and-blocks"]
    view = text_view(text, url)
    body = render.render_alert(view, fmt, "UTC", templates_dir=str(tmp_path)).body
    plain = render.render_alert(text_view(PLAIN, url), fmt, "UTC", templates_dir=str(tmp_path))
    assert signature(fmt, body) == signature(fmt, plain.body)
    assert live_mention(fmt, body) is None
    # The link target is written as a URL, not escaped as text.
    (href,) = expected_hrefs(fmt, [url])
    assert f"U: {html.escape(href) if FAMILY[fmt] == 'html' else href}\n" in body


# --------------------------------------------------------------------------- through apprise

URLS = {
    "discord": "discord://1234/abcd",
    "discord-embed": "discord://1234/abcd?format=markdown",
    "mattermost": "mmosts://chat.example.org/token",
    "teams": "workflows://prod-1.westeurope.logic.azure.com:443/wf/sig/",
    "matrix": "matrixs://user:pw@matrix.example.org/%23room?discovery=no",
    "ntfy": "ntfys://alerts",
}


@pytest.fixture
def http() -> Iterator[list[Any]]:
    """Every request apprise makes, answered with JSON that satisfies each plugin."""
    calls: list[Any] = []
    answer = {
        "access_token": "t",
        "user_id": "@watcher:matrix.example.org",
        "room_id": "!r:matrix.example.org",
        "event_id": "$e",
        "id": "1",
    }

    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        calls.append(request)
        return 200, {}, json.dumps(answer)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "POST", "PUT"):
            mock.add_callback(method, re.compile(r"https://.*"), callback=reply)
        yield calls


def posted(name: str, msg: Message, calls: list[Any]) -> tuple[dict[str, Any], bytes]:
    app = apprise.Apprise()
    assert app.add(URLS[name])
    assert app.notify(title=msg.title, body=msg.body, body_format=msg.format)
    last = calls[-1]
    raw = last.body if isinstance(last.body, bytes) else last.body.encode()
    payload: dict[str, Any] = json.loads(raw)
    return payload, raw


def payload_texts(name: str, payload: dict[str, Any]) -> list[str]:
    if name == "discord":
        return [payload["content"]]
    if name == "discord-embed":
        return [payload["embeds"][0]["title"], payload["embeds"][0]["description"]]
    if name == "mattermost":
        return [payload["text"]]
    if name == "teams":
        blocks = payload["attachments"][0]["content"]["body"]
        return [b["text"] for b in blocks if b["type"] == "TextBlock"]
    if name == "matrix":
        return [payload["body"], payload["formatted_body"]]
    return [payload["title"], payload["message"]]


FORMAT_OF = {"discord-embed": "discord"}


@pytest.mark.parametrize("name", list(URLS))
@pytest.mark.parametrize("case", ["mentions", "credentials-url", "html-tags", "long"])
def test_what_apprise_posts(name: str, case: str, http: list[Any]) -> None:
    fmt = FORMAT_OF.get(name, name)
    if case == "long":
        view = text_view(LONG, "https://e.org/long", others=40, lead=LONG)
    else:
        view = text_view(*HOSTILE[case])
    msg = render.render_alert(view, fmt, "Asia/Seoul")
    payload, raw = posted(name, msg, http)
    texts = payload_texts(name, payload)

    # Our body arrives as we wrote it (no conversion by apprise), so the checks above hold.
    body = msg.body.rstrip()
    if name == "matrix":
        assert texts[1].endswith(body) and "@" not in re.sub("@\u200b", "", texts[0])
    elif name != "ntfy":
        assert any(body in t for t in texts)
    else:
        assert texts[1] == body
    for t in texts:
        assert not re.search(r"@(?!\u200b)(everyone|here|channel|all|room)", t)
    # apprise found no mention to turn into a ping or a Teams mention entity.
    assert "allow_mentions" not in payload
    if name == "teams":
        assert "entities" not in payload["attachments"][0]["content"]["msteams"]

    if name.startswith("discord"):
        assert utf16(payload.get("content") or "") <= 2000
        if name == "discord-embed":
            embed = payload["embeds"][0]
            assert utf16(embed["title"]) <= 256 and utf16(embed["description"]) <= 4096
    elif name == "mattermost":
        assert len(payload["text"]) <= 4000
    elif name == "teams":
        assert len(raw) <= 14_000
    elif name == "matrix":
        assert len(raw) <= 65_536
    else:
        assert len(payload["message"].encode()) <= 4096 and "attach" not in payload


@pytest.mark.parametrize(
    ("locale", "said"),
    [
        ("en", "Retracted: {title} — marked not relevant by ana: a drill"),
        ("ko", "알림 철회: {title} — ana 님이 관련 없음으로 표시함 (사유: a drill)"),
    ],
)
@pytest.mark.parametrize("fmt", list(FAMILY))
def test_a_retraction_says_what_was_retracted_by_whom_and_why(
    fmt: str, locale: str, said: str
) -> None:
    view = text_view(PLAIN, "https://e.org/1")
    notice = replace(view, kind="retraction", corrected_by="ana", correction_reason="a drill")
    msg = render.render_alert(notice, fmt, "Asia/Seoul", locale=locale)
    body = reads(fmt, msg.body).replace("**", "")
    assert said.format(title=PLAIN) in body
    assert render.WORDS[locale].retracted in shown_title(fmt, msg.title)
    # short: none of the alert's report list or why lines
    assert "Matched" not in body and "탐지 근거" not in body
