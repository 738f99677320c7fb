"""Corrections by advocates, on both databases: mark a story not relevant, merge two, split a
report out, each undoable; what was sent is never sent again, and the corrections export as
labelled items that `watcher eval` reads."""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, update

from tests.helpers import watcher
from tests.httpserver import FeedServer
from tests.mailserver import MailServer
from watcher.config import EVENT_TYPES, load_config_text
from watcher.evaluate import evaluate, read_labelled
from watcher.outbox import Deliverer
from watcher.pipeline import match_items
from watcher.routing import Alerting
from watcher.rules import compile_rules
from watcher.store import Store
from watcher.store import tables as t
from watcher.store.corrections import CorrectionError, Corrections
from watcher.types import Item

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)

CONFIG = {
    "sources": [
        {"id": "wire-en", "kind": "feed", "url": "https://e.org/en", "lang": "en"},
        {"id": "wire-ko", "kind": "feed", "url": "https://e.org/ko", "lang": "ko"},
    ],
    "concepts": {
        "nk_people": {"en": ["north korean*"], "ko": ["탈북민"]},
        "sent_back": {"en": ["repatriat*"], "ko": ["북송"]},
        "arrested": {"en": ["detain*"], "ko": ["체포"]},
    },
    "channels": [
        {"id": "hook", "url": "json://127.0.0.1:9/hook"},
        {"id": "mail", "url": "json://127.0.0.1:9/mail"},
    ],
    "routes": [{"id": "everything", "channels": ["hook", "mail"]}],
    "rules": [
        {
            "id": "return",
            "event": "forced_repatriation",
            "all_of": ["nk_people", "sent_back"],
            "severity": "high",
        },
        {"id": "arrest", "event": "detention", "all_of": ["nk_people", "arrested"]},
    ],
}

#: Two events days apart: a return via Dandong, a detention in Kunming.
RETURN = ("https://e.org/1", "wire-en", "China repatriates 60 North Koreans via Dandong", 0)
RETURN_KO = ("https://e.org/2", "wire-ko", "중국, 탈북민 60명 단둥 통해 강제북송", 2)
DETENTION = ("https://e.org/3", "wire-en", "Police detain 7 North Koreans in Kunming", 100)


def item(key: str, source: str, title: str, hours: float) -> Item:
    return Item(
        key=key,
        source_id=source,
        url=key,
        title=title,
        text="",
        lang="ko" if source.endswith("ko") else "en",
        published_at=T0 + timedelta(hours=hours),
        published_raw=None,
        fetched_at=T0 + timedelta(hours=hours, minutes=5),
    )


@pytest.fixture
def config():
    return load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "c.yaml", {}).config


@pytest.fixture
def save(store: Store, config):
    store.sync_sources(config.sources, T0)
    matcher = compile_rules(config)
    alerting = Alerting.from_config(config)

    def save(*reports: tuple[str, str, str, float]) -> None:
        items = [item(*r) for r in reports]
        store.save_items(
            items,
            now=max(i.fetched_at for i in items),
            matches=match_items(matcher, items, ()),
            alerting=alerting,
        )

    return save


@pytest.fixture
def fix(store: Store, config) -> Corrections:
    return Corrections(store, Alerting.from_config(config))


