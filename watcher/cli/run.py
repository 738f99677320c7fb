"""`watcher run` (the daemon, or one cycle with --once) and `watcher reload`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from watcher.cli.base import Context, cli, fail, fail_config, log, pass_ctx
from watcher.errors import AlreadyRunning, StoreError

if TYPE_CHECKING:
    from watcher.config import LoadedConfig
    from watcher.store import Store


@cli.command()
@click.option(
    "--once", is_flag=True, help="Run one poll cycle of the sources that are due, then exit."
)
@click.option(
    "--all",
    "all_sources",
    is_flag=True,
    help="With --once (only): poll every enabled source, due or not.",
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
    Stop the daemon with Ctrl-C or SIGTERM; `watcher reload` (or SIGHUP) re-reads the file.

    The log (stderr) starts with one summary: sources by kind and language, rules, where
    alerts go (routes -> channels), the ops route or its absence, the database, the metrics
    address and the PID file. Then one `cycle:` line per cycle (the daemon: one a minute, or
    per shortest source interval if shorter; `--once`: its one cycle): polls by outcome, new
    items, matches, stories opened and updated, messages sent and failed, the next poll.
    Cycles with nothing new are told at most every 10 minutes (each one with
    `--log-level debug`). With --once the log holds the warnings `watcher check` gives (no
    route, no ops route, a channel apprise cannot read), then the one `cycle:` line.
    """
    import asyncio

    from watcher.daemon import InstanceLock
    from watcher.pipeline import Parsing, lease_length
    from watcher.store import database_failure, is_database_error
    from watcher.store.outbox import Outbox

    if all_sources and not once:
        fail("--all goes with --once (the daemon polls each source when it is due)", code=2)
    if metrics_address is not None:
        from watcher.config.models import address_problem

        if problem := address_problem(metrics_address, off=True):
            fail(f"--metrics-address: {problem}", code=2)
    loaded = ctx.config()
    matcher = ctx.matcher()
    database_url = ctx.database_url()
    lock = InstanceLock(database_url)
    try:
        lock.acquire()
    except (AlreadyRunning, StoreError) as exc:
        fail(str(exc))
    store = ctx.store()
    try:
        # A database that takes no writes fails here, in one line, rather than every poll.
        store.check_writable()
        if lock.path is not None:  # single instance: claims left by a crash are stale
            from watcher.clock import utcnow

            Outbox(store).release_claims()
            store.release_stale_claims(utcnow(), lease_length(loaded.config.settings))
    except Exception as exc:
        store.close()
        lock.release()
        if not is_database_error(exc):
            raise
        fail(database_failure(database_url, exc))
    parsing = Parsing.from_settings(loaded.config.settings, matcher)
    code = 0
    try:
        if once:
            try:
                asyncio.run(
                    _once(loaded, store, all_sources=all_sources, parsing=parsing, matcher=matcher)
                )
            except Exception as exc:  # the database failed the cycle: one line, exit 1
                if not is_database_error(exc):
                    raise
                fail(database_failure(database_url, exc))
        else:
            from watcher.daemon import run_daemon

            parsing.close()  # the daemon has its own
            address = metrics_address or loaded.config.settings.metrics_address
            try:
                code = run_daemon(
                    ctx.config_path,
                    loaded,
                    store,
                    matcher,
                    metrics_address=None if address == "off" else address,
                    database_url=database_url,
                )
            except OSError as exc:
                fail(f"cannot serve metrics on {address}: {exc.strerror or exc}")
    finally:
        parsing.close()
        store.close()
        lock.release()
    if code:  # the daemon stopped itself and logged why
        sys.exit(code)


async def _once(
    loaded: LoadedConfig, store: Store, *, all_sources: bool, parsing: Any, matcher: Any
) -> None:
    """One cycle, then send what is due (for cron); one `cycle:` line tells both."""
    import time

    from watcher.clock import utcnow
    from watcher.daemon import config_warnings
    from watcher.outbox import Deliverer
    from watcher.pipeline import CycleTally

    # A cron job's log is all its operator sees: the warnings `watcher check` gives come first.
    for warning in config_warnings(loaded, matcher):
        log.warning("%s", warning, extra={"action": "start"})
    started = time.monotonic()
    tally = CycleTally()
    reports = await _cycle(
        loaded, store, only_due=not all_sources, parsing=parsing, matcher=matcher
    )
    for report in reports:
        tally.add(report)

    def attempted(_channel: str, outcome: str) -> None:
        tally.attempted(outcome)

    deliverer = Deliverer(store, loaded.config, on_attempt=attempted)
    await deliverer.replan_digests()  # the routes' digest times may have changed since
    await deliverer.run_due()
    unrecorded = await deliverer.record_sent()
    if unrecorded:
        log.warning(
            "%d sent messages could not be recorded (the database is unavailable): the next "
            "run sends them again",
            unrecorded,
            extra={"action": "deliver"},
        )
    upcoming = store.next_poll([s.id for s in loaded.config.sources if s.enabled])
    took = f"took {time.monotonic() - started:.1f}s"
    log.info("%s", tally.line(upcoming, utcnow(), took), extra={"action": "cycle"})


