"""The `watcher` command line: parses options, composes the stages, turns errors into one line.

Global options come before the command: ``watcher --config F --db URL run --once``.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click

from watcher import __version__
from watcher import log as logsetup
from watcher.config import LoadedConfig, load_config
from watcher.errors import AlreadyRunning, ConfigError, EvalInputError, RuleError, StoreError
from watcher.store import DEFAULT_DATABASE_URL, Store

log = logging.getLogger("watcher")


@dataclass
class Context:
    config_path: str
    db_url: str | None
    log_level: str
    log_format: str
    _loaded: LoadedConfig | None = field(default=None, repr=False)
    _matcher: Any = field(default=None, repr=False)

    def config(self) -> LoadedConfig:
        """The validated config; exits with every problem listed when it is invalid."""
        if self._loaded is None:
            try:
                self._loaded = load_config(self.config_path)
            except ConfigError as exc:
                fail_config(exc)
            logsetup.add_secrets(self._loaded.secrets)
        return self._loaded

    def matcher(self, loaded: LoadedConfig | None = None) -> Any:
        """The compiled rules; exits listing every rule whose examples fail."""
        from watcher.rules import compile_rules

        if loaded is None and self._matcher is not None:
            return self._matcher
        loaded = loaded or self.config()
        try:
            matcher = compile_rules(loaded.config)
        except RuleError as exc:
            fail_config(ConfigError([loaded.problem(path, msg) for path, msg in exc.problems]))
        if loaded is self._loaded:
            self._matcher = matcher
        return matcher

    def database_url(self, *, need_config: bool = True) -> str:
        if self.db_url:
            return self.db_url
        if need_config:
            return self.config().config.settings.database_url or DEFAULT_DATABASE_URL
        return DEFAULT_DATABASE_URL

    def store(self, *, migrate: bool = True, need_config: bool = True) -> Store:
        """Open the database, applying pending migrations (the daemon and most commands)."""
        url = self.database_url(need_config=need_config)
        try:
            store = Store.open(url)
            if migrate:
                store.ensure_schema()
        except StoreError as exc:
            fail(str(exc))
        except Exception as exc:  # driver errors: unreachable server, bad credentials
            fail(f"database {logsetup.redact(url)}: {logsetup.one_line(exc)}")
        return store

    @contextmanager
    def open_store(self, *, migrate: bool = True, need_config: bool = True) -> Iterator[Store]:
        """`store()` for the length of a block, closed however the block ends."""
        store = self.store(migrate=migrate, need_config=need_config)
        try:
            yield store
        finally:
            store.close()


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {logsetup.redact(message)}", err=True)
    sys.exit(code)


def fail_config(exc: ConfigError) -> NoReturn:
    for problem in exc.problems:
        click.echo(logsetup.redact(problem), err=True)
    count = len(exc.problems)
    click.echo(f"{count} problem{'s' if count != 1 else ''} found; nothing was changed.", err=True)
    sys.exit(2)


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="watcher")
@click.option(
    "--config",
    "config_path",
    default="sources.yaml",
    show_default=True,
    envvar="WATCHER_CONFIG",
    metavar="PATH",
    help="The sources.yaml to use (env WATCHER_CONFIG).",
)
@click.option(
    "--db",
    "db_url",
    envvar="WATCHER_DATABASE_URL",
    metavar="URL",
    help="Database URL, e.g. sqlite:///watcher.db or postgresql+psycopg://user@host/db "
    "(env WATCHER_DATABASE_URL; default: settings.database_url, else "
    f"{DEFAULT_DATABASE_URL}).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="One line per event, as text or JSON.",
)
@click.pass_context
def cli(
    ctx: click.Context, config_path: str, db_url: str | None, log_level: str, log_format: str
) -> None:
    """Watch UN and news sources for forced repatriations of North Korean escapees,
    and alert advocates.

    Configuration lives in sources.yaml; see `watcher check` and docs/configuration.md.
    """
    logsetup.setup(log_level, log_format)
    ctx.obj = Context(
        config_path=config_path, db_url=db_url, log_level=log_level, log_format=log_format
    )


@cli.command()
@pass_ctx
def check(ctx: Context) -> None:
    """Validate sources.yaml and print a one-screen summary.

    Every problem is printed as FILE:LINE: PATH: what is wrong; the exit code is 2 when
    there are problems, 0 otherwise.
    """
    loaded = ctx.config()
    config = loaded.config
    matcher = ctx.matcher()
    if config.settings.templates_dir:
        problem = _check_templates(config.settings.templates_dir)
        if problem:
            fail_config(ConfigError([loaded.problem(("settings", "templates_dir"), problem)]))
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    kinds = Counter(s.kind for s in config.sources)
    disabled = sum(1 for s in config.sources if not s.enabled)
    kinds_text = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    click.echo(f"{loaded.path}: OK")
    click.echo(
        f"  {_plural(len(config.sources), 'source')} ({kinds_text}"
        f"{f'; {disabled} disabled' if disabled else ''})"
    )
    langs = Counter(s.lang or "?" for s in config.sources if s.enabled)
    click.echo("  languages: " + ", ".join(f"{k} {n}" for k, n in langs.most_common()))
    examples = sum(len(r.examples.match) + len(r.examples.no_match) for r in config.rules)
    events = Counter(r.event for r in config.rules if r.enabled)
    click.echo(
        f"  {_plural(len(config.rules), 'rule')} ({matcher.rule_count} enabled, "
        f"{_plural(len(config.concepts), 'concept')}; {_plural(examples, 'example')} pass)"
    )
    if events:
        click.echo("  events: " + ", ".join(f"{k} {n}" for k, n in sorted(events.items())))
    click.echo(
        f"  {_plural(len(config.channels), 'channel')}, {_plural(len(config.routes), 'route')}"
    )


def _check_templates(folder: str) -> str | None:
    """Render a sample of every message with the operator's templates: a broken override is
    found now, not when an alert is due."""
    import os
    from datetime import UTC, datetime

    from watcher import render
    from watcher.types import AlertView, Report

    if not os.path.isdir(folder):
        return f"no such folder {folder!r}"
    report = Report(
        source_id="s",
        source_name="Outlet",
        title="Sample",
        url="https://e.org/",
        published_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    view = AlertView(
        kind="alert",
        story_id=1,
        revision=1,
        events=("detention",),
        severity="high",
        rules=("r",),
        first=report,
    )
    for channel in ("email", "slack", "telegram", "text"):
        try:
            render.render_alert(view, channel, "UTC", templates_dir=folder)
            render.render_digest([view], "daily", channel, "UTC", templates_dir=folder)
            render.render_ops("s", ["l"], channel, templates_dir=folder)
        except Exception as exc:
            return f"a template in {folder} does not render for {channel}: {exc}"
    return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@cli.group()
def db() -> None:
    """Database schema: migrations (applied automatically by `watcher run`)."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply pending migrations to the database (a no-op when it is current)."""
    with ctx.open_store(migrate=False, need_config=_config_exists(ctx)) as store:
        try:
            before, after = store.upgrade()
        except StoreError as exc:
            fail(str(exc))
        except Exception as exc:
            fail(f"migration failed: {logsetup.one_line(exc)}")
    if before == after:
        click.echo(f"database is current (revision {after})")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


