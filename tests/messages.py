"""Sample messages for the render tests: views to render, a story queued end to end, and a
model of how each channel format's client reads markup.

The model (used by test_channel_formats and test_removed_messages) reads the output the way
the receiving client does, written here so that the checks do not trust render.py's own
escaping to define what is safe: CommonMark-style backslash escapes for Discord, Mattermost
and Slack; fullwidth lookalikes for Teams; HTML tags for email, Telegram and Matrix; nothing
for plain text.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from bs4 import BeautifulSoup
from hypothesis import strategies as st

from watcher import render
from watcher.config import load_config_text
from watcher.outbox import Deliverer, SendResult
from watcher.pipeline import match_items
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import Store
from watcher.types import AlertView, Item, Message, Report

T0 = datetime(2026, 11, 20, 8, 5, tzinfo=UTC)  # 17:05 in Seoul
ZW = "\u200b"

# --------------------------------------------------------------------------- sample views

#: Yonhap's report of the story, in Korean (an "&" in its address to escape).
KOREAN: dict[str, Any] = {
    "source_id": "yonhap",
    "source_name": "Yonhap",
    "title": "중국, 탈북민 600여명 강제북송",
    "url": "https://www.yna.co.kr/view/1?a=1&b=2",
    "published_at": T0,
    "lang": "ko",
    "text": "중국 당국이 탈북민 600여명을 북송했다.",
}
#: The same report as Yonhap's English service ran it.
ENGLISH: dict[str, Any] = KOREAN | {
    "title": "China sends back 600 North Koreans",
    "lang": "en",
    "text": "Chinese authorities sent back about 600 North Koreans.",
}


#: RFA's report in English, an hour after Yonhap's (the other outlet of `view`).
RFA: dict[str, Any] = {
    "source_id": "rfa",
    "source_name": "RFA",
    "title": "China sends back 600 North Koreans",
    "url": "https://www.rfa.org/english/1",
    "published_at": T0 + timedelta(hours=1),
    "lang": "en",
    "text": "",
}


def report(**kw: Any) -> Report:
    """Yonhap's Korean report; `kw` replaces any field (`report(**ENGLISH)` for English)."""
    return Report(**(KOREAN | kw))


def view(**kw: Any) -> AlertView:
    """An alert about story 12, revision 3; `kw` replaces any field.

    By default: Yonhap's Korean report first, RFA's English one an hour later, a Korean and
    a Chinese rule with their glosses, two places and a date.
    """
    values: dict[str, Any] = {
        "kind": "alert",
        "story_id": 12,
        "revision": 3,
        "events": ("forced_repatriation",),
        "severity": "critical",
        "rules": (
            "return: 강제북송 (forced repatriation) near 탈북민 (North Korean escapees)",
            "zh-return: 遣返 (repatriation) + 脱北者 (defectors)",
        ),
        "people": 600,
        "places": ("Dandong", "Tumen"),
        "dates": ("2026-11-19",),
        "first": report(),
        "others": (report(**RFA),),
    }
    return AlertView(**(values | kw))


#: Where RFA's report in `english_view` is.
RFA_URL = "https://www.rfa.org/1"


def english_view(**kw: Any) -> AlertView:
    """`view` in English: Yonhap's English report first, then RFA's (same time), one rule, one
    place and no date; `kw` replaces any field."""
    values: dict[str, Any] = {
        "rules": ("return: 강제북송 (forced repatriation)",),
        "places": ("Dandong",),
        "dates": (),
        "first": report(**ENGLISH),
        "others": (
            report(**(ENGLISH | {"source_id": "rfa", "source_name": "RFA", "url": RFA_URL})),
        ),
    }
    return view(**(values | kw))


def every_kind(v: AlertView, fmt: str, locale: str, second: AlertView) -> dict[str, Message]:
    """An alert, an update, a reminder and a digest (of `v`, then `second`) about `v`."""
    return {
        "alert": render.render_alert(v, fmt, "Asia/Seoul", locale=locale),
        "update": render.render_alert(
            replace(v, kind="update", new_outlets=("RFA",)), fmt, "Asia/Seoul", locale=locale
        ),
        "reminder": render.render_alert(
            replace(v, kind="reminder"), fmt, "Asia/Seoul", locale=locale
        ),
        "digest": render.render_digest([v, second], "morning", fmt, "Asia/Seoul", locale=locale),
    }


