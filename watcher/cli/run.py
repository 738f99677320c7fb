"""`watcher run` (the daemon, or one cycle with --once) and `watcher reload`."""

from __future__ import annotations

from collections import Counter
from typing import Any

import click

from watcher.cli.base import Context, cli, fail, log, pass_ctx
from watcher.config import LoadedConfig
from watcher.errors import AlreadyRunning
from watcher.store import Store


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
    from datetime import timedelta

    from watcher.clock import utcnow
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
        lease = loaded.config.settings.source_timeout + timedelta(seconds=15)
        store.release_stale_claims(utcnow(), lease)
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
    from watcher.pipeline import check_health, heartbeat_if_due, run_cycle
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
    # Health is kept in the database, so that successive `run --once` calls add up.
    check_health(store, config, utcnow(), [r.source_id for r in reports])
    if heartbeat_if_due(store, config, utcnow()):
        log.info("daily heartbeat queued", extra={"action": "heartbeat"})
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