@db.command("current")
@pass_ctx
def db_current(ctx: Context) -> None:
    """Print the applied migration revision and whether it is the newest."""
    from watcher.store import SCHEMA_HEAD

    with ctx.open_store(migrate=False, need_config=_config_exists(ctx)) as store:
        try:
            revision = store.current_revision()
        except StoreError as exc:
            fail(str(exc))
    state = "current" if revision == SCHEMA_HEAD else f"behind (newest is {SCHEMA_HEAD})"
    click.echo(f"{revision or 'empty'}: {state}")


# --------------------------------------------------------------------------- run


@cli.command()
@click.option(
    "--once", is_flag=True, help="Run one poll cycle of the sources that are due, then exit."
)
@click.option(
    "--all", "all_sources", is_flag=True, help="With --once: poll every enabled source, due or not."
)
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    help="Serve /healthz and /metrics here (default: settings.metrics_address, "
    "127.0.0.1:9464; 'off' to disable). Containers use 0.0.0.0:9464.",
)
@pass_ctx
def run(ctx: Context, once: bool, all_sources: bool, metrics_address: str | None) -> None:
    """Poll the sources on their intervals and store what they carry.

    Applies pending migrations first. Exit code 0 when the cycle ran, even if some sources
    failed (see `watcher sources list`); non-zero only when watcher itself could not run.
    Stop the daemon with Ctrl-C or SIGTERM.
    """
    import asyncio

    from watcher.daemon import InstanceLock
    from watcher.pipeline import Parsing
    from watcher.store.outbox import Outbox

    loaded = ctx.config()
    matcher = ctx.matcher()
    lock = InstanceLock(ctx.database_url())
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        fail(str(exc))
    store = ctx.store()
    if lock.path is not None:  # single instance: claims left by a crash are stale
        Outbox(store).release_claims()
    parsing = Parsing.from_settings(loaded.config.settings, matcher)
    try:
        if once:
            asyncio.run(
                _once(loaded, store, all_sources=all_sources, parsing=parsing, matcher=matcher)
            )
        else:
            from watcher.daemon import run_daemon

            parsing.close()  # the daemon has its own
            address = metrics_address or loaded.config.settings.metrics_address
            try:
                run_daemon(
                    ctx.config_path,
                    loaded,
                    store,
                    matcher,
                    metrics_address=None if address == "off" else address,
                )
            except OSError as exc:
                fail(f"cannot serve metrics on {address}: {exc.strerror or exc}")
    finally:
        parsing.close()
        store.close()
        lock.release()


