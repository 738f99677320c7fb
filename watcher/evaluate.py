"""Scoring the rules and story grouping against labelled items (pure: no database, no network).

    labelled JSONL ──read_labelled()──▶ [Labelled] ──score()──▶ relevance, events, by_lang, halves
    matched [Labelled] ──stories.replay()──▶ story ids ──cluster_scores()──▶ pairwise P/R/F1, ARI

A labelled line has the fields of the development set: ``id``, ``url``, ``source``, ``lang``,
``published`` (or ``published_at``, as `watcher match` names it), ``title``, ``text``,
``labels`` (event types, or ``not_relevant``), ``relevant`` and ``story`` (a cluster slug or
null). Only ``id``, ``title`` or ``text``, and ``labels`` or ``relevant`` are required. Ids
ending in a number are split into odd and even halves, so that a rule tuned on one half can be
checked on the other.

A score with nothing to measure is None (null in JSON, "-" in text), never a perfect 1: the
precision of nothing predicted, the recall of nothing labelled, the F1 of neither, a half
without items, the story scores of a file without any `story` label.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import comb
from typing import Any

from watcher.errors import EvalInputError
from watcher.rules import Matcher, Verdict
from watcher.stories import Facts, Grouping, breakdown, names_in, stated_days

NOT_RELEVANT = "not_relevant"


@dataclass(frozen=True, kw_only=True, slots=True)
class Labelled:
    id: str
    title: str
    text: str = ""
    lang: str | None = None
    source: str | None = None
    url: str | None = None
    published: datetime | None = None
    #: Event types the item reports (empty when not relevant).
    labels: frozenset[str] = frozenset()
    relevant: bool = False
    story: str | None = None

    @property
    def half(self) -> str | None:
        """'odd' or 'even' by the id's trailing number; None when it has none."""
        digits = re.search(r"(\d+)\s*$", self.id)
        if not digits:
            return None
        return "odd" if int(digits.group(1)) % 2 else "even"


