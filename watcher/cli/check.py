"""`watcher check`: validate sources.yaml, rules, templates, and say what will run."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import click

from watcher.cli.base import Context, cli, pass_ctx, plural

if TYPE_CHECKING:
    from watcher.config import Config
    from watcher.types import AlertView


@cli.command()
@pass_ctx
def check(ctx: Context) -> None:
    """Validate sources.yaml and print a one-screen summary.

    Every problem is printed as FILE:LINE: PATH: what is wrong; the exit code is 2 when
    there are problems, 0 otherwise. Beyond the file's own rules it checks that each html
    source's selectors are CSS and that apprise can read each enabled channel's URL (nothing
    is fetched or sent). Routes are checked against what exists: an event no
    rule reports, a tag no source carries or an unknown language is a problem (with a
    did-you-mean), as is a route that can never fire. Warnings (no rules, no channels or
    routes: no alert will be sent; an overridden alert template whose updates do not say
    what changed) are printed and do not change the exit code.
    """
    loaded = ctx.config(checks=_deeper_problems)
    config = loaded.config
    matcher = ctx.matcher()
    template_warnings = (
        _templates_without_changes(config.settings.templates_dir)
        if config.settings.templates_dir
        else []
    )
    from watcher.routing import nobody_hears

    no_rules = (
        []
        if any(r.enabled for r in config.rules)
        else ["no enabled rule: no story is made, so no alert will be sent (see docs/rules.md)"]
    )
    no_sources = (
        []
        if any(s.enabled for s in config.sources)
        else ["no enabled source: nothing will be polled (see docs/sources.md)"]
    )
    warnings = [*loaded.warnings, *no_sources, *no_rules, *nobody_hears(config)]
    for warning in [*warnings, *template_warnings]:
        click.echo(f"warning: {warning}", err=True)
    kinds = Counter(s.kind for s in config.sources)
    disabled = sum(1 for s in config.sources if not s.enabled)
    kinds_text = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    click.echo(f"{loaded.path}: OK")
    details = "; ".join(x for x in (kinds_text, f"{disabled} disabled" if disabled else "") if x)
    click.echo(f"  {plural(len(config.sources), 'source')}" + (f" ({details})" if details else ""))
    langs = Counter(s.lang or "auto" for s in config.sources if s.enabled)  # as run says
    click.echo("  languages: " + (", ".join(f"{k} {n}" for k, n in langs.most_common()) or "-"))
    examples = sum(len(r.examples.match) + len(r.examples.no_match) for r in config.rules)
    events = Counter(r.event for r in config.rules if r.enabled)
    click.echo(
        f"  {plural(len(config.rules), 'rule')} ({matcher.rule_count} enabled, "
        f"{plural(len(config.concepts), 'concept')}; {plural(examples, 'example')} pass)"
    )
    if events:
        click.echo("  events: " + ", ".join(f"{k} {n}" for k, n in sorted(events.items())))
    click.echo(
        f"  {plural(len(config.channels), 'channel')}, {plural(len(config.routes), 'route')}"
    )


def _deeper_problems(config: Config) -> list[tuple[tuple[str | int, ...], str]]:
    """What only `check` looks at (it costs imports a run does not need): each html source's
    selectors are CSS, apprise can read each enabled channel's URL, the operator's templates
    render. Listed with the file's other problems, in one run."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    html = [(i, s) for i, s in enumerate(config.sources) if s.kind == "html"]
    if html:
        from watcher.parsers import selector_problems

        out += [
            (("sources", i, "selectors", key), what)
            for i, source in html
            for key, what in selector_problems(source.selectors)
        ]
    if config.channels:
        from watcher.outbox import unreadable_channels

        out += [(("channels", i, "url"), what) for i, what in unreadable_channels(config)]
    if config.settings.templates_dir:
        problem = _check_templates(config.settings.templates_dir)
        if problem:
            out.append((("settings", "templates_dir"), problem))
    return out


def _sample_alert() -> AlertView:
    """A story's first alert, to render the operator's templates with."""
    from datetime import UTC, datetime

    from watcher.types import AlertView, Report

    report = Report(
        source_id="s",
        source_name="Outlet",
        title="Sample",
        url="https://e.org/",
        published_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return AlertView(
        kind="alert",
        story_id=1,
        revision=1,
        events=("detention",),
        severity="high",
        rules=("r",),
        first=report,
        story_url="https://e.org/stories/1",
    )


def _check_templates(folder: str) -> str | None:
    """Render a sample of every message with the operator's templates: a broken override is
    found now, not when an alert is due."""
    import os
    from dataclasses import replace

    from watcher import render

    if not os.path.isdir(folder):
        return f"no such folder {folder!r}"
    view = _sample_alert()
    for channel in render.CHANNELS:  # every format, so an override breaks none of them
        for locale in render.WORDS:  # and every language a route may ask for
            try:
                render.render_alert(view, channel, "UTC", templates_dir=folder, locale=locale)
                render.render_alert(
                    replace(view, kind="removed", removed=("Outlet: Sample",)),
                    channel,
                    "UTC",
                    templates_dir=folder,
                    locale=locale,
                )
                for notice in ("retraction", "reinstated"):
                    render.render_alert(
                        replace(view, kind=notice, corrected_by="ana", correction_reason="r"),
                        channel,
                        "UTC",
                        templates_dir=folder,
                        locale=locale,
                    )
                render.render_digest(
                    [view], "daily", channel, "UTC", templates_dir=folder, locale=locale
                )
                render.render_ops("s", ["l"], channel, templates_dir=folder)
            except Exception as exc:
                return f"a template in {folder} does not render for {channel} ({locale}): {exc}"
    return None


def _templates_without_changes(folder: str) -> list[str]:
    """A warning for each alert template overridden in `folder` whose update does not say what
    changed ("60 → 600 people"): written before updates said so, it names only new outlets."""
    import os
    from dataclasses import replace

    from watcher import render
    from watcher.types import Told

    update = replace(
        _sample_alert(),
        kind="update",
        revision=2,
        people=600,
        before=Told(severity="high", events=("detention",), people=60),
    )
    out: dict[str, str] = {}  # by file: formats may share one (discord and mattermost: md)
    for channel, spec in render.CHANNELS.items():
        for locale, words in render.WORDS.items():
            name = f"{words.folder}alert.{spec.suffix}.j2"
            if name in out or not os.path.isfile(os.path.join(folder, name)):
                continue  # the shipped template, which says it; or one already told
            body = render.render_alert(update, channel, "UTC", templates_dir=folder, locale=locale)
            if words.count_changed(60, False, 600, False) not in f"{body.title}\n{body.body}":
                out[name] = (
                    f"{os.path.join(folder, name)} does not show `changes`: an update sent with "
                    f'it names only new outlets, not what changed ("60 → 600 people"); copy '
                    f"the update line of the shipped watcher/templates/{name} (docs/alerts.md)"
                )
    return list(out.values())