async def _once(
    loaded: LoadedConfig, store: Store, *, all_sources: bool, parsing: Any, matcher: Any
) -> None:
    """One cycle, then send what is due (for cron)."""
    from watcher.outbox import Deliverer

    await _cycle(loaded, store, only_due=not all_sources, parsing=parsing, matcher=matcher)
    sent = await Deliverer(store, loaded.config).run_due()
    if sent:
        log.info("delivered %d due messages", sent, extra={"action": "deliver"})


async def _cycle(
    loaded: LoadedConfig,
    store: Store,
    *,
    only_due: bool,
    parsing: Any = None,
    matcher: Any = None,
) -> list[Any]:
    import time

    from watcher.clock import utcnow
    from watcher.fetch import Fetcher, FetchLimits
    from watcher.pipeline import run_cycle
    from watcher.routing import Alerting

    config = loaded.config
    sources = [s for s in config.sources if s.enabled]
    store.sync_sources(sources, utcnow())
    started = time.monotonic()
    async with Fetcher(FetchLimits.from_settings(config.settings)) as fetcher:
        reports = await run_cycle(
            sources,
            store=store,
            fetcher=fetcher,
            settings=config.settings,
            only_due=only_due,
            parsing=parsing,
            matcher=matcher,
            alerting=Alerting.from_config(config),
        )
    outcomes = Counter(r.outcome for r in reports)
    log.info(
        "cycle: %d polled (%s), %d new items, %d matched, in %.1fs",
        len(reports),
        ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) or "none due",
        sum(r.new for r in reports),
        sum(r.matched for r in reports),
        time.monotonic() - started,
        extra={"action": "cycle"},
    )
    return reports