def json_object(line: str, where: str) -> dict[str, Any]:
    """One JSON Lines record; EvalInputError says where when it is not a JSON object."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise EvalInputError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EvalInputError(f"{where}: expected a JSON object")
    return data


def article_text(data: Mapping[str, Any], where: str) -> tuple[str, str]:
    """(title, text) of an article record (`watcher match`, `watcher eval`): strings, not both
    empty; optional fields, when present, strings."""
    title, text = data.get("title") or "", data.get("text") or ""
    if not isinstance(title, str) or not isinstance(text, str):
        raise EvalInputError(f"{where}: 'title' and 'text' must be strings")
    if not (title or text):
        raise EvalInputError(f"{where}: no title or text")
    for key in ("lang", "source", "url", "story", "published", "published_at"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise EvalInputError(f"{where}: {key!r} must be a string or null")
    return title, text


#: The names an article's publication date goes by, meaning the same: `eval`'s `published` and
#: `published_at`, the name `watcher match` and `replay --format jsonl` use.
PUBLISHED = ("published", "published_at")


def published(data: Mapping[str, Any], where: str) -> tuple[str, str] | None:
    """(name, value) of an article's publication date under either name of `PUBLISHED`; None
    when neither is given. EvalInputError when the two are given and differ."""
    given = {key: data[key] for key in PUBLISHED if data.get(key)}
    if len(set(given.values())) > 1:
        raise EvalInputError(
            f"{where}: 'published' and 'published_at' differ (they are one field: give one)"
        )
    return next(iter(given.items()), None)


def read_labelled(
    lines: Iterable[str],
    name: str = "-",
    *,
    event_problem: Callable[[str], str | None] | None = None,
) -> list[Labelled]:
    """Parse labelled JSON Lines; EvalInputError names the file and line of the first bad one.

    `event_problem` says what is wrong with a label that names no known event (None when it
    is known): a misspelt label would otherwise be scored as an event no rule reports.

    Usage::

        read_labelled(open("dev.jsonl"), "dev.jsonl",
                      event_problem=lambda e: None if e in known else f"unknown event {e!r}")
    """
    out: list[Labelled] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        data = json_object(line, where)
        item_id = data.get("id")
        if isinstance(item_id, bool) or not isinstance(item_id, str | int) or item_id == "":
            raise EvalInputError(f"{where}: 'id' is missing (expected a string or number)")
        item_id = str(item_id)
        if item_id in seen:
            raise EvalInputError(f"{where}: id {item_id!r} appears twice")
        seen.add(item_id)
        title, text = article_text(data, where)
        # `events` is the name the project's own test sets give the field (tests/fixtures/rules)
        field = "labels" if "labels" in data or "events" not in data else "events"
        if field not in data:
            raise EvalInputError(
                f"{where}: 'labels' is missing (expected a list of event types; "
                f'[] or ["{NOT_RELEVANT}"] for an item that is not relevant)'
            )
        labels = data[field]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise EvalInputError(f"{where}: {field!r} must be a list of event types")
        events = frozenset(x for x in labels if x != NOT_RELEVANT)
        problems = [event_problem(e) for e in sorted(events)] if event_problem else []
        if first := next((p for p in problems if p), None):
            raise EvalInputError(f"{where}: {first}")
        relevant = data.get("relevant", bool(events))
        if not isinstance(relevant, bool):
            raise EvalInputError(f"{where}: 'relevant' must be true or false")
        if relevant != bool(events):
            raise EvalInputError(
                f"{where}: 'relevant' is {str(relevant).lower()} but {field!r} "
                f"{'name no event' if relevant else 'name events'} (expected them to agree)"
            )
        out.append(
            Labelled(
                id=item_id,
                title=title,
                text=text,
                lang=(data.get("lang") or None),
                source=data.get("source") or None,
                url=data.get("url") or None,
                published=_date(published(data, where), where),
                labels=events,
                relevant=relevant,
                story=data.get("story") or None,
            )
        )
    return out


def _date(field: tuple[str, str] | None, where: str) -> datetime | None:
    if field is None:
        return None
    key, value = field
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise EvalInputError(f"{where}: {key!r} is not an ISO date: {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True, slots=True)
class PRF:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        """None when nothing was predicted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """None when nothing was labelled."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """None when nothing was labelled or predicted; 0 when one of them is empty."""
        counted = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / counted if counted else None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "precision": _rounded(self.precision),
            "recall": _rounded(self.recall),
            "f1": _rounded(self.f1),
            "support": self.tp + self.fn,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def prf(truth: Sequence[bool], predicted: Sequence[bool]) -> PRF:
    tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t and p)
    fp = sum(1 for t, p in zip(truth, predicted, strict=True) if p and not t)
    fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t and not p)
    return PRF(tp, fp, fn)


@dataclass(frozen=True, slots=True)
class Scores:
    relevance: PRF
    events: Mapping[str, PRF]

    @property
    def macro_f1(self) -> float | None:
        """Mean F1 over the event types that occur in the labels or the predictions (None when
        none does)."""
        present = [s.f1 for s in self.events.values() if s.f1 is not None]
        return sum(present) / len(present) if present else None

    def as_dict(self) -> dict[str, object]:
        return {
            "relevance": self.relevance.as_dict(),
            "macro_f1": _rounded(self.macro_f1),
            "events": {e: s.as_dict() for e, s in sorted(self.events.items())},
        }


def score(
    items: Sequence[Labelled], predicted: Mapping[str, frozenset[str]], event_types: Iterable[str]
) -> Scores:
    """Relevance (any event predicted) and per-event scores; `predicted` maps id → events."""
    got = [predicted.get(i.id, frozenset()) for i in items]
    relevance = prf([i.relevant for i in items], [bool(g) for g in got])
    types = sorted(set(event_types) | {e for i in items for e in i.labels})
    events = {e: prf([e in i.labels for i in items], [e in g for g in got]) for e in types}
    return Scores(relevance=relevance, events=events)


def report(
    items: Sequence[Labelled], predicted: Mapping[str, frozenset[str]], event_types: Iterable[str]
) -> dict[str, object]:
    """Everything `watcher eval` prints: overall, per language and per half."""
    types = tuple(event_types)
    out = score(items, predicted, types).as_dict()
    out["items"] = len(items)
    by_lang: dict[str, object] = {}
    for lang in sorted({i.lang or "?" for i in items}):
        subset = [i for i in items if (i.lang or "?") == lang]
        by_lang[lang] = score(subset, predicted, types).as_dict() | {"items": len(subset)}
    out["by_lang"] = by_lang
    halves: dict[str, object] = {}
    for half in ("odd", "even"):
        subset = [i for i in items if i.half == half]
        halves[half] = score(subset, predicted, types).as_dict() | {"items": len(subset)}
    out["halves"] = halves
    return out


# --------------------------------------------------------------------------- clusters


def cluster_scores(
    truth: Mapping[str, str | None], predicted: Mapping[str, int], *, labelled: bool = True
) -> dict[str, float | int | None]:
    """Pairwise precision/recall/F1 and the adjusted Rand index of a grouping.

    `truth` maps item id → cluster slug (None: an item alone); `predicted` maps the same ids
    → story id. A pair counts when both items are in one cluster (truth) or story (predicted).
    Without `labelled` (a file with no `story` label at all: no truth to compare with) the
    four scores are None, as is each that has nothing to measure (no pair on either side).
    """
    ids = sorted(truth)
    true_labels = [truth[i] if truth[i] is not None else f"\0{i}" for i in ids]
    pred_labels = [predicted[i] for i in ids]
    joint = Counter(zip(true_labels, pred_labels, strict=True))
    both = sum(comb(n, 2) for n in joint.values())
    true_pairs = sum(comb(n, 2) for n in Counter(true_labels).values())
    pred_pairs = sum(comb(n, 2) for n in Counter(pred_labels).values())
    pairs = PRF(both, pred_pairs - both, true_pairs - both)
    total = comb(len(ids), 2)
    expected = true_pairs * pred_pairs / total if total else 0.0
    maximum = (true_pairs + pred_pairs) / 2
    ari: float | None
    if not (true_pairs or pred_pairs):
        ari = None  # all alone on both sides: nothing to agree on
    elif maximum == expected:
        ari = 1.0  # one cluster and one story, of every item
    else:
        ari = (both - expected) / (maximum - expected)
    measured = pairs.as_dict() if labelled else {}
    return {
        "pair_precision": measured.get("precision"),
        "pair_recall": measured.get("recall"),
        "pair_f1": measured.get("f1"),
        "ari": _rounded(ari) if labelled else None,
        "items": len(ids),
        "true_pairs": true_pairs,
        "predicted_pairs": pred_pairs,
    }


def cluster_errors(
    truth: Mapping[str, str | None], predicted: Mapping[str, int]
) -> tuple[dict[str, list[list[str]]], dict[int, dict[str, list[str]]]]:
    """(clusters split over several stories: slug → groups of ids,
    stories that mix clusters: story id → slug or '-' → ids)."""
    by_cluster: dict[str, dict[int, list[str]]] = {}
    by_story: dict[int, dict[str, list[str]]] = {}
    for item_id in sorted(truth):
        slug, story = truth[item_id], predicted[item_id]
        if slug is not None:
            by_cluster.setdefault(slug, {}).setdefault(story, []).append(item_id)
        by_story.setdefault(story, {}).setdefault(slug or "-", []).append(item_id)
    split = {s: list(g.values()) for s, g in sorted(by_cluster.items()) if len(g) > 1}
    mixed = {
        s: g for s, g in sorted(by_story.items()) if len(g) > 1 or ("-" in g and len(g["-"]) > 1)
    }
    return split, mixed


def best_link(
    grouping: Grouping, left: Sequence[str], right: Sequence[str]
) -> tuple[str, str, float, tuple[str, ...]] | None:
    """The pair of reports, one from each side, with the highest story score, and what made
    it (`stories.breakdown`): why two groups were joined, or how near they came to it. The
    later published of the two is scored against the earlier, as grouping does."""
    facts = {f.item_key: f for story in grouping.stories.values() for f in story.reports}
    best: tuple[str, str, float, tuple[str, ...]] | None = None
    rank: tuple[float, timedelta] | None = None
    for a in left:
        for b in right:
            if a not in facts or b not in facts:
                continue
            first, then = sorted((facts[a], facts[b]), key=lambda f: (f.at, f.item_key))
            total, parts = breakdown(then, first, grouping.window)
            # the highest score; of equal ones, the two nearest in time
            key = (total, -abs(then.at - first.at))
            if rank is None or key > rank:
                best, rank = (a, b, total, parts), key
    return best


def link_text(link: tuple[str, str, float, tuple[str, ...]] | None) -> str:
    """ "en-1 ↔ ko-6: 1.5 = count 1 (7), same event +0.5" (JOIN_SCORE or more joins)."""
    if link is None:
        return "no two reports to compare"
    a, b, total, parts = link
    return f"{a} ↔ {b}: {total:g}" + (f" = {', '.join(parts)}" if parts else " (nothing shared)")


def format_text(
    result: Mapping[str, object],
) -> str:
    """The human-readable form of a `report` (plus `stories` when present)."""
    lines: list[str] = []

    def num(value: object) -> str:
        """A score as printed: "-" when there was nothing to measure."""
        return "-" if value is None else f"{value:.2f}"

    def row(name: str, s: Mapping[str, object]) -> str:
        if s["f1"] is None:
            return f"  {name:<22} -  (none labelled, none predicted)"
        return (
            f"  {name:<22} P {num(s['precision'])}  R {num(s['recall'])}  F1 {num(s['f1'])}"
            f"  (n={s['support']})"
        )

    rel = result["relevance"]
    assert isinstance(rel, Mapping)
    lines.append(f"{result['items']} items")
    lines.append(row("relevance", rel))
    lines.append(f"  {'event macro-F1':<22} {num(result['macro_f1'])}")
    events = result["events"]
    assert isinstance(events, Mapping)
    for name, s in events.items():
        lines.append(row(name, s))
    for group in ("by_lang", "halves"):
        part = result[group]
        assert isinstance(part, Mapping)
        lines.append("")
        lines.append("by language:" if group == "by_lang" else "by half (odd ids / even ids):")
        for key, sub in part.items():
            r = sub["relevance"]
            lines.append(
                f"  {key:<5} n={sub['items']:<4} relevance F1 {num(r['f1'])}"
                f" (P {num(r['precision'])} R {num(r['recall'])})"
                f"  macro-F1 {num(sub['macro_f1'])}"
            )
    stories = result.get("stories")
    if isinstance(stories, Mapping):
        lines.append("")
        lines.append(
            f"stories: pairwise P {num(stories['pair_precision'])}"
            f" R {num(stories['pair_recall'])} F1 {num(stories['pair_f1'])}"
            f"  ARI {num(stories['ari'])}"
            f"  ({stories['items']} matched items, {stories['true_pairs']} true pairs,"
            f" {stories['predicted_pairs']} grouped)"
        )
    halves = result.get("stories_by_half")
    if isinstance(halves, Mapping):
        for half, sub in halves.items():
            lines.append(
                f"  {half:<5} pairwise P {num(sub['pair_precision'])}"
                f" R {num(sub['pair_recall'])} F1 {num(sub['pair_f1'])}"
                f"  ({sub['items']} items, each half replayed alone)"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True, slots=True)
class Outcome:
    """One item's verdict next to its labels."""

    item: Labelled
    events: frozenset[str]
    rules: tuple[str, ...]

    @property
    def missed(self) -> frozenset[str]:
        return self.item.labels - self.events

    @property
    def extra(self) -> frozenset[str]:
        return self.events - self.item.labels


