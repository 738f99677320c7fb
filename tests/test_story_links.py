"""Messages link to their story's web page when `settings.public_url` is set.

The view carries ``{public_url}/stories/{id}`` (`AlertView.story_url`); every format writes the
"story #N, revision R" line of an alert (and each digest entry's "story #N" / "#N") as a link in
its own form, through the same `safe_url` and dialect as a report's link. Without a public_url
every message is exactly what it was before: the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.messages import KOREAN, RULE_AND_CHANNELS, T0, ZW, every_kind, item, queue, send_due
from tests.messages import english_view as view
from watcher import render
from watcher.store import Store
from watcher.store.outbox import Outbox
from watcher.types import AlertView, Message

URL = "https://watch.example.org/stories/12"
REPORT_URL = KOREAN["url"]  # the first report's, in english_view too
FORMATS = list(render.CHANNELS)
LOCALES = list(render.WORDS)
CASES = [(f, loc) for f in FORMATS for loc in LOCALES]
IDS = [f"{f}-{loc}" for f, loc in CASES]

#: The linked text, by locale: an alert's line, and a digest entry's (by format).
ALERT_LABEL = {"en": "story #12, revision 3", "ko": "사건 #12 · 3차 개정"}
DIGEST_LABEL = {"en": "story #12", "ko": "사건 #12"}
#: Telegram and Matrix digests say only "#12" (in italics) after each entry.
SHORT_DIGEST = {"telegram", "matrix"}

#: Each format's own link form ({label} as its dialect escapes text, {url} the target).
LINK_FORM = {
    "email": '<a href="{url}">{label}</a>',
    "telegram": '<a href="{url}">{label}</a>',
    "matrix": '<a href="{url}">{label}</a>',
    "slack": "[{label}](<{url}>)",  # apprise makes it <url|label>
    "discord": "[{label}](<{url}>)",  # the angle brackets: no preview
    "mattermost": "[{label}]({url})",
    "teams": "[{label}]({url})",
    "ntfy": "{label}\n{url}",  # plain text: the address on a line of its own
    "text": "{label}\n{url}",
}
#: How each dialect writes the label's "#" (the dialect's text escaping, module doc of render).
HASH = {
    "slack": "\\#",
    "discord": "\\#",
    "mattermost": "\\#" + ZW,  # also no hashtag
    "teams": "＃",  # fullwidth: Teams ignores backslash escapes
}


def link_in(fmt: str, label: str, url: str = URL) -> str:
    return LINK_FORM[fmt].format(label=label.replace("#", HASH.get(fmt, "#")), url=url)


def messages(v: AlertView, fmt: str, locale: str) -> dict[str, Message]:
    """An alert, an update, a reminder and a digest (with a second story) about `v`."""
    other = replace(v, story_id=7, story_url=v.story_url and v.story_url.replace("12", "7"))
    return every_kind(v, fmt, locale, other)


# --------------------------------------------------------------------------- the link


def test_every_format_is_covered_here() -> None:
    assert set(LINK_FORM) == set(render.CHANNELS)


@pytest.mark.parametrize(("fmt", "locale"), CASES, ids=IDS)
def test_alerts_and_digests_link_the_story_page_in_the_formats_own_form(
    fmt: str, locale: str
) -> None:
    for kind, msg in messages(view(story_url=URL), fmt, locale).items():
        body = msg.body
        if kind == "digest" and fmt in ("text", "ntfy"):
            # Each entry's addresses are indented under it: the report's, then the story's.
            entry = f"{DIGEST_LABEL[locale]}\n  {REPORT_URL}\n  {URL}\n"
            assert entry in body, body
        elif kind == "digest":
            label = "#12" if fmt in SHORT_DIGEST else DIGEST_LABEL[locale]
            assert link_in(fmt, label) in body, body
            # Each entry links its own story.
            other = "#7" if fmt in SHORT_DIGEST else DIGEST_LABEL[locale].replace("12", "7")
            assert link_in(fmt, other, URL.replace("12", "7")) in body, body
        else:
            assert link_in(fmt, ALERT_LABEL[locale]) in body, (kind, body)
        if fmt == "teams":  # a TextBlock breaks lines only at blank lines
            assert "\n\n" in body
        # apprise's text part of an email drops link targets: the address is shown too.
        if fmt == "email":
            assert f">{URL}</span>" in body


def test_slacks_link_reaches_slack_as_its_own_anchor() -> None:
    """apprise translates the CommonMark link to <url|label>, the escaped "#" to a plain one."""
    from apprise.plugins.slack import NotifySlack

    body = render.render_alert(view(story_url=URL), "slack", "UTC").body
    assert f"<{URL}|story #12, revision 3>" in NotifySlack._commonmark_to_slack(body)


@pytest.mark.parametrize("fmt", ["discord", "mattermost", "telegram", "slack", "teams"])
def test_an_at_sign_in_the_address_is_no_mention(fmt: str) -> None:
    """A public_url path cannot hold "@everyone": chat formats get it as %40, like reports."""
    body = render.render_alert(view(story_url="https://w.example.org/@everyone/12"), fmt, "UTC")
    assert "https://w.example.org/%40everyone/12" in body.body
    assert "@everyone" not in body.body


# --------------------------------------------------------------------------- without public_url


def link_removed(fmt: str, body: str, locale: str) -> str:
    """`body` with the story links written back as the plain text they replace."""
    pairs = [
        (link_in(fmt, ALERT_LABEL[locale]), ALERT_LABEL[locale]),
        (link_in(fmt, "#12"), "#12"),
        (link_in(fmt, "#7", URL.replace("12", "7")), "#7"),
        (link_in(fmt, DIGEST_LABEL[locale]), DIGEST_LABEL[locale]),
        (
            link_in(fmt, DIGEST_LABEL[locale].replace("12", "7"), URL.replace("12", "7")),
            DIGEST_LABEL[locale].replace("12", "7"),
        ),
    ]
    for linked, plain in pairs:
        body = body.replace(linked, plain)
    if fmt == "email":  # the address shown as text under each link
        body = re.sub(
            r'<br><span style="[^"]*">https://watch\.example\.org/stories/\d+</span>', "", body
        )
    if fmt in ("text", "ntfy"):  # digest entries: an indented line of its own
        body = re.sub(r"(?m)^ {2}https://watch\.example\.org/stories/\d+\n", "", body)
    return body


@pytest.mark.parametrize(("fmt", "locale"), CASES, ids=IDS)
def test_without_a_story_url_every_message_is_as_it_was(fmt: str, locale: str) -> None:
    absent = messages(view(), fmt, locale)  # the field left out, as before it existed
    none = messages(view(story_url=None), fmt, locale)
    linked = messages(view(story_url=URL), fmt, locale)
    for kind, msg in absent.items():
        assert none[kind] == msg, kind  # byte for byte, title and format too
        assert "/stories/" not in msg.body
        # The link is all that public_url adds: written back as text, the bodies are equal.
        assert linked[kind].title == msg.title
        assert link_removed(fmt, linked[kind].body, locale) == msg.body, kind


# --------------------------------------------------------------------------- hostile addresses

#: Addresses config validation would not let through as public_url; render must still write
#: them escaped (safe_url percent-encodes) or not at all (safe_url refuses).
ESCAPED = [
    'https://w.example.org/stories/12"><script>alert(1)</script>',
    "https://w.example.org/stories/12?x=\" onmouseover='alert(1)' y=<b>",
    "https://w.example.org/a b/`|\\[x](y)/12",
]
REFUSED = [
    "javascript:alert(1)//https://w.example.org/stories/12",
    'data:text/html,<script>alert("x")</script>',
    "https://news.example@evil.example/stories/12",
    "/stories/12",
    "",
]


class Anchors(HTMLParser):
    """Every tag and every attribute of an HTML body, as a browser would read them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs


def check_inert(fmt: str, body: str) -> None:
    assert "<script" not in body.lower()
    family = render.CHANNELS[fmt].syntax
    if render.DIALECTS[family].html:
        parsed = Anchors(body)
        assert "script" not in parsed.tags
        # Only our attributes: an unescaped quote would have started another one.
        assert {name for name, _ in parsed.attrs} <= {"href", "style", "lang"}
        for name, value in parsed.attrs:
            if name == "href":
                assert value and value.startswith(("https://", "http://")), value
                assert not set(value) & set("\"'<> `\\|"), value
    else:
        # A link target may hold nothing that could end it or the markup around it.
        for target in re.findall(r"\]\(<?(\S*?)>?\)", body):
            assert not set(target) & set("\"'<> `\\|()[]"), target


@pytest.mark.parametrize("url", ESCAPED)
@pytest.mark.parametrize(("fmt", "locale"), CASES, ids=IDS)
def test_an_odd_story_url_is_written_escaped(fmt: str, locale: str, url: str) -> None:
    safe = render.safe_url(url)
    assert safe is not None
    for kind, msg in messages(view(story_url=url), fmt, locale).items():
        check_inert(fmt, msg.body)
        href = safe if fmt == "email" else safe.replace("@", "%40")
        assert href in msg.body, kind  # the link is there, percent-encoded