async def _cycle(
    loaded: LoadedConfig,
    store: Store,
    *,
    only_due: bool,
    parsing: Any = None,
    matcher: Any = None,
) -> list[Any]:
    from watcher import recheck
    from watcher.clock import utcnow
    from watcher.fetch import Fetcher, FetchLimits
    from watcher.pipeline import check_health, heartbeat_if_due, run_cycle
    from watcher.routing import Alerting

    config = loaded.config
    sources = [s for s in config.sources if s.enabled]
    store.sync_sources(sources, utcnow())
    alerting = Alerting.from_config(config)
    async with Fetcher(FetchLimits.from_settings(config.settings)) as fetcher:
        reports = await run_cycle(
            sources,
            store=store,
            fetcher=fetcher,
            settings=config.settings,
            only_due=only_due,
            parsing=parsing,
            matcher=matcher,
            alerting=alerting,
        )
        # Matched reports due a look at their source (removed or changed since).
        await recheck.run_checks(store, fetcher, config, utcnow(), alerting=alerting)
    # Health is kept in the database, so that successive `run --once` calls add up.
    check_health(store, config, utcnow(), [r.source_id for r in reports])
    if heartbeat_if_due(store, config, utcnow()):
        log.info("daily heartbeat queued", extra={"action": "heartbeat"})
    return reports


@cli.command()
@pass_ctx
def reload(ctx: Context) -> None:
    """Tell the running daemon to re-read sources.yaml (SIGHUP to the PID in its PID file).

    The PID file is found from the same --config and --db the daemon was given, from any
    directory: it is in settings.state_dir when that is set (a relative one is read from the
    folder of sources.yaml), else beside the SQLite database (watcher.db.pid), else (for
    PostgreSQL) in the system's temporary folder, named after the database and the file. The
    daemon's start-up log names it. Only settings.state_dir and settings.database_url are read
    here, so the daemon's other ${VAR}s need not be set in this shell. A file with other
    problems is refused here (exit 2) and would be refused by the daemon, which keeps its
    configuration. With replicas, send SIGHUP to each."""
    import os
    import signal

    from watcher import DEFAULT_DATABASE_URL
    from watcher.config import load_config
    from watcher.config.loading import daemon_settings
    from watcher.daemon import find_daemon, pid_path
    from watcher.errors import ConfigError

    try:
        load_config(ctx.config_path)  # a file the daemon would refuse is refused here
    except ConfigError as exc:
        # ...but its ${VAR}s may be set only in the daemon's environment (systemd's
        # EnvironmentFile, a container's secrets). Without them the file is checked only in
        # part here (what depends on them cannot be): the daemon checks all of it.
        if not exc.only_unset:
            fail_config(exc)
        names = ", ".join(sorted(set(exc.unset)))
        click.echo(
            f"not set in this shell: {names}; the file is checked in part here, and in full by "
            "the daemon (its log says `reload refused` if it is invalid)",
            err=True,
        )
    # Where the daemon keeps its PID needs settings.state_dir and .database_url alone.
    try:
        state_dir, database_url, unset = daemon_settings(ctx.config_path)
    except ConfigError as exc:
        fail_config(exc)
    if unset and not ctx.db_url and (database_url == "" or state_dir == ""):
        fail(
            f"where the daemon keeps its PID depends on {', '.join(unset)}, not set in this "
            "shell: set it, or give the daemon's database with --db"
        )
    url = ctx.db_url or database_url or DEFAULT_DATABASE_URL
    found = find_daemon(pid_path(ctx.config_path, state_dir, url), url)
    if isinstance(found, str):
        fail(found)
    pid, path = found
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        fail(f"cannot signal the daemon (pid {pid}, from {path}): {exc.strerror or exc}")
    click.echo(f"sent SIGHUP to watcher (pid {pid}, from {path})")


# --------------------------------------------------------------------------- sources
