"""Every channel format against hostile headlines: no live mention, no link but ours, in limits.

Each row of HOSTILE is a source's headline (and lead, outlet name, place, rule text…) trying
one trick; each is rendered as an alert, a digest and an operator notice in every format of
`render.CHANNELS`. The checks read the output the way the receiving client does, with a small
model of each markup written here (CommonMark-style backslash escapes for Discord, Mattermost
and Slack; fullwidth lookalikes for Teams; HTML tags for email, Telegram and Matrix; nothing for
plain text), so they do not trust render.py's own escaping to define what is safe:

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
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import apprise
import pytest
import responses
from apprise.plugins.slack import NotifySlack
from bs4 import BeautifulSoup
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher import render
from watcher.types import AlertView, Message, Report

# apprise's email plugin imports PGP support, which imports the stdlib `imghdr` (deprecated).
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

ZW = "\u200b"
T0 = datetime(2026, 11, 20, 8, 5, tzinfo=UTC)
OTHER_URL = "https://www.rfa.org/english/1"

#: How each format's markup is read (the model the checks use).
FAMILY = {
    "email": "html",
    "telegram": "html",
    "matrix": "html",
    "slack": "md",
    "discord": "md",
    "mattermost": "md",
    "teams": "teams",
    "ntfy": "text",
    "text": "text",
}
CHAT = [f for f in FAMILY if f != "email"]  # email has no mentions to defuse
#: Tags our HTML templates write.
OUR_TAGS = {
    "email": {"div", "p", "strong", "br", "a", "span", "blockquote", "ul", "li", "h3"},
    "telegram": {"b", "i", "a"},
    "matrix": {"b", "i", "a", "br"},
}
#: Unescaped characters that are markup in each non-HTML format (Slack's "|" is markup only
#: inside <url|label>, where render swaps it; plain text has no markup to add).
MARKUP_CHARS = {
    "slack": "*_~`<>[]#",
    "discord": "*_~`|<>[]#",
    "mattermost": "*_~`|<>[]#",
    "teams": "*_~`|<>[]#\\",
    "ntfy": "",
    "text": "",
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
PLAIN = "Plain words about the same story"
LONG = "탈북민 600여명 강제북송 *중국* [단둥](javascript:x) @everyone <@1> & " * 400  # ~20,000


# --------------------------------------------------------------------------- building messages


def make_view(text: str, url: str, *, others: int = 1, lead: str | None = None) -> AlertView:
    """An update whose every source-given string is `text` (the other outlet links OTHER_URL)."""
    first = Report(
        source_id="src",
        source_name=text,
        title=text,
        url=url,
        published_at=T0,
        lang="ko",
        text=text if lead is None else lead,
    )
    rest = tuple(
        Report(
            source_id=f"o{i}",
            source_name=f"{text} {i}",
            title=f"{i} {text}",
            url=OTHER_URL,
            published_at=T0 + timedelta(minutes=i),
            lang="en",
            text="",
        )
        for i in range(others)
    )
    return AlertView(
        kind="update",
        story_id=7,
        revision=2,
        events=("forced_repatriation",),
        severity="critical",
        rules=(text,),
        people=600,
        places=(text,),
        dates=(text,),
        first=first,
        others=rest,
        new_outlets=(text,),
    )


def messages(text: str, url: str, fmt: str) -> dict[str, Message]:
    view = make_view(text, url)
    return {
        "alert": render.render_alert(view, fmt, "Asia/Seoul"),
        "digest": render.render_digest([view], text, fmt, "Asia/Seoul"),
        "ops": render.render_ops(text, [text, f"again: {text}"], fmt),
    }


def expected_hrefs(fmt: str, urls: list[str]) -> list[str]:
    """The links a format may hold: safe_url's, with '@' as %40 in chat formats (no URL path
    can hold "@everyone"), none to matrix.to in Matrix (Element shows those as mention pills)."""
    out = []
    for url in urls:
        safe = render.safe_url(url)
        if safe is None:
            continue
        if fmt == "matrix" and safe.startswith("https://matrix.to/"):
            continue
        out.append(safe if fmt == "email" else safe.replace("@", "%40"))
    return out


# --------------------------------------------------------------------------- reading the output


class Tags(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.stack: list[str] = []
        self.balanced = True
        self.feed(text)
        self.close()
        self.balanced = self.balanced and not self.stack

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs += [v or "" for k, v in attrs if k == "href"]
        if tag != "br":
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.balanced = False


# CommonMark (and Discord): a backslash before ASCII punctuation makes it a literal character.
ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
# A Markdown link as our templates write it: [label](url) or [label](<url>).
MD_LINK = re.compile(r"\[([^\[\]]*)\]\((<?)([^()<>\s]*)>?\)")


def mask(text: str) -> str:
    """Escaped characters hidden (same length), so only live markup is left to find."""
    return ESCAPED.sub("\0\0", text)


def links(fmt: str, text: str) -> list[tuple[str, str]]:
    """(raw label, target) of every live Markdown link."""
    if FAMILY[fmt] == "html":
        return []
    masked = mask(text) if FAMILY[fmt] == "md" else text
    return [(text[m.start(1) : m.end(1)], m.group(3)) for m in MD_LINK.finditer(masked)]


def seen(fmt: str, text: str) -> str:
    """What a reader sees of `text` (zero-width spaces kept): links shown as their labels,
    escapes resolved, tags dropped."""
    family = FAMILY[fmt]
    if family == "html":
        return BeautifulSoup(text, "html.parser").get_text()
    if family == "text":
        return text
    masked = mask(text) if family == "md" else text
    parts, end = [], 0
    for m in MD_LINK.finditer(masked):
        parts += [text[end : m.start()], text[m.start(1) : m.end(1)]]
        end = m.end()
    shown = "".join([*parts, text[end:]])
    return ESCAPED.sub(r"\1", shown) if family == "md" else shown


def reads(fmt: str, text: str) -> str:
    """`seen` as the words a reader takes in: zero-width spaces gone, lookalikes as ASCII."""
    return seen(fmt, text).replace(ZW, "").translate(LOOKALIKES)


def shown_title(fmt: str, title: str) -> str:
    # Telegram's title goes into its HTML body (escaped); the others are shown as given, in
    # the body's markup for Discord, Mattermost and Teams.
    if fmt == "telegram":
        return html.unescape(title)
    return seen(fmt, title) if FAMILY[fmt] in ("md", "teams") and fmt != "slack" else title


def signature(fmt: str, body: str) -> tuple[object, ...]:
    """The markup of a body: what plain words and hostile text must share."""
    family = FAMILY[fmt]
    lines = body.count("\n") + body.count("<br>")
    if family == "html":
        return (lines, tuple(Tags(body).tags))
    if family == "text":
        return (lines,)
    masked = mask(body) if family == "md" else body
    # Link targets are ours and the same in both; their characters are not markup.
    masked = MD_LINK.sub(lambda m: "[" + m.group(1) + "](LINK)", masked)
    chars = Counter(c for c in masked if c in MARKUP_CHARS[fmt])
    # What starts a list, quote, heading or setext underline when a line begins with it.
    starts = Counter(re.findall(r"(?m)^([-+=>#]|\d+[.)])", masked))
    return (lines, sorted(chars.items()), sorted(starts.items()))


def live_mention(fmt: str, text: str, *, title: bool = False) -> str | None:
    """The first mention form a client would act on in `text`, or None: an "@" the reader sees
    without a zero-width space after it, or a "<" that could open <@1>, <!here>, <#c>, <at>."""
    family = FAMILY[fmt]
    shown = shown_title(fmt, text) if title else seen(fmt, text)
    bare = re.search(r"@(?!\u200b)", shown)
    if bare:
        return shown[max(0, bare.start() - 10) : bare.end() + 15]
    if fmt == "telegram" and title:  # apprise puts it into <b>…</b> as it is
        return "<" if "<" in text else None
    if family == "html" or (title and fmt == "slack"):
        return None  # HTML tags are checked on their own; apprise escapes a Slack title
    if family == "md":
        # An unescaped "<" may only wrap one of our link targets: "](<https://…>)".
        for m in re.finditer("<", mask(text)):
            if text[m.start() - 2 : m.start()] != "](" or not text.startswith("http", m.end()):
                return text[m.start() : m.start() + 20]
    elif family == "teams" and "<" in text:
        return text[text.index("<") : text.index("<") + 20]
    elif family == "text":
        m = re.search(r"<(?!\u200b)\S", text)
        if m:
            return text[m.start() : m.start() + 20]
    return None