@cli.command()
@pass_ctx
def reload(ctx: Context) -> None:
    """Tell the running daemon to re-read sources.yaml (SIGHUP to the PID in the state
    directory). An invalid file is refused by the daemon, which keeps its configuration:
    run `watcher check` first. With replicas, send SIGHUP to each."""
    import os
    import signal

    from watcher.daemon import pid_file

    config = ctx.config().config
    path = pid_file(config.settings.state_dir)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        fail(f"no running daemon found ({path} is missing or stale)")
    click.echo(f"sent SIGHUP to watcher (pid {pid})")


# --------------------------------------------------------------------------- sources


@cli.group()
def sources() -> None:
    """Inspect sources: their state, or what one yields right now."""


@sources.command("list")
@pass_ctx
def sources_list(ctx: Context) -> None:
    """Show every source: kind, interval, health, last success, last error, items stored."""
    from watcher.clock import utcnow
    from watcher.config import format_duration

    config = ctx.config().config
    with ctx.open_store() as store:
        states = store.source_states()
    now = utcnow()
    rows = [("ID", "KIND", "EVERY", "HEALTH", "LAST SUCCESS", "ITEMS", "LAST ERROR")]
    for source in config.sources:
        st = states.get(source.id)
        rows.append(
            (
                source.id,
                source.kind,
                format_duration(source.interval),
                _health(source, st, config.settings.failure_threshold),
                _ago(st.last_success_at if st else None, now),
                str(st.items_stored if st else 0),
                (st.last_error or "") if st and st.consecutive_failures else "",
            )
        )
    configured = {s.id for s in config.sources}
    for sid, st in states.items():
        if sid not in configured:
            rows.append(
                (
                    sid,
                    st.kind,
                    "-",
                    "removed",
                    _ago(st.last_success_at, now),
                    str(st.items_stored),
                    "",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[6])


def _health(source: Any, state: Any, threshold: int) -> str:
    from watcher.types import source_health

    health = source_health(source.enabled, state, threshold)
    failures = state.consecutive_failures if state else 0
    if health == "unhealthy":
        return f"unhealthy ({failures} failures)"
    return f"failing ({failures})" if health == "failing" else health


def _ago(when: Any, now: Any) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


@sources.command("test")
@click.argument("source_id")
@pass_ctx
def sources_test(ctx: Context, source_id: str) -> None:
    """Fetch one source now and print what it parsed, without storing anything.

    The tool for writing selectors: each item's date (in the source's time zone), language,
    title and URL. Exit code 1 when the fetch or the parse failed.
    """
    import asyncio
    from zoneinfo import ZoneInfo

    from watcher.clock import utcnow
    from watcher.fetch import Fetcher, FetchLimits
    from watcher.parsers import parse
    from watcher.pipeline import request_for

    config = ctx.config().config
    try:
        source = config.source(source_id)
    except KeyError:
        known = ", ".join(s.id for s in config.sources)
        fail(f"no source {source_id!r} in {ctx.config_path} (sources: {known})")

    async def go() -> Any:
        async with Fetcher(FetchLimits.from_settings(config.settings)) as fetcher:
            return await fetcher.fetch(request_for(source, None, conditional=False))

    result = asyncio.run(go())
    click.echo(
        f"{source.id}: {result.final_url} -> HTTP {result.status or '-'}, "
        f"{len(result.body or b'')} bytes in {result.elapsed:.2f}s"
    )
    if not result.ok:
        fail(f"{source.id}: {result.error}")
    parsed = parse(source, result, utcnow())
    if parsed.error:
        fail(f"{source.id}: {parsed.error}")
    zone = ZoneInfo(source.zone)
    for item in parsed.items:
        when = (
            item.published_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            if item.published_at
            else "(no date)       "
        )
        click.echo(f"{when}  {item.lang or '??':<3} {item.title[:100]}")
        click.echo(f"{'':21}{item.url or '(no link)'}")
    click.echo(f"{len(parsed.items)} items (dates in {source.zone})")


# --------------------------------------------------------------------------- export


@cli.group()
def export() -> None:
    """Write stored data to stdout."""


@export.command("items")
@click.option(
    "--since",
    metavar="DATE",
    help="Only items fetched at or after DATE "
    "(2026-11-01 or an ISO time; UTC unless it has an offset).",
)
@click.option(
    "--source", "source_id", metavar="ID", help="Only items first carried by this source."
)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@pass_ctx
def export_items(ctx: Context, since: str | None, source_id: str | None, fmt: str) -> None:
    """Every stored item (baseline included) as UTF-8 JSON Lines or CSV."""
    import csv
    import json

    from watcher.items import parse_date

    since_at = None
    if since:
        since_at = parse_date(since, "UTC")
        if since_at is None:
            fail(f"--since: expected a date like 2026-11-01, got {since!r}")
    fields = [
        "source",
        "key",
        "url",
        "title",
        "text",
        "lang",
        "published_at",
        "published_raw",
        "fetched_at",
        "baseline",
    ]
    out = sys.stdout
    writer = csv.DictWriter(out, fieldnames=fields) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    with ctx.open_store(need_config=_config_exists(ctx)) as store:
        for item in store.iter_items(since=since_at, source_id=source_id):
            row = {
                "source": item.source_id,
                "key": item.key,
                "url": item.url,
                "title": item.title,
                "text": item.text,
                "lang": item.lang,
                "published_at": item.published_at.isoformat() if item.published_at else None,
                "published_raw": item.published_raw,
                "fetched_at": item.fetched_at.isoformat(),
                "baseline": item.baseline,
            }
            if writer:
                writer.writerow(row)
            else:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- rules


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

    One JSON line is written per input line, in the same order:
    {"id", "relevant", "events", "rules", "severity", "extracted": {"people", "places",
    "dates"}}; a line that cannot be read gives {"id", "error"} in its place. `lang`,
    `url`, `source` and `published_at` are optional; `source` may be a configured source id
    or an outlet's domain (its tags then apply to tag-filtered rules).

    With --explain each line also has "explain" (per rule that fired: the terms found and
    their positions in the normalised text) and "why" (rule id → the one line alerts show,
    with an English gloss for Korean, Chinese and Japanese terms).
    """
    import json

    from watcher.items import parse_date

    loaded = ctx.config()
    matcher = ctx.matcher()
    tags = _source_tags(loaded.config)
    out = sys.stdout
    for number, line in enumerate(file, start=1):
        item_id: Any = None
        try:
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise _BadInput(f"line {number}: not JSON ({exc})") from None
            if not isinstance(data, dict):
                raise _BadInput(f"line {number}: expected a JSON object")
            item_id = data.get("id")
            title, text = data.get("title", ""), data.get("text", "")
            lang = data.get("lang")
            if not isinstance(title, str) or not isinstance(text, str):
                raise _BadInput(f"line {number}: title and text must be strings")
            if not (title or text):
                raise _BadInput(f"line {number}: no title or text")
            if lang is not None and not isinstance(lang, str):
                raise _BadInput(f"line {number}: lang must be a string")
            source = data.get("source")
            published = data.get("published_at")
            when = parse_date(published, "UTC") if isinstance(published, str) else None
            verdict = matcher.match(
                title,
                text,
                lang=lang or None,
                tags=tags.get(str(source).removeprefix("www."), ()) if source else (),
                published_year=when.year if when else None,
            )
            row = _verdict_json(item_id, verdict)
            if explain:
                row["explain"] = matcher.explain(title, text, lang=lang or None)
                row["why"] = matcher.why(title, text, lang=lang or None)
        except _BadInput as exc:
            row = {"id": item_id, "error": str(exc)}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()


class _BadInput(Exception):
    pass


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
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True
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
            fail(f"--since: expected a date like 2026-11-01, got {since!r}")
    if rules_path:
        try:
            rules_loaded = load_rules(rules_path)
        except ConfigError as exc:
            fail_config(exc)
        matcher = ctx.matcher(rules_loaded)
    else:
        matcher = ctx.matcher()
    tags = _source_tags(ctx.config().config) if _config_exists(ctx) else {}
    counts: Counter[str] = Counter()
    marks: Counter[str] = Counter()
    out = sys.stdout
    with ctx.open_store(need_config=_config_exists(ctx)) as store:
        stored = store.matched_events()
        for item in store.iter_items(since=since_at):
            counts["items"] += 1
            when = item.published_at or item.fetched_at
            verdict = matcher.match(
                item.title,
                item.text,
                lang=item.lang,
                tags=tags.get(item.source_id, ()),
                published_year=when.year,
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
                    [f"{facts.people} people"] * (facts.people is not None) + list(facts.places)
                )
                out.write(
                    f"{mark} {when:%Y-%m-%d %H:%M}  {item.source_id:<16} "
                    f"{verdict.severity or '-':<8} {','.join(verdict.events) or '(none)'}"
                    f"{f'  [{extra}]' if extra else ''}  {_one_line_text(item.title)}\n"
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
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--misses", is_flag=True, help="List every wrong verdict and why (text only).")
@pass_ctx
def eval_command(ctx: Context, file: Any, stories: bool, fmt: str, misses: bool) -> None:
    """Score the rules on labelled articles: precision, recall and F1 for relevance and for
    each event type, per language and per half (odd and even ids). FILE holds JSON Lines:

    \b
      {"id": "a-1", "title": "...", "text": "...", "lang": "ko", "source": "yna.co.kr",
       "published": "2023-10-12", "labels": ["forced_repatriation"], "relevant": true,
       "story": "oct2023-wave"}

    --stories replays the matched items through the story grouping the daemon uses, in order
    of publication, and scores it against the `story` clusters (pairwise F1 and adjusted Rand
    index). Nothing is stored and nothing is fetched.
    """
    import json

    from watcher.config import EVENT_TYPES
    from watcher.evaluate import (
        cluster_errors,
        evaluate,
        format_text,
        read_labelled,
    )

    loaded = ctx.config()
    matcher = ctx.matcher()
    try:
        items = read_labelled(file, getattr(file, "name", "-"))
    except EvalInputError as exc:
        fail(str(exc), code=2)
    if not items:
        fail(f"{getattr(file, 'name', '-')}: no labelled items", code=2)
    click.echo(f"scoring {len(items)} items…", err=True)
    result, outcomes, grouping = evaluate(
        items,
        matcher,
        EVENT_TYPES,
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
            out.write(f"{o.item.id} [{o.item.lang}] {marks}  {_one_line_text(o.item.title, 90)}\n")
            lines = matcher.explain(
                o.item.title,
                o.item.text,
                lang=o.item.lang,
                near_misses=True,
                events=o.missed | o.extra,
            )
            for line in lines:
                out.write(f"    {line}\n")
    if grouping is not None and misses:
        truth = {i.id: i.story for i in items if i.id in grouping.assigned}
        split, mixed = cluster_errors(truth, grouping.assigned)
        titles = {i.id: i.title for i in items}
        out.write("\nclusters split over several stories:\n")
        for slug, groups in split.items():
            out.write(f"  {slug}: {' | '.join(', '.join(g) for g in groups)}\n")
        out.write("\nstories that mix clusters:\n")
        for story_id, parts in mixed.items():
            desc = "; ".join(f"{slug}: {', '.join(ids)}" for slug, ids in parts.items())
            out.write(f"  story {story_id}: {desc}\n")
            for ids in parts.values():
                for i in ids:
                    out.write(f"      {i} {_one_line_text(titles[i], 80)}\n")


def _one_line_text(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- alerts


@cli.group()
def alerts() -> None:
    """The outbox: what was sent, what waits, what failed."""


@alerts.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "sent", "failed", "uncertain", "silenced", "skipped"]),
    help="Only deliveries in this state.",
)
@click.option("--limit", type=int, default=50, show_default=True)
@pass_ctx
def alerts_list(ctx: Context, status: str | None, limit: int) -> None:
    """Deliveries, newest first: id, status, kind, story, route, channel, due or sent time,
    attempts and the last error."""
    from watcher.store.outbox import Outbox

    with ctx.open_store(need_config=_config_exists(ctx)) as store:
        rows = Outbox(store).listing(status, limit)
    table = [("ID", "STATUS", "KIND", "STORY", "ROUTE", "CHANNEL", "WHEN", "TRIES", "LAST ERROR")]
    for d in rows:
        when = d.sent_at or d.due_at
        table.append(
            (
                str(d.id),
                d.status,
                d.kind,
                str(d.story_id or "-"),
                d.route,
                d.channel,
                f"{when:%Y-%m-%d %H:%M}",
                str(d.attempts),
                _one_line_text(d.last_error or "", 80),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(8)]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[8])


@alerts.command("retry")
@click.argument("delivery_id", type=int)
@pass_ctx
def alerts_retry(ctx: Context, delivery_id: int) -> None:
    """Queue a failed (or any finished) delivery again; the running daemon sends it within
    a second, or the next `watcher run --once`."""
    from watcher.clock import utcnow
    from watcher.store.outbox import Outbox

    with ctx.open_store(need_config=_config_exists(ctx)) as store:
        outbox = Outbox(store)
        delivery = outbox.get(delivery_id)
        if delivery is None:
            fail(f"no delivery {delivery_id} (see `watcher alerts list`)")
        if not outbox.retry(delivery_id, utcnow()):
            fail(f"delivery {delivery_id} is already pending")
    click.echo(f"delivery {delivery_id} queued again (was {delivery.status})")


@cli.group()
def notify() -> None:
    """Channels: check that they reach people."""


@notify.command("test")
@click.argument("channel_ids", nargs=-1, metavar="[CHANNEL]...")
@pass_ctx
def notify_test(ctx: Context, channel_ids: tuple[str, ...]) -> None:
    """Send a test message to every channel (or those named) and report each result.
    Exit code 1 when any failed."""
    from watcher.outbox import send_test

    config = ctx.config().config
    known = {c.id for c in config.channels}
    unknown = [c for c in channel_ids if c not in known]
    if unknown:
        fail(f"unknown channel {unknown[0]!r} (channels: {', '.join(sorted(known)) or 'none'})")
    if not config.channels:
        fail("no channels configured (add some under `channels:` in sources.yaml)")
    failed = 0
    for channel_id, result in send_test(config, channel_ids):
        if result.outcome == "sent":
            click.echo(f"{channel_id}: sent ({result.elapsed:.1f}s)")
        else:
            failed += 1
            click.echo(f"{channel_id}: {result.outcome}: {logsetup.redact(result.error or '')}")
    if failed:
        sys.exit(1)


@export.command("alerts")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@pass_ctx
def export_alerts(ctx: Context, fmt: str) -> None:
    """Every story with its items, routes, deliveries and their attempts, as JSON Lines."""
    import json

    from watcher.store.outbox import Outbox

    out = sys.stdout
    with ctx.open_store(need_config=_config_exists(ctx)) as store:
        for row in Outbox(store).export():
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- silences


@cli.group()
def silence() -> None:
    """Mute stories for a while: they are recorded but not sent."""


@silence.command("add")
@click.option(
    "--match",
    "matchers",
    multiple=True,
    required=True,
    metavar="KEY=VALUE",
    help="source, event, severity, rule, tag, lang, route, channel or story; shell wildcards "
    "allowed (source=dailynk-*). Several --match must all hold.",
)
@click.option("--for", "duration", required=True, metavar="DURATION", help="e.g. 6h, 2d.")
@click.option("--reason", required=True, help="Why (shown in `silence list` and the log).")
@click.option("--by", "created_by", help="Who (default: $USER).")
@pass_ctx
def silence_add(
    ctx: Context, matchers: tuple[str, ...], duration: str, reason: str, created_by: str | None
) -> None:
    """Mute matching stories from now for DURATION."""
    import os

    from watcher.clock import utcnow
    from watcher.config import parse_duration
    from watcher.routing import parse_matchers
    from watcher.store.outbox import Outbox

    try:
        parsed = parse_matchers(matchers)
        length = parse_duration(duration)
    except ValueError as exc:
        fail(str(exc), code=2)
    now = utcnow()
    with ctx.open_store(need_config=_config_exists(ctx)) as store:
        sid = Outbox(store).add_silence(
            parsed,
            reason=reason,
            starts_at=now,
            ends_at=now + length,
            created_by=created_by or os.environ.get("USER"),
        )
    click.echo(f"silence {sid} active until {now + length:%Y-%m-%d %H:%M} UTC")


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@pass_ctx
def silence_list(ctx: Context, show_all: bool) -> None:
    """Active silences (all with --all): id, matchers, until, who, why."""
    from watcher.clock import utcnow
    from watcher.store.outbox import Outbox

    now = utcnow()
    with ctx.open_store(need_config=_config_exists(ctx)) as store:
        rows = Outbox(store).silences(None if show_all else now)
    for s in rows:
        state = "active" if s.starts_at <= now < s.ends_at else "expired"
        matchers = " ".join(f"{k}={v}" for k, v in s.matchers.items())
        click.echo(
            f"{s.id}  {state:<7}  until {s.ends_at:%Y-%m-%d %H:%M} UTC  {matchers}  "
            f"by {s.created_by or '-'}: {_one_line_text(s.reason, 80)}"
        )


@silence.command("expire")
@click.argument("silence_id", type=int)
@pass_ctx
def silence_expire(ctx: Context, silence_id: int) -> None:
    """End a silence now."""
    from watcher.clock import utcnow
    from watcher.store.outbox import Outbox

    with ctx.open_store(need_config=_config_exists(ctx)) as store:
        ok = Outbox(store).expire_silence(silence_id, utcnow())
    if not ok:
        fail(f"no active silence {silence_id} (see `watcher silence list --all`)")
    click.echo(f"silence {silence_id} expired")


# --------------------------------------------------------------------------- web


@cli.command()
@click.option(
    "--address",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen. Anything but a loopback address needs --token-env or --behind-proxy.",
)
@click.option(
    "--token-env",
    metavar="VAR",
    help="Require the token in this environment variable (Authorization: Bearer TOKEN, or "
    "?token=TOKEN once, which sets a cookie).",
)
@click.option(
    "--behind-proxy",
    metavar="NAME",
    help="Serve without a token because the named proxy in front authenticates users.",
)
@pass_ctx
def serve(ctx: Context, address: str, token_env: str | None, behind_proxy: str | None) -> None:
    """Serve the web pages (stories timeline, story pages, search, sources, rules), the
    Atom and JSON feeds (/feed.atom, /feed.json) and the read-only API (/openapi.json)."""
    import ipaddress
    import os

    from watcher import web

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            fail(f"--token-env {token_env}: the variable is not set")
        logsetup.add_secrets([token])
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token and not behind_proxy:
        fail(
            f"refusing to serve on {host} without a token: add --token-env VAR, or "
            "--behind-proxy NAME when an authenticating proxy is in front",
            code=2,
        )
    config = ctx.config().config
    with ctx.open_store() as store:
        app = web.create_app(store, config, token=token)
        log.info("serving on http://%s:%s", host, port, extra={"action": "serve"})
        web.serve(app, host, int(port))


def _config_exists(ctx: Context) -> bool:
    import os

    return os.path.exists(ctx.config_path)


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="watcher")