def evaluate(
    items: Sequence[Labelled],
    matcher: Matcher,
    event_types: Iterable[str],
    *,
    tags: Mapping[str, tuple[str, ...]] | None = None,
    stories: bool = False,
    window: timedelta = timedelta(hours=72),
) -> tuple[dict[str, object], list[Outcome], Grouping | None]:
    """Run the rules (and, with `stories`, the grouping) over labelled items and score them."""
    tags = tags or {}
    outcomes: list[Outcome] = []
    verdicts: dict[str, Verdict] = {}
    for item in items:
        verdict = matcher.match(
            item.title,
            item.text,
            lang=item.lang,
            tags=tags.get((item.source or "").removeprefix("www."), ()),
        )
        verdicts[item.id] = verdict
        outcomes.append(Outcome(item, frozenset(verdict.events), verdict.rules))
    result = report(items, {o.item.id: o.events for o in outcomes}, event_types)
    grouping = None
    if stories:
        labelled = any(i.story for i in items)
        grouping = replay_stories(items, verdicts, window)
        truth = {i.id: i.story for i in items if i.id in grouping.assigned}
        result["stories"] = cluster_scores(truth, grouping.assigned, labelled=labelled)
        # Each half replayed on its own, as if it were all there is: a change tuned on one
        # half is checked on the other.
        by_half = {}
        for half in ("odd", "even"):
            subset = [i for i in items if i.half == half]
            alone = replay_stories(subset, verdicts, window)
            truth = {i.id: i.story for i in subset if i.id in alone.assigned}
            by_half[half] = cluster_scores(truth, alone.assigned, labelled=labelled)
        result["stories_by_half"] = by_half
    return result, outcomes, grouping