@pytest.mark.parametrize("url", REFUSED)
@pytest.mark.parametrize(("fmt", "locale"), CASES, ids=IDS)
def test_a_story_url_safe_url_refuses_links_nothing(fmt: str, locale: str, url: str) -> None:
    assert render.safe_url(url) is None
    plain = messages(view(), fmt, locale)
    for kind, msg in messages(view(story_url=url), fmt, locale).items():
        check_inert(fmt, msg.body)
        assert msg == plain[kind], kind  # as if there were no public_url


# --------------------------------------------------------------------------- end to end

SOURCE = """\
sources:
  - {id: dailynk, name: Daily NK, kind: feed, url: "https://e.org/d", lang: en}
"""
ROUTES = """\
  - {id: chat, url: "slack://T1/B2/C3"}
routes:
  - {id: now, channels: [tg, hook], group_wait: 0s}
  - {id: morning, channels: [chat], mode: digest, digest: {at: "09:00"}}
settings:
  timezone: UTC
"""
CONFIG = SOURCE + RULE_AND_CHANNELS + ROUTES


def queue_story(store: Store, settings: str) -> tuple[Any, int]:
    """One matched report grouped into a story and queued for both routes, as a poll does."""
    title = "China repatriates 60 North Korean defectors"
    config = queue(store, CONFIG + settings, [item("https://d.org/1", "dailynk", title)])
    (story_id,) = {d.story_id for d in Outbox(store).listing()}
    assert story_id is not None
    return config, story_id


def send_all(store: Store, config: Any) -> dict[str, Message]:
    """Everything due by 09:00 sent through the delivery worker, to a recording sender."""
    return send_due(store, config, T0 + timedelta(hours=1))


def test_the_outbox_view_carries_the_story_page(store: Store) -> None:
    _, story_id = queue_story(store, "")
    outbox = Outbox(store)
    delivery = outbox.listing()[0]
    names = {"dailynk": "Daily NK"}
    bare = outbox.view(delivery, names)
    with_url = outbox.view(delivery, names, "https://watch.example.org/")
    assert bare is not None and with_url is not None
    assert bare[0].story_url is None
    # The trailing slash of public_url is dropped; a path under it is kept.
    assert with_url[0].story_url == f"https://watch.example.org/stories/{story_id}"
    under = outbox.view(delivery, names, "https://ngo.example/watch")
    assert under is not None
    assert under[0].story_url == f"https://ngo.example/watch/stories/{story_id}"
    assert replace(with_url[0], story_url=None) == bare[0]


def test_with_public_url_every_sent_message_links_its_story_page(store: Store) -> None:
    """Config → outbox view → render → send: an alert (Telegram, plain text) and a digest
    (Slack), each with the link in its own form."""
    config, n = queue_story(store, "  public_url: https://watch.example.org/\n")
    sent = send_all(store, config)
    page = f"https://watch.example.org/stories/{n}"
    assert set(sent) == {"tgram://1:abc/2", "json://127.0.0.1:9/hook", "slack://T1/B2/C3"}
    telegram = sent["tgram://1:abc/2"]
    assert f'<i><a href="{page}">story #{n}, revision 1</a></i>' in telegram.body
    assert f"\nstory #{n}, revision 1\n{page}\n" in sent["json://127.0.0.1:9/hook"].body
    assert f"· [story \\#{n}](<{page}>)" in sent["slack://T1/B2/C3"].body
    assert {d.status for d in Outbox(store).listing()} == {"sent"}


def test_without_public_url_the_sent_messages_name_the_story_without_a_link(
    store: Store,
) -> None:
    config, n = queue_story(store, "")
    sent = send_all(store, config)
    assert len(sent) == 3
    for msg in sent.values():
        assert "/stories/" not in msg.body
    assert f"<i>story #{n}, revision 1</i>" in sent["tgram://1:abc/2"].body
    assert f"· story #{n}\n" in sent["slack://T1/B2/C3"].body