def bare_url(fmt: str, text: str, ours: list[str]) -> str | None:
    """A "scheme://" a client would make a link of, outside our own links (`ours`), or None.
    (Email and plain text also show our links as text, each in an element or a line of its
    own.)"""
    family = FAMILY[fmt]
    if family == "html":
        nodes = [str(n) for n in BeautifulSoup(text, "html.parser").find_all(string=True)]
        shown = "\n".join(n for n in nodes if n.strip() not in ours)
    elif family == "text":
        shown = "\n".join(line for line in text.split("\n") if line.strip() not in ours)
    else:
        shown = MD_LINK.sub("", mask(text) if family == "md" else text)
    m = re.search(r":(?!\u200b)//", shown)
    return shown[max(0, m.start() - 20) : m.end() + 20] if m else None


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
    view = make_view(LONG, "https://e.org/long?a=1&b=2", others=40, lead=LONG)
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

HOSTILE_ALPHABET = st.sampled_from(
    [*"@<>[]()*_~`|#!:/\\&;-+=.1 \n\t", "://", "@everyone", "<@", "](", "&#64;", "강제", "a"]
)


@settings(max_examples=80, deadline=None)
@given(st.lists(HOSTILE_ALPHABET, max_size=40).map("".join))
def test_no_source_text_ever_becomes_markup_or_a_mention(text: str) -> None:
    for fmt in CHAT:
        msg = render.render_alert(make_view(text, OTHER_URL), fmt, "UTC")
        plain = render.render_alert(make_view(PLAIN, OTHER_URL), fmt, "UTC")
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
    view = make_view(text, url)
    body = render.render_alert(view, fmt, "UTC", templates_dir=str(tmp_path)).body
    plain = render.render_alert(make_view(PLAIN, url), fmt, "UTC", templates_dir=str(tmp_path))
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
        view = make_view(LONG, "https://e.org/long", others=40, lead=LONG)
    else:
        view = make_view(*HOSTILE[case])
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