def story_of(store: Store, key: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(
            select(t.story_items.c.story_id)
            .join(t.items, t.items.c.id == t.story_items.c.item_id)
            .where(t.items.c.key == key)
        ).scalar_one()


def deliveries(store: Store, story_id: int) -> list[tuple[str, str, int]]:
    """(kind, status, revision) of the story's messages, in order."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.deliveries.c.kind, t.deliveries.c.status, t.deliveries.c.revision)
            .where(t.deliveries.c.story_id == story_id)
            .order_by(t.deliveries.c.id)
        ).all()
    return [(r.kind, r.status, r.revision) for r in rows]


def status(store: Store, story_id: int) -> tuple[str, int, int]:
    with store.engine.connect() as conn:
        row = conn.execute(
            select(t.stories.c.status, t.stories.c.item_count, t.stories.c.revision).where(
                t.stories.c.id == story_id
            )
        ).one()
    return row.status, row.item_count, row.revision


def mark_sent(store: Store, story_id: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.story_id == story_id)
            .values(status="sent", sent_at=T0 + timedelta(minutes=30))
        )


def test_a_story_marked_not_relevant_sends_nothing_more_until_undone(
    store: Store, save, fix: Corrections
) -> None:
    save(RETURN)
    sid = story_of(store, RETURN[0])
    assert deliveries(store, sid) == [("alert", "pending", 1)] * 2
    done = fix.mark_not_relevant(sid, by="ana", reason="a drill, not a return", now=LATER)
    assert deliveries(store, sid) == [("alert", "withdrawn", 1)] * 2
    assert status(store, sid)[0] == "not_relevant"
    # A later report of the same event joins it, quietly: no message for it.
    save(RETURN_KO)
    assert story_of(store, RETURN_KO[0]) == sid
    assert deliveries(store, sid) == [("alert", "withdrawn", 1)] * 2
    with pytest.raises(CorrectionError, match="already marked"):
        fix.mark_not_relevant(sid, by="ana", reason="again", now=LATER)
    listed = fix.listing(sid)
    assert [(c.id, c.by, c.reason, c.undone_at) for c in listed] == [
        (done.id, "ana", "a drill, not a return", None)
    ]
    fix.undo(done.id, by="ben", now=LATER + timedelta(minutes=1))
    assert status(store, sid)[0] == "open"
    assert deliveries(store, sid) == [("alert", "pending", 1)] * 2  # back in the queue
    assert fix.listing(sid)[0].undone_by == "ben"
    with pytest.raises(CorrectionError, match="already undone"):
        fix.undo(done.id, by="ben", now=LATER)


def test_merging_two_stories_sends_one_update_and_never_resends(
    store: Store, save, fix: Corrections
) -> None:
    save(RETURN)
    save(DETENTION)
    a, b = story_of(store, RETURN[0]), story_of(store, DETENTION[0])
    assert a != b
    mark_sent(store, a)
    mark_sent(store, b)
    done = fix.merge(a, b, by="ana", reason="the detainees are the returnees", now=LATER)
    assert story_of(store, DETENTION[0]) == a
    assert status(store, b)[0] == "merged"
    assert status(store, a) == ("open", 2, 2)
    # One update per channel for the merged story; nothing sent before is sent again.
    assert deliveries(store, a) == [("alert", "sent", 1)] * 2 + [("update", "pending", 2)] * 2
    assert deliveries(store, b) == [("alert", "sent", 1)] * 2
    with store.engine.connect() as conn:
        events = json.loads(
            conn.execute(select(t.stories.c.events).where(t.stories.c.id == a)).scalar_one()
        )
    assert set(events) == {"forced_repatriation", "detention"}
    with pytest.raises(CorrectionError, match="was merged into"):
        fix.mark_not_relevant(b, by="ana", reason="x", now=LATER)
    fix.undo(done.id, by="ana", now=LATER + timedelta(minutes=1))
    assert story_of(store, DETENTION[0]) == b
    assert status(store, b) == ("open", 1, 1)
    assert status(store, a)[:2] == ("open", 1)
    # The update not yet sent is withdrawn with the merge; the alerts stay sent.
    assert deliveries(store, a) == [("alert", "sent", 1)] * 2 + [("update", "withdrawn", 2)] * 2


def test_a_merge_before_any_message_went_out_adds_no_update(
    store: Store, save, fix: Corrections
) -> None:
    save(RETURN)
    save(DETENTION)
    a, b = story_of(store, RETURN[0]), story_of(store, DETENTION[0])
    fix.merge(a, b, by="ana", reason="one event", now=LATER)
    # The waiting alert will show the merged story when it is sent; B's alert is withdrawn.
    assert deliveries(store, a) == [("alert", "pending", 1)] * 2
    assert deliveries(store, b) == [("alert", "withdrawn", 1)] * 2


def test_a_split_report_founds_its_own_story_and_undo_puts_it_back(
    store: Store, save, fix: Corrections
) -> None:
    save(RETURN)
    save(RETURN_KO)
    sid = story_of(store, RETURN[0])
    assert story_of(store, RETURN_KO[0]) == sid
    mark_sent(store, sid)
    done = fix.split(sid, RETURN_KO[0], by="ana", reason="another group", now=LATER)
    new = story_of(store, RETURN_KO[0])
    assert new != sid and done.other_story_id == new
    assert status(store, sid) == ("open", 1, 1)
    assert status(store, new) == ("open", 1, 1)
    assert deliveries(store, new) == [("alert", "pending", 1)] * 2
    assert deliveries(store, sid) == [("alert", "sent", 1)] * 2  # not sent again
    fix.undo(done.id, by="ana", now=LATER)
    assert story_of(store, RETURN_KO[0]) == sid
    assert status(store, sid)[:2] == ("open", 2)
    assert status(store, new)[0] == "merged"
    assert deliveries(store, new) == [("alert", "withdrawn", 1)] * 2
    # its page says what happened: a split undone, not a merge
    from bs4 import BeautifulSoup
    from starlette.testclient import TestClient

    from watcher.config import load_config_text
    from watcher.web import create_app

    config = load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "c.yaml", {}).config
    with TestClient(create_app(store, config)) as c:
        notice = BeautifulSoup(c.get(f"/stories/{new}").text, "html.parser").select_one(".notice")
    assert notice is not None
    assert notice.get_text(" ", strip=True) == (
        f"Split out of a story, then undone (correction {done.id}): its report is back in "
        f"story {sid} ."
    )


@pytest.mark.parametrize(
    ("attempt", "message"),
    [
        (lambda f, a, b: f.merge(a, a, by="x", reason="r", now=LATER), "into itself"),
        (lambda f, a, b: f.merge(a, 999, by="x", reason="r", now=LATER), "no story 999"),
        (
            lambda f, a, b: f.split(a, "https://e.org/1", by="x", reason="r", now=LATER),
            "only report",
        ),
        (lambda f, a, b: f.split(a, "https://nope", by="x", reason="r", now=LATER), "no report"),
        (lambda f, a, b: f.undo(42, by="x", now=LATER), "no correction 42"),
    ],
    ids=["merge-itself", "merge-unknown", "split-only-report", "split-unknown", "undo-unknown"],
)
def test_corrections_that_cannot_be_made_say_why_and_change_nothing(
    store: Store, save, fix: Corrections, attempt, message: str
) -> None:
    save(RETURN)
    save(DETENTION)
    a, b = story_of(store, RETURN[0]), story_of(store, DETENTION[0])
    with pytest.raises(CorrectionError, match=message):
        attempt(fix, a, b)
    assert status(store, a) == ("open", 1, 1) and status(store, b) == ("open", 1, 1)
    assert fix.listing() == []


def test_a_later_correction_must_be_undone_first(store: Store, save, fix: Corrections) -> None:
    save(RETURN)
    save(DETENTION)
    a, b = story_of(store, RETURN[0]), story_of(store, DETENTION[0])
    merge = fix.merge(a, b, by="ana", reason="one event", now=LATER)
    mark = fix.mark_not_relevant(a, by="ben", reason="a drill", now=LATER)
    with pytest.raises(CorrectionError, match=f"correction {mark.id} changed the same stories"):
        fix.undo(merge.id, by="ana", now=LATER)
    fix.undo(mark.id, by="ana", now=LATER)
    fix.undo(merge.id, by="ana", now=LATER)
    assert story_of(store, DETENTION[0]) == b


def test_corrections_export_as_labels_that_eval_reads(
    store: Store, save, fix: Corrections, config
) -> None:
    save(RETURN)
    save(RETURN_KO)
    save(DETENTION)
    a, b = story_of(store, RETURN[0]), story_of(store, DETENTION[0])
    fix.mark_not_relevant(b, by="ana", reason="a drill", now=LATER)
    lines = [json.dumps(row, ensure_ascii=False) for row in fix.labels()]
    labelled = read_labelled(lines, "labels.jsonl")
    # Only corrected stories by default: A was never corrected.
    assert {i.id: (i.relevant, i.story) for i in labelled} == {DETENTION[0]: (False, None)}
    everything = read_labelled(
        [json.dumps(r, ensure_ascii=False) for r in fix.labels(every_story=True)], "all"
    )
    assert {i.id: i.story for i in everything} == {
        RETURN[0]: f"story-{a}",
        RETURN_KO[0]: f"story-{a}",
        DETENTION[0]: None,
    }
    result, _, _ = evaluate(everything, compile_rules(config), EVENT_TYPES, stories=True)
    # The rules still match the drill: eval shows the advocate's correction as a false positive.
    assert result["relevance"]["precision"] == pytest.approx(2 / 3, abs=1e-3)
    assert result["relevance"]["recall"] == 1.0
    assert result["stories"]["pair_precision"] == 1.0


def test_story_commands(tmp_path: Path) -> None:
    """The CLI: mark, list, undo, and a clear error for a story that does not exist."""
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG, allow_unicode=True), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store.open(db)
    store.upgrade()
    config = load_config_text(cfg.read_text(encoding="utf-8"), str(cfg), {}).config
    store.sync_sources(config.sources, T0)
    items = [item(*RETURN)]
    store.save_items(
        items,
        now=items[0].fetched_at,
        matches=match_items(compile_rules(config), items, ()),
        alerting=Alerting.from_config(config),
    )
    sid = story_of(store, RETURN[0])
    store.close()
    base = ("--config", str(cfg), "--db", db)
    marked = watcher(
        *base, "story", "mark", str(sid), "--not-relevant", "--reason", "drill", "--by", "ana"
    )
    assert marked.returncode == 0, marked.stderr
    assert f"story {sid} marked not relevant" in marked.stdout
    assert "2 messages not yet sent withdrawn" in marked.stdout
    listed = watcher(*base, "story", "corrections")
    assert "ana" in listed.stdout and "drill" in listed.stdout
    undone = watcher(*base, "story", "undo", "1")
    assert undone.returncode == 0 and "undone" in undone.stdout
    missing = watcher(*base, "story", "merge", str(sid), "999", "--reason", "x")
    assert missing.returncode == 1  # nothing found (the README's convention)
    assert missing.stderr.strip().splitlines()[-1] == "error: no story 999"
    itself = watcher(*base, "story", "merge", str(sid), str(sid), "--reason", "x")
    assert itself.returncode == 2  # asked for what cannot be done
    assert "cannot be merged into itself" in itself.stderr
    # The correction was undone: no corrected story left, but every story on request.
    assert watcher(*base, "export", "labels").stdout == ""
    labels = watcher(*base, "export", "labels", "--all-stories")
    assert labels.returncode == 0
    assert [json.loads(line)["id"] for line in labels.stdout.splitlines()] == [RETURN[0]]


TOKEN = "s3cret-token-for-tests"


def csrf_of(page: str) -> str:
    import re

    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, "the page offers no correction form"
    return found.group(1)


def test_the_story_page_corrects_behind_the_token_with_csrf(store: Store, save, config) -> None:
    from starlette.testclient import TestClient

    from watcher.web import create_app

    save(RETURN)
    save(DETENTION)
    a, b = story_of(store, RETURN[0]), story_of(store, DETENTION[0])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(store, config, token=TOKEN)) as c:
        page = c.get(f"/stories/{a}", headers=auth)
        assert page.status_code == 200 and "Correct this story" in page.text
        csrf = csrf_of(page.text)
        form = {"action": "merge", "other": str(b), "reason": "one event", "csrf": csrf}
        # Without the CSRF value, with a forged one, or without the token: refused, no change.
        for headers, data in [
            (auth, {**form, "csrf": ""}),
            (auth, {**form, "csrf": "0" * 64}),
            ({}, form),
        ]:
            refused = c.post(
                f"/stories/{a}/corrections", data=data, headers=headers, follow_redirects=False
            )
            assert refused.status_code in (401, 403)
        assert story_of(store, DETENTION[0]) == b
        done = c.post(f"/stories/{a}/corrections", data=form, headers=auth, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"].endswith("#corrections")
        assert story_of(store, DETENTION[0]) == a
        listed = c.get(f"/stories/{a}", headers=auth).text
        assert "merged into story" in listed and "one event" in listed and ">web<" in listed
        merged = c.get(f"/stories/{b}", headers=auth).text
        assert f'Merged into <a href="/stories/{a}">' in merged
        # Undo from the page.
        (correction,) = Corrections(store).listing(a)
        undo = {"action": "undo", "correction": str(correction.id), "csrf": csrf}
        assert (
            c.post(
                f"/stories/{a}/corrections", data=undo, headers=auth, follow_redirects=False
            ).status_code
            == 303
        )
        assert story_of(store, DETENTION[0]) == b
        # A correction that cannot be made says why, on the story's page, as a page (the
        # form's answer), with a status that says what kind of refusal it is.
        for fields, code, why in [
            ({"action": "merge", "other": str(a), "reason": "x"}, 409, "into itself"),
            ({"action": "merge", "other": "99999", "reason": "x"}, 404, "no story 99999"),
            ({"action": "merge", "other": "two", "reason": "x"}, 400, "other: expected a number"),
            ({"action": "merge", "other": str(b), "reason": " "}, 400, "say why"),
            (
                {"action": "split", "item": "https://nowhere.example/", "reason": "x"},
                404,
                "no report",
            ),
        ]:
            answer = c.post(
                f"/stories/{a}/corrections", data={**fields, "csrf": csrf}, headers=auth
            )
            assert answer.status_code == code, (fields, answer.status_code)
            assert answer.headers["content-type"].startswith("text/html")
            shown = html.unescape(answer.text)
            assert "Not done: " in shown and why in shown.split("Not done: ", 1)[1].split("<")[0]
            assert "Correct this story" in answer.text  # the form is there to try again
        assert story_of(store, DETENTION[0]) == b  # nothing changed


def test_a_split_reads_the_reports_it_leaves_as_their_outlets_now_tell_them(
    store: Store, save, fix: Corrections
) -> None:
    # the founding report was edited at source (60 → 600, and it is re-matched); a split
    # recomputes the story from what its reports say now: severity and count from one reading
    save(RETURN, RETURN_KO)
    sid = story_of(store, RETURN[0])
    edited = ("https://e.org/1", "wire-en", "China repatriates 600 North Koreans via Dandong", 0)
    save(edited)
    fix.split(sid, RETURN_KO[0], by="ana", reason="another group", now=LATER)
    with store.engine.connect() as conn:
        row = conn.execute(
            select(t.stories.c.people, t.stories.c.severity).where(t.stories.c.id == sid)
        ).one()
        (match,) = conn.execute(
            select(t.matches.c.people, t.matches.c.severity)
            .join(t.items, t.items.c.id == t.matches.c.item_id)
            .where(t.items.c.key == RETURN[0])
        ).all()
    assert match.people == 600
    assert (row.people, row.severity) == (match.people, match.severity)


def test_without_a_token_the_pages_stay_read_only(store: Store, save, config) -> None:
    from starlette.testclient import TestClient

    from watcher.web import create_app

    save(RETURN)
    sid = story_of(store, RETURN[0])
    with TestClient(create_app(store, config)) as c:
        page = c.get(f"/stories/{sid}")
        assert "Correct this story" not in page.text and "Read-only" in page.text
        form = {"action": "not_relevant", "reason": "x", "csrf": "0" * 64}
        assert c.post(f"/stories/{sid}/corrections", data=form).status_code == 403
        assert c.post("/stories", data=form).status_code == 405  # no other POST at all
    assert status(store, sid)[0] == "open"


def test_a_story_marked_not_relevant_leaves_the_timeline_and_feeds(
    store: Store, save, fix: Corrections, config
) -> None:
    from starlette.testclient import TestClient

    from watcher.web import create_app

    save(RETURN)
    save(DETENTION)
    a, b = story_of(store, RETURN[0]), story_of(store, DETENTION[0])
    fix.mark_not_relevant(b, by="ana", reason="a drill", now=LATER)
    with TestClient(create_app(store, config)) as c:
        timeline = c.get("/").text
        feed = c.get("/feed.atom").text
        page = c.get(f"/stories/{b}").text
    assert f"/stories/{a}" in timeline and f"/stories/{b}" not in timeline
    assert f"/stories/{a}" in feed and f"/stories/{b}" not in feed
    assert "Marked not relevant" in page


# --------------------------------------------------------------------------- retractions


def on_channels(store: Store, story_id: int) -> list[tuple[str, str, str, int]]:
    """(kind, channel, status, revision) of the story's messages, in order."""
    d = t.deliveries.c
    with store.engine.connect() as conn:
        found = conn.execute(
            select(d.kind, d.channel, d.status, d.revision)
            .where(d.story_id == story_id)
            .order_by(d.id)
        ).all()
    return [(r.kind, r.channel, r.status, r.revision) for r in found]


def settle(store: Store, story_id: int, channels: tuple[str, ...], outcome: str = "sent") -> None:
    """The story's messages on `channels` went out (or, `uncertain`, may have)."""
    with store.engine.begin() as conn:
        conn.execute(
            update(t.deliveries)
            .where((t.deliveries.c.story_id == story_id) & t.deliveries.c.channel.in_(channels))
            .values(status=outcome, sent_at=T0 + timedelta(minutes=30))
        )


@pytest.mark.parametrize(
    ("told", "outcome", "retracted"),
    [
        (("hook", "mail"), "sent", ("hook", "mail")),
        (("hook",), "sent", ("hook",)),
        (("mail",), "uncertain", ("mail",)),  # it may have arrived: it is retracted too
        ((), "sent", ()),
    ],
    ids=["both-told", "one-told", "one-maybe-told", "none-told"],
)
def test_marking_a_story_not_relevant_retracts_it_once_where_it_was_told(
    store: Store, save, fix: Corrections, told, outcome: str, retracted
) -> None:
    save(RETURN)
    sid = story_of(store, RETURN[0])
    settle(store, sid, told, outcome)
    done = fix.mark_not_relevant(sid, by="ana", reason="a drill, not a return", now=LATER)
    notices = [(c, s, r) for k, c, s, r in on_channels(store, sid) if k == "retraction"]
    # One retraction per channel told of the story, as the story's next revision; none for
    # a channel whose alert was still waiting (it is withdrawn), and nothing when no message
    # had gone out: the story keeps its revision.
    assert notices == [(channel, "pending", 2) for channel in retracted]
    assert len(done.detail["queued"]) == len(retracted)
    assert status(store, sid) == ("not_relevant", 1, 2 if retracted else 1)
    waiting = {c for k, c, s, _ in on_channels(store, sid) if k == "alert" and s == "withdrawn"}
    assert waiting == {"hook", "mail"} - set(told)


def test_a_retraction_is_withdrawn_when_the_mark_is_undone_before_it_went_out(
    store: Store, save, fix: Corrections
) -> None:
    save(RETURN)
    sid = story_of(store, RETURN[0])
    settle(store, sid, ("hook", "mail"))
    done = fix.mark_not_relevant(sid, by="ana", reason="a drill", now=LATER)
    fix.undo(done.id, by="ben", now=LATER + timedelta(minutes=1))
    assert on_channels(store, sid) == [
        ("alert", "hook", "sent", 1),
        ("alert", "mail", "sent", 1),
        ("retraction", "hook", "withdrawn", 2),
        ("retraction", "mail", "withdrawn", 2),
    ]  # and no "reinstated": nobody read the retraction
    assert status(store, sid)[0] == "open"


def test_undoing_a_mark_after_its_retraction_went_out_reinstates_it_there(
    store: Store, save, fix: Corrections
) -> None:
    save(RETURN)
    sid = story_of(store, RETURN[0])
    settle(store, sid, ("hook", "mail"))
    done = fix.mark_not_relevant(sid, by="ana", reason="a drill", now=LATER)
    # The retraction reached the hook; the mail's was still waiting when the mark was undone.
    with store.engine.begin() as conn:
        conn.execute(
            update(t.deliveries)
            .where((t.deliveries.c.kind == "retraction") & (t.deliveries.c.channel == "hook"))
            .values(status="sent", sent_at=LATER)
        )
    fix.undo(done.id, by="ben", now=LATER + timedelta(minutes=1))
    assert on_channels(store, sid)[2:] == [
        ("retraction", "hook", "sent", 2),
        ("retraction", "mail", "withdrawn", 2),
        ("reinstated", "hook", "pending", 3),
    ]
    assert status(store, sid) == ("open", 1, 3)


def test_a_digest_route_hears_of_the_retraction_at_once(store: Store, config) -> None:
    digest = {**CONFIG, "routes": [{"id": "morning", "channels": ["mail"], "mode": "digest"}]}
    cfg = load_config_text(yaml.safe_dump(digest, allow_unicode=True), "c.yaml", {}).config
    store.sync_sources(cfg.sources, T0)
    items = [item(*RETURN)]
    store.save_items(
        items,
        now=items[0].fetched_at,
        matches=match_items(compile_rules(cfg), items, ()),
        alerting=Alerting.from_config(cfg),
    )
    sid = story_of(store, RETURN[0])
    settle(store, sid, ("mail",))  # the story was in this morning's digest
    Corrections(store, Alerting.from_config(cfg)).mark_not_relevant(
        sid, by="ana", reason="a drill", now=LATER
    )
    with store.engine.connect() as conn:
        row = conn.execute(
            select(t.deliveries.c.kind, t.deliveries.c.due_at).where(
                t.deliveries.c.story_id == sid, t.deliveries.c.status == "pending"
            )
        ).one()
    assert (row.kind, row.due_at) == ("retraction", LATER)  # not held for tomorrow's digest


# --------------------------------------------------------------------------- sent for real


@pytest.fixture
def receivers() -> Iterator[tuple[FeedServer, MailServer]]:
    with FeedServer() as hooks, MailServer() as mail:
        for path in ("/hook", "/late"):
            hooks.route(path, status=200, body=b"{}", content_type="application/json")
        yield hooks, mail


class Live:
    """CONFIG's rules with channels on local receivers: a webhook and a mailbox told at once,
    and a second webhook whose route waits an hour (`group_wait`), with the story page's
    address set, and a Deliverer on a clock the test moves."""

    def __init__(self, store: Store, hooks: FeedServer, mail: MailServer) -> None:
        doc = {
            **CONFIG,
            "channels": [
                {"id": "hook", "url": hooks.url("/hook").replace("http://", "json://")},
                {"id": "mail", "url": mail.apprise_url()},
                {"id": "late", "url": hooks.url("/late").replace("http://", "json://")},
            ],
            "routes": [
                {"id": "now", "channels": ["hook", "mail"], "group_wait": "0s", "continue": True},
                {"id": "later", "channels": ["late"], "group_wait": "1h"},
            ],
            "settings": {
                "allow_private_addresses": True,
                "public_url": "https://watch.example.org",
            },
        }
        self.config = load_config_text(yaml.safe_dump(doc, allow_unicode=True), "c.yaml", {}).config
        self.store, self.hooks, self.mail = store, hooks, mail
        self.now = LATER
        store.sync_sources(self.config.sources, T0)
        self.fix = Corrections(store, Alerting.from_config(self.config))
        self.deliverer = Deliverer(store, self.config, clock=lambda: self.now)

    def save(self, *reports: tuple[str, str, str, float]) -> None:
        items = [item(*r) for r in reports]
        self.store.save_items(
            items,
            now=max(i.fetched_at for i in items),
            matches=match_items(compile_rules(self.config), items, ()),
            alerting=Alerting.from_config(self.config),
        )

    def deliver(self, minutes: float = 1) -> int:
        self.now += timedelta(minutes=minutes)
        return asyncio.run(self.deliverer.run_due())

    def posted(self, path: str = "/hook") -> list[dict]:
        return [json.loads(seen.body) for seen in self.hooks.hits(path)]


@pytest.fixture
def live(store: Store, receivers) -> Live:
    return Live(store, *receivers)


HOSTILE_TITLE = "<b>Police</b> detain 7 North Koreans *now* [x](javascript:alert(1)) @channel"


def test_a_retraction_goes_once_to_the_channels_that_got_the_alert(live: Live) -> None:
    live.save(("https://e.org/h", "wire-en", HOSTILE_TITLE, 0.5))
    sid = story_of(live.store, "https://e.org/h")
    assert live.deliver() == 2  # the hook and the mailbox; the late route waits its hour
    reason = "a drill, <i>not</i> an arrest"
    live.fix.mark_not_relevant(sid, by="ana", reason=reason, now=live.now)
    for _ in range(3):
        live.deliver(minutes=30)  # past the late route's hour, and retried: sent once
    alert, retraction = live.posted()
    assert "Retracted" not in alert["title"]
    assert retraction["title"].startswith("[MEDIUM] Retracted · Detention")
    body = retraction["message"]
    # a webhook gets plain text: every "<" and "@" defused with a zero-width space
    assert "Retracted: <\u200bb>Police<\u200b/b> detain 7 North Koreans *now*" in body
    assert "marked not relevant by ana: a drill, <\u200bi>not<\u200b/i> an arrest" in body
    assert "@\u200bchannel" in body and "<b>" not in body and "<i>" not in body
    assert f"https://watch.example.org/stories/{sid}" in body
    assert live.posted("/late") == []  # its alert was withdrawn: nothing to retract
    first, second = live.mail.messages
    assert "Retracted" in second["Subject"] and "Retracted" not in first["Subject"]
    html_body = second.get_body(("html",)).get_content()
    assert "a drill, &lt;i&gt;not&lt;/i&gt; an arrest" in html_body  # escaped, not markup
    assert "[x](javascript:alert(1))" in html_body and 'href="javascript' not in html_body
    assert f'href="https://watch.example.org/stories/{sid}"' in html_body
    assert sorted((k, c, s) for k, c, s, _ in on_channels(live.store, sid)) == [
        ("alert", "hook", "sent"),
        ("alert", "late", "withdrawn"),
        ("alert", "mail", "sent"),
        ("retraction", "hook", "sent"),
        ("retraction", "mail", "sent"),
    ]


def test_nothing_is_retracted_when_nothing_went_out(live: Live) -> None:
    live.save(DETENTION)
    sid = story_of(live.store, DETENTION[0])
    done = live.fix.mark_not_relevant(sid, by="ana", reason="a drill", now=live.now)
    assert done.detail["queued"] == []
    for _ in range(3):
        assert live.deliver(minutes=30) == 0
    assert live.posted() == [] and live.posted("/late") == [] and live.mail.messages == []


def test_an_undone_mark_sends_no_retraction_or_a_reinstatement_after_one(live: Live) -> None:
    live.save(DETENTION)
    sid = story_of(live.store, DETENTION[0])
    live.deliver()
    # undone before the retraction went out: it is never sent
    early = live.fix.mark_not_relevant(sid, by="ana", reason="a drill", now=live.now)
    live.fix.undo(early.id, by="ben", now=live.now)
    live.deliver()
    assert [m["title"] for m in live.posted()] == [
        "[MEDIUM] Detention: 7 people · Kunming"  # the alert alone
    ]
    # undone after it went out: the channels that read it hear the alert stands
    late = live.fix.mark_not_relevant(sid, by="ana", reason="a drill", now=live.now)
    live.deliver()
    live.fix.undo(late.id, by="ben", now=live.now)
    live.deliver()
    live.deliver(minutes=90)  # nothing else, ever
    titles = [m["title"].split(" · ")[0] for m in live.posted()]
    assert titles == ["[MEDIUM] Detention: 7 people", "[MEDIUM] Retracted", "[MEDIUM] Reinstated"]
    # the late route's alert, withdrawn by the first mark, came back due now with its undo
    # and went out: that channel read the alert too, so it reads the same three
    assert [m["title"].split(" · ")[0] for m in live.posted("/late")] == titles
    reinstated = live.posted()[-1]["message"]
    assert "the retraction was undone by ben" in reinstated
    assert [m["Subject"].split(" · ")[0] for m in live.mail.messages] == [
        "[MEDIUM] Detention: 7 people",
        "[MEDIUM] Retracted",
        "[MEDIUM] Reinstated",
    ]
