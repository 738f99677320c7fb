"""`watcher match`, `watcher replay`, `watcher eval`: rules on text, history, labelled items."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import click

from watcher.cli.base import (
    Context,
    cli,
    config_exists,
    fail,
    fail_config,
    one_line_text,
    pass_ctx,
    progress,
)
from watcher.errors import ConfigError, EvalInputError


def _source_tags(config: Any) -> dict[str, tuple[str, ...]]:
    """Tags by source id and by the host of its URL (inputs may name an outlet's domain)."""
    from urllib.parse import urlsplit

    out: dict[str, tuple[str, ...]] = {}
    for source in config.sources:
        out[source.id] = source.tags
        host = (urlsplit(source.url).hostname or "").removeprefix("www.")
        out.setdefault(host, source.tags)
    return out


def _verdict_json(item_id: Any, verdict: Any) -> dict[str, Any]:
    return {
        "id": item_id,
        "relevant": verdict.relevant,
        "events": list(verdict.events),
        "rules": list(verdict.rules),
        "severity": verdict.severity,
        "extracted": verdict.extracted.as_dict(),
    }


@cli.command()
@click.argument("file", default="-", type=click.File("r", encoding="utf-8", errors="replace"))
@click.option(
    "--explain",
    is_flag=True,
    help="Add an `explain` list: per rule that fired, the terms found and their positions.",
)
@pass_ctx
def match(ctx: Context, file: Any, explain: bool) -> None:
    """Match articles against the rules, storing nothing: FILE (or - for stdin) holds JSON
    Lines, one article per line:

    \b
      {"id": 1, "title": "...", "text": "...", "lang": "ko", "url": "...", "source": "..."}

    One JSON line is written per input line, in the same order (blank lines are skipped):
    {"id", "relevant", "events", "rules", "severity", "extracted": {"people",
    "people_approximate", "places", "dates"}}; a line that cannot be read gives {"id",
    "error"} in its place. `lang`, `url`, `source` and `published_at` are optional; `source`
    may be a configured source id or an outlet's domain (its tags then apply to tag-filtered
    rules); `published_at` (or `published`, as `watcher eval` names it) dates the article, so
    that relative dates ("on Tuesday", 지난 3일, 上周) are resolved.

    With --explain each line also has "explain" (per rule that fired: the terms found and
    their positions in the normalised text) and "why" (rule id → the one line alerts show,
    with an English gloss for Korean, Chinese and Japanese terms).
    """
    import json

    from watcher.evaluate import article_text, json_object, published
    from watcher.items import parse_date

    loaded = ctx.config()
    matcher = ctx.matcher()
    tags = _source_tags(loaded.config)
    out = sys.stdout
    for number, line in enumerate(file, start=1):
        if not line.strip():
            continue
        item_id: Any = None
        try:
            data = json_object(line, f"line {number}")
            item_id = data.get("id")
            title, text = article_text(data, f"line {number}")
            lang = data.get("lang")
            source = data.get("source")
            dated = published(data, f"line {number}")
            when = parse_date(dated[1], "UTC") if dated else None
            verdict = matcher.match(
                title,
                text,
                lang=lang or None,
                tags=tags.get(str(source).removeprefix("www."), ()) if source else (),
                published=when,
            )
            row = _verdict_json(item_id, verdict)
            if explain:
                row["explain"] = matcher.explain(title, text, lang=lang or None)
                row["why"] = matcher.why(title, text, lang=lang or None)
        except EvalInputError as exc:
            row = {"id": item_id, "error": str(exc)}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()


@cli.command()
@click.option(
    "--since",
    metavar="DATE",
    help="Only items fetched at or after DATE (2026-11-01 or an ISO time).",
)
@click.option(
    "--rules",
    "rules_path",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Rules (concepts and rules) to try instead of those in the configuration.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="A line per item to read, or a JSON object per item: `match`'s fields, plus change, "
    "source, title, url and published_at.",
)
@pass_ctx
def replay(ctx: Context, since: str | None, rules_path: str | None, fmt: str) -> None:
    """Re-run the rules over stored items and show what would match, without storing or
    alerting anything: the way to judge a rule change on history.

    Each matching item is shown with its events, severity and what was extracted; items
    whose events differ from what is stored are marked + (newly matching), - (no longer
    matching) or ~ (other events). A summary goes to stderr.
    """
    import json

    from watcher.config import load_rules
    from watcher.items import parse_date

    since_at = None
    if since:
        since_at = parse_date(since, "UTC")
        if since_at is None:
            fail(f"--since: expected a date like 2026-11-01, got {since!r}", code=2)
    if rules_path:
        try:
            rules_loaded = load_rules(rules_path)
        except ConfigError as exc:
            fail_config(exc)
        matcher = ctx.matcher(rules_loaded)
    else:
        matcher = ctx.matcher()
    tags = _source_tags(ctx.config().config) if config_exists(ctx) else {}
    counts: Counter[str] = Counter()
    marks: Counter[str] = Counter()
    out = sys.stdout
    with ctx.open_store(existing=True, need_config=config_exists(ctx)) as store:
        stored = store.matched_events()
        with progress(store.iter_items(since=since_at), "replaying items") as every:
            for item in every:
                counts["items"] += 1
                when = item.published_at or item.fetched_at  # shown; undated: when found
                verdict = matcher.match(
                    item.title,
                    item.text,
                    lang=item.lang,
                    tags=tags.get(item.source_id, ()),
                    published=item.published_at,  # as the daemon matched it
                )
                before = stored.get(item.key, frozenset())
                after = frozenset(verdict.events)
                mark = " " if before == after else "+" if not before else "-" if not after else "~"
                if mark != " ":
                    marks[mark] += 1
                if not verdict.relevant and mark == " ":
                    continue
                counts["matched"] += bool(verdict.relevant)
                for event in verdict.events:
                    counts[event] += 1
                if fmt == "jsonl":
                    row = _verdict_json(item.key, verdict) | {
                        "change": mark.strip() or None,
                        "source": item.source_id,
                        "title": item.title,
                        "url": item.url,
                        "published_at": when.isoformat(),
                    }
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                else:
                    facts = verdict.extracted
                    extra = ", ".join(
                        [f"{'~' * facts.people_approximate}{facts.people} people"]
                        * (facts.people is not None)
                        + list(facts.places)
                    )
                    out.write(
                        f"{mark} {ctx.when(when)}  {item.source_id:<16} "
                        f"{verdict.severity or '-':<8} {','.join(verdict.events) or '(none)'}"
                        f"{f'  [{extra}]' if extra else ''}  {one_line_text(item.title)}\n"
                    )
    events = ", ".join(
        f"{k} {n}" for k, n in sorted(counts.items()) if k not in ("items", "matched")
    )
    click.echo(
        f"{counts['items']} items, {counts['matched']} match"
        f"{f' ({events})' if events else ''}; changed against stored matches: "
        f"+{marks['+']} -{marks['-']} ~{marks['~']}",
        err=True,
    )


@cli.command("eval")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--stories", is_flag=True, help="Also replay the matched items into stories.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Scores to read, or one JSON document (its shape: docs/rules.md).",
)
@click.option(
    "--misses",
    is_flag=True,
    help="List every wrong verdict and why (text only); with --stories, also each split or"
    " mixed story and the reports that kept it apart or joined it.",
)
@pass_ctx
def eval_command(ctx: Context, file: Any, stories: bool, fmt: str, misses: bool) -> None:
    """Score the rules on labelled articles: precision, recall and F1 for relevance and for
    each event type, per language and per half (odd and even ids). FILE holds JSON Lines:

    \b
      {"id": "a-1", "title": "...", "text": "...", "lang": "ko", "source": "yna.co.kr",
       "published": "2023-10-12", "labels": ["forced_repatriation"], "relevant": true,
       "story": "oct2023-wave"}

    `labels` is required ([] or ["not_relevant"] when the item is not relevant; `events` is
    read the same way) and names events the rules report or the shipped event types: another
    name is refused as a typo. `published_at` is read as `published`; blank lines are
    skipped.

    --stories replays the matched items through the story grouping the daemon uses, in order
    of publication, and scores it against the `story` clusters (pairwise F1 and adjusted Rand
    index). Nothing is stored and nothing is fetched.

    A score with nothing to measure (no item labelled or predicted, a half without items,
    story scores without `story` labels) is "-" (null in JSON), not 1.00.
    """
    import json

    from watcher.config import EVENT_TYPES
    from watcher.config.loading import Names
    from watcher.evaluate import (
        best_link,
        cluster_errors,
        evaluate,
        format_text,
        link_text,
        read_labelled,
    )
    from watcher.stories import JOIN_SCORE

    loaded = ctx.config()
    matcher = ctx.matcher()
    name = getattr(file, "name", "-")
    names = Names.of(loaded.config)
    # the events a label may name: those the rules report, and the shipped vocabulary
    known = tuple(sorted({*EVENT_TYPES, *names.rule_events}))

    def event_problem(event: str) -> str | None:
        return None if event in known else names.problem("event", event, known)

    try:
        items = read_labelled(file, name, event_problem=event_problem)
    except EvalInputError as exc:
        fail(str(exc), code=2)
    if not items:
        fail(f"{name}: no labelled items", code=2)
    click.echo(f"scoring {len(items)} items…", err=True)
    labelled_stories = any(i.story for i in items)
    if stories and not labelled_stories:
        click.echo(f"warning: no story labels in {name}: story scores need them", err=True)
    result, outcomes, grouping = evaluate(
        items,
        matcher,
        known,
        tags=_source_tags(loaded.config),
        stories=stories,
        window=loaded.config.settings.story_window,
    )
    out = sys.stdout
    if fmt == "json":
        out.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
        return
    out.write(format_text(result) + "\n")
    if misses:
        out.write("\nmisses (- missed event, + wrong event):\n")
        for o in outcomes:
            if not (o.missed or o.extra):
                continue
            marks = " ".join(
                [f"-{e}" for e in sorted(o.missed)] + [f"+{e}" for e in sorted(o.extra)]
            )
            # the labelled file's id, language and title are a source's: shown, never obeyed
            said = f"{one_line_text(o.item.id, None)} [{one_line_text(o.item.lang, None)}]"
            out.write(f"{said} {marks}  {one_line_text(o.item.title, 90)}\n")
            lines = matcher.explain(
                o.item.title,
                o.item.text,
                lang=o.item.lang,
                near_misses=True,
                events=o.missed | o.extra,
            )
            for line in lines:
                out.write(f"    {one_line_text(line, None)}\n")
    if grouping is not None and misses and labelled_stories:
        truth = {i.id: i.story for i in items if i.id in grouping.assigned}
        split, mixed = cluster_errors(truth, grouping.assigned)
        titles = {i.id: i.title for i in items}
        out.write(
            "\nclusters split over several stories (their nearest reports; a report joins the"
            f" story that fits it best, from {JOIN_SCORE:g}):\n"
        )
        for slug, groups in split.items():
            shown = f"{slug}: {' | '.join(', '.join(g) for g in groups)}"
            out.write(f"  {one_line_text(shown, None)}\n")
            for later in groups[1:]:
                link = link_text(best_link(grouping, groups[0], later))
                out.write(f"      {one_line_text(link, None)}\n")
        out.write("\nstories that mix clusters (what joined them):\n")
        for story_id, parts in mixed.items():
            desc = "; ".join(f"{slug}: {', '.join(ids)}" for slug, ids in parts.items())
            out.write(f"  story {story_id}: {one_line_text(desc, None)}\n")
            for ids in parts.values():
                for i in ids:
                    out.write(f"      {one_line_text(i, None)} {one_line_text(titles[i], 80)}\n")
            named = list(parts.items())
            for n, (slug, ids) in enumerate(named):
                others = [i for _, rest in named[n + 1 :] for i in rest]
                if others:
                    link = link_text(best_link(grouping, ids, others))
                    name = "(no story)" if slug == "-" else slug
                    out.write(f"      {one_line_text(f'{name} joined by {link}', None)}\n")
                elif slug == "-" and len(ids) > 1:  # unrelated items in one story
                    link = link_text(best_link(grouping, ids[:1], ids[1:]))
                    out.write(f"      {one_line_text(link, None)}\n")