def replay_stories(
    items: Sequence[Labelled], verdicts: Mapping[str, Verdict], window: timedelta
) -> Grouping:
    """Replay the matched items through the story grouping, as the daemon would see them:
    dated items in order of publication, then undated ones (fetched later, as a backfill)."""
    matched = [i for i in items if verdicts[i.id].relevant]
    dated = sorted((i for i in matched if i.published), key=lambda i: (i.published, i.id))
    undated = [i for i in matched if not i.published]
    last = max(
        (i.published for i in dated if i.published), default=datetime(2000, 1, 1, tzinfo=UTC)
    )
    fetched = last + timedelta(days=1)
    grouping = Grouping(window=window)
    for item in (*dated, *undated):
        verdict = verdicts[item.id]
        at = item.published or fetched
        facts = Facts(
            item_key=item.id,
            source_id=item.source or "",
            title=item.title,
            at=at,
            dated=item.published is not None,
            events=frozenset(verdict.events),
            severity=verdict.severity or "low",
            rules=verdict.rules,
            people=verdict.extracted.people,
            people_approximate=verdict.extracted.people_approximate,
            places=verdict.extracted.places,
            lang=item.lang,
            names=names_in(item.title, item.text),
            stated=() if item.published else stated_days(item.title, item.text),
        )
        grouping.add(facts, at)
    return grouping