#: Source text trying markup, a mention, a javascript: link and tags (test_render and
#: test_locale).
HOSTILE = "<b>x</b> *bold* _it_ [link](javascript:alert(1)) @channel <!here> <script>"
#: How each format shows HOSTILE: literal to a reader, inert to the client. Every format but
#: email has a zero-width space after "@" (a Telegram @username notifies its member); plain
#: text, which may reach any service, also after a "<" touching a word and between "](".
HOSTILE_SHOWN = {
    "email": "&lt;b&gt;x&lt;/b&gt; *bold* _it_ [link](javascript:alert(1)) @channel "
    "&lt;!here&gt; &lt;script&gt;",
    "telegram": "&lt;b&gt;x&lt;/b&gt; *bold* _it_ [link](javascript:alert(1)) @\u200bchannel "
    "&lt;!here&gt; &lt;script&gt;",
    "slack": "\\<b\\>x\\</b\\> ＊bold＊ ＿it＿ \\[link\\](javascript:alert(1)) @\u200bchannel "
    "\\<!here\\> \\<script\\>",
    "text": "<\u200bb>x<\u200b/b> *bold* _it_ [link]\u200b(javascript:alert(1)) @\u200bchannel "
    "<\u200b!here> <\u200bscript>",
}
#: The tags Telegram's HTML parse mode accepts.
TELEGRAM_TAGS = {"b", "i", "u", "s", "a", "code", "pre"}


# --------------------------------------------------------------------------- end to end


def item(key: str, source_id: str, title: str, **kw: Any) -> Item:
    """A fetched report at `key` (also its URL); English by default."""
    values: dict[str, Any] = {
        "text": "Chinese police repatriated 60 North Koreans.",
        "lang": "en",
        "published_at": T0,
        "published_raw": None,
        "fetched_at": T0,
    }
    return Item(key=key, source_id=source_id, url=key, title=title, **(values | kw))


#: The concepts and rule that match `item`'s English reports, and two channels: the middle of
#: a config, between its sources and its routes.
RULE_AND_CHANNELS = """\
concepts:
  nk_people: {en: [north korean*]}
  sent_back: {gloss: sent back, en: [repatriat*]}
rules:
  - {id: return, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}
channels:
  - {id: tg, url: "tgram://1:abc/2"}
  - {id: hook, url: "json://127.0.0.1:9/hook"}
"""


def queue(store: Store, config_text: str, items: list[Item]) -> Any:
    """`items` matched, grouped into a story and queued for its routes, as a poll does at T0;
    returns the config."""
    config = load_config_text(config_text, "w.yaml", {}).config
    store.sync_sources(config.sources, T0)
    store.save_items(
        items,
        now=T0,
        matches=match_items(compile_rules(config), items, ()),
        alerting=Alerting.from_config(config),
    )
    return config


class Sender(dict[str, Message]):
    """A sender for `Deliverer(send=...)` that records the message sent to each URL."""

    def __call__(self, url: str, message: Message, timeout: float) -> SendResult:
        self[url] = message
        return SendResult(outcome="sent")


def send_due(store: Store, config: Any, at: datetime) -> Sender:
    """Everything due at `at` sent through the delivery worker, to a recording sender."""
    sent = Sender()
    asyncio.run(Deliverer(store, config, clock=lambda: at, send=sent).run_due())
    return sent


# --------------------------------------------------------------------------- channel formats

OTHER_URL = "https://www.rfa.org/english/1"
PLAIN = "Plain words about the same story"
#: Pieces of any text at all that a property test strings together.
HOSTILE_ALPHABET = st.sampled_from(
    [*"@<>[]()*_~`|#!:/\\&;-+=.1 \n\t", "://", "@everyone", "<@", "](", "&#64;", "강제", "a"]
)

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


def text_view(text: str, url: str, *, others: int = 1, lead: str | None = None) -> AlertView:
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


class Tags(HTMLParser):
    """Collects tags and hrefs, and whether every opened tag was closed in order."""

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
