"""`watcher run`: the long-running daemon.

    APScheduler (asyncio) ──tick every second──▶ claim due sources in the database ──▶ poll each
                          ──deliver every second──▶ claim due deliveries ──▶ send
    SIGHUP ──▶ reload sources.yaml (an invalid file is refused; the running one stays)
    SIGTERM/SIGINT ──▶ stop claiming, let in-flight polls and sends finish (up to
                       `shutdown_grace`), close; a second signal exits at once

The database is the schedule: each source's next-due time lives in its row and is advanced in
the same statement that claims it, so restarts lose nothing and several replicas on one
PostgreSQL share the sources without polling one twice (rows another replica holds are
skipped). If the process dies mid-poll, the claim is a lease: the source is due again when it
ends. SQLite is single-instance: an OS file lock refuses a second daemon on the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from watcher import __version__, recheck
from watcher import log as logsetup
from watcher.clock import utcnow
from watcher.config import LoadedConfig, Source, format_duration, load_config
from watcher.errors import AlreadyRunning, ConfigError, RuleError, StoreError
from watcher.fetch import Fetcher, FetchLimits
from watcher.outbox import Deliverer, unreadable_channels
from watcher.pipeline import (
    ANALYZE_EVERY,
    CycleTally,
    Leases,
    Parsing,
    check_health,
    heartbeat_if_due,
    lease_length,
    offload_for,
    poll_source,
)
from watcher.routing import Alerting, nobody_hears
from watcher.rules import compile_rules
from watcher.store import Store, is_database_error, is_missing_table, server_key, with_hint
from watcher.types import HealthChange, PollSuccess, SourceState

log = logging.getLogger("watcher.daemon")
#: Seconds between batches of re-checks at the source (each batch: those due, at most
#: `recheck.PER_CYCLE`).
RECHECK_EVERY = 60.0


# --------------------------------------------------------------------------- single instance


def sqlite_file(database_url: str) -> Path | None:
    """The absolute path of a SQLite database file; None for any other database."""
    if not database_url.startswith("sqlite") or ":///" not in database_url:
        return None
    name = database_url.split(":///", 1)[1].split("?", 1)[0]
    if not name or ":memory:" in name or name.startswith("file:"):
        return None
    return Path(os.path.abspath(name))


class InstanceLock:
    """An exclusive OS lock next to a SQLite database: it dies with the process, so a kill -9
    leaves nothing stale. PostgreSQL needs none (replicas coordinate in the database)."""

    def __init__(self, database_url: str) -> None:
        db_file = sqlite_file(database_url)
        self.path: Path | None = db_file.with_name(db_file.name + ".lock") if db_file else None
        self._fd: int | None = None

    def acquire(self) -> None:
        if self.path is None:
            return
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            hint = " (the database's folder must exist)" if not self.path.parent.is_dir() else ""
            raise StoreError(f"cannot create the lock file {self.path}: {reason}{hint}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"another `watcher run` (pid {other}) is using this SQLite database; "
                "SQLite is single-instance: use PostgreSQL for several replicas"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def pid_file(loaded: LoadedConfig, database_url: str) -> Path:
    """Where the daemon for this configuration and database keeps its PID (`pid_path`)."""
    settings = loaded.config.settings
    state_dir = settings.state_dir if "state_dir" in settings.model_fields_set else None
    return pid_path(loaded.path, state_dir, database_url)


def pid_path(config_path: str, state_dir: str | None, database_url: str) -> Path:
    """Where the daemon for this configuration and database keeps its PID, the same from any
    working directory (so `watcher reload` finds it):

    - `settings.state_dir`/watcher.pid when that is set; a relative state_dir is read from
      the folder of sources.yaml, like a path written in any file;
    - else beside the SQLite database: `watcher.db` → `watcher.db.pid` (the lock,
      `watcher.db.lock`, is always there);
    - else (PostgreSQL) in the system's temporary folder, named after the database and the
      configuration file (`watcher-3f2a9c1b7d4e.pid`): writable even where sources.yaml is
      mounted read-only (containers), and the same for every command run on them.
    """
    config_dir = Path(os.path.abspath(config_path)).parent
    if state_dir is not None:
        folder = config_dir / Path(state_dir).expanduser()
        return Path(os.path.abspath(folder)) / "watcher.pid"
    db_file = sqlite_file(database_url)
    if db_file is not None:
        return db_file.with_name(db_file.name + ".pid")
    import hashlib
    import tempfile

    key = f"{server_key(database_url)}\n{os.path.abspath(config_path)}".encode()
    return Path(tempfile.gettempdir()) / f"watcher-{hashlib.sha256(key).hexdigest()[:12]}.pid"


def shown_database(database_url: str) -> str:
    """The database as logs and the PID file name it: a SQLite file by its absolute path, a
    server without its credentials."""
    db_file = sqlite_file(database_url)
    return f"sqlite:///{db_file}" if db_file else logsetup.redact(database_url)


def find_daemon(path: Path, database_url: str) -> tuple[int, Path] | str:
    """The PID of the daemon whose PID file is `path` (`pid_path`), and the file; or why there
    is none, as one line. (The file's second line names the daemon's database, for people;
    the file's place is what ties it to this configuration.)"""
    try:
        lines = path.read_text().splitlines()
        pid = int(lines[0])
    except FileNotFoundError:
        return (
            f"no running daemon found: {path} does not exist (is `watcher run` running on "
            f"{shown_database(database_url)}?)"
        )
    except (OSError, ValueError, IndexError) as exc:
        return f"no running daemon found: cannot read {path} ({exc})"
    try:
        os.kill(pid, 0)
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except ProcessLookupError:
        return f"no running daemon found: {path} names pid {pid}, which is not running (stale)"
    except OSError:  # no /proc (not Linux), or not ours to inspect: trust the file
        return pid, path
    if b"watcher" not in command:
        return f"no running daemon found: {path} names pid {pid}, which is not watcher (stale)"
    return pid, path


# --------------------------------------------------------------------------- metrics


class Metrics:
    """Prometheus metrics, all prefixed `watcher_`, in a registry of their own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.polls = Counter(
            "watcher_polls", "Polls by source and outcome", ["source", "outcome"], registry=r
        )
        self.fetch_seconds = Histogram(
            "watcher_fetch_seconds",
            "Fetch latency",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.items = Counter("watcher_items_stored", "New items stored", registry=r)
        self.matches = Counter("watcher_matches", "Matched items by event", ["event"], registry=r)
        self.alerts = Counter("watcher_alerts", "Deliveries queued by route", ["route"], registry=r)
        self.deliveries = Counter(
            "watcher_deliveries",
            "Send attempts by channel and outcome",
            ["channel", "outcome"],
            registry=r,
        )
        self.outbox = Gauge("watcher_outbox_depth", "Pending deliveries", registry=r)
        self.last_success = Gauge(
            "watcher_last_successful_poll_timestamp_seconds",
            "Unix time of each source's last successful poll",
            ["source"],
            registry=r,
        )
        self.unhealthy = Gauge(
            "watcher_sources_unhealthy",
            "Sources whose health is a problem (failing, blocked, empty, broken, moved, stale)",
            registry=r,
        )
        self.problem = Gauge(
            "watcher_source_problem",
            "1 for each unhealthy source, labelled with its problem",
            ["source", "problem"],
            registry=r,
        )
        self.last_cycle = Gauge(
            "watcher_last_cycle_timestamp_seconds",
            "Unix time of the last completed poll (alert when it stops moving)",
            registry=r,
        )

    def forget_sources_except(self, watched: set[str]) -> None:
        """Remove the series of every source not in `watched` from each per-source metric."""
        for metric, names in (
            (self.polls, ("source", "outcome")),
            (self.last_success, ("source",)),
            (self.problem, ("source", "problem")),
        ):
            labelled = {
                tuple(sample.labels[n] for n in names)
                for family in metric.collect()
                for sample in family.samples
            }
            for values in labelled:
                if values[0] not in watched:
                    with contextlib.suppress(KeyError):  # removed meanwhile
                        metric.remove(*values)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# --------------------------------------------------------------------------- the daemon


@dataclass
class Daemon:
    config_path: str
    loaded: LoadedConfig
    store: Store
    matcher: Any
    metrics_address: str | None = None
    clock: Callable[[], datetime] = utcnow
    metrics: Metrics = field(default_factory=Metrics)
    #: The database and PID file as the start-up summary names them.
    database: str = ""
    pid_path: Path | None = None
    #: The SQLite database file (None: PostgreSQL or in memory), checked every tick to be the
    #: one opened: a file removed or replaced under the daemon takes nothing more.
    database_file: Path | None = None

    #: A cycle, for the log: one `cycle:` line per this many seconds (or per shortest source
    #: interval, if shorter) tells what happened since the line before.
    CYCLE = 60.0
    #: A cycle in which nothing new happened is told at most this often (each one at debug).
    QUIET_EVERY = 600.0

    def __post_init__(self) -> None:
        self.stop = asyncio.Event()
        #: The start (monotonic) of the database call whose stall was told, if one is.
        self._stall_told: float | None = None
        self.parsing = Parsing.from_settings(self.loaded.config.settings, self.matcher)
        self.db = offload_for(self.store)
        self.in_flight: dict[str, asyncio.Task[Any]] = {}
        #: Sources the metrics show unhealthy, and how (enabled, configured ones only).
        self.unhealthy: dict[str, str] = {}
        self.started_at = self.last_ok_poll = time.monotonic()
        #: When the running configuration was read (start, or the last reload taken).
        self.loaded_at = self.clock()
        self.next_heartbeat_check = 0.0
        #: Sources whose poll the database cut short, with the lease this process holds.
        self.orphaned: dict[str, datetime] = {}
        #: The claims held on the sources in flight, renewed while their polls run.
        self.leases = Leases(lease_length(self.loaded.config.settings))
        #: What happened since the last `cycle:` line, and when that line was written.
        self.tally = CycleTally()
        self.told_at = self.cycle_ends = time.monotonic()
        self._keeper: asyncio.Task[None] | None = None
        self.scheduler: Any = None
        self.fetcher: Fetcher | None = None
        self.deliverer = self._deliverer(self.loaded.config)
        self.alerting = Alerting.from_config(self.loaded.config)
        self.database_ok = True
        #: The kinds of database call that failed in the outage under way (`_database_down`),
        #: and when the last one did (monotonic).
        self._failing: set[str] = set()
        self._last_database_error = 0.0
        #: What the last `database` error line said was wrong ("unavailable" or "no tables"):
        #: a change is told, a repeat is not.
        self.database_problem: str | None = None
        #: Whether the sources must be registered again before the next claim: after an
        #: outage the database may be another one (recreated empty, restored from a backup).
        self.sources_unsynced = False
        self.started = False
        self.signals = 0
        self._deliver_lock = asyncio.Lock()
        #: Polls that changed nothing, and sources whose poll ended, since the last tick: the
        #: next tick records the first and checks the health of the second in one go, as
        #: `--once` does, instead of a transaction or two per poll.
        self.unchanged: list[PollSuccess] = []
        self.polled: list[str] = []
        #: Whether polls stored new items since the tables' growth was last checked, and
        #: when it may be checked next (`Store.analyze_grown`, every ANALYZE_EVERY seconds).
        self.stored_new = False
        self.next_analyze = 0.0
        #: Polls in progress at once (as in `run_cycle`): a tick that claims thousands of
        #: sources fetches no further ahead than parsing and storing keep up with.
        self.slots = asyncio.Semaphore(self.loaded.config.settings.concurrency)
        #: Re-checks of matched items at their source (`watcher.recheck`): one batch at a
        #: time, at most every RECHECK_EVERY seconds.
        self.rechecking: asyncio.Task[None] | None = None
        self.next_recheck = 0.0
        #: The scheduler's runs of `tick` and `deliver` under way (`_job`).
        self._jobs: set[asyncio.Task[Any]] = set()
        #: Reloads under way (`_reload_soon`), and one the database deferred (`reload`).
        self._reloads: set[asyncio.Task[Any]] = set()
        self.reload_pending = False
        #: The exit code `watcher run` ends with: 0, or 1 when the daemon stopped itself.
        self.exit_code = 0
        #: The database file as opened (device, inode), to tell it from its removal or a
        #: replacement (`_database_file_gone`).
        self._file_id = _file_id(self.database_file) if self.database_file else None

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        server = await self._serve_metrics()
        config = self.loaded.config
        self.fetcher = Fetcher(FetchLimits.from_settings(config.settings))
        while True:  # a database that is away at start is waited for, as during a run
            try:
                await self.db(self.store.sync_sources, config.sources, self.clock())
                states = await self.db(self.store.fetch_states)
                await self.deliverer.replan_digests()  # a schedule changed while stopped
                await self._channels_changed(config)
                self._database_back("start")
                self.sources_unsynced = False
                break
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                self._database_down(exc, "start")
                if self.stop.is_set():
                    return
                await asyncio.sleep(1)
        # The last poll an earlier run completed: a restart does not read as "no poll since
        # 1970" (an alert on the gauge's age would fire on every restart).
        polled = [s.last_polled_at for s in states.values() if s.last_polled_at is not None]
        if polled:
            self.metrics.last_cycle.set(max(polled).timestamp())
        watched = {s.id for s in config.sources if s.enabled}
        for state in states.values():
            # what earlier runs found still holds until a poll says otherwise; a source that is
            # removed or disabled is polled no more, and would stay "unhealthy" for ever
            if state.health and state.id in watched:
                self._health_metric(
                    HealthChange(source_id=state.id, old=None, new=state.health, reason=None)
                )
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        # Two one-second loops: claim due sources, drain due deliveries. The database says what
        # is due, so a tick that finds nothing costs one query.
        for job, start in ((self.tick, datetime.now().astimezone()), (self.deliver, None)):
            self.scheduler.add_job(
                self._job(job),
                "interval",
                seconds=1,
                id=job.__name__,
                max_instances=1,
                coalesce=True,
                **({"next_run_time": start} if start else {}),
            )
        self.scheduler.start()
        stalls = asyncio.create_task(self._watch_stalls())
        self._keeper = asyncio.create_task(
            self.leases.keep(
                self.store,
                self.db,
                self.clock,
                functools.partial(self._database_down, what="lease renewal"),
            )
        )
        self.started = True
        self.started_at = self.told_at = time.monotonic()
        self.tally = CycleTally()
        self.cycle_ends = self.told_at + self._cycle_seconds()
        log.info(
            "watcher %s running (pid %d): %s; pid file %s",
            __version__,
            os.getpid(),
            summary(self.loaded, self.matcher, self.database, self.metrics_address),
            self.pid_path or "(not written)",
            extra={"action": "start"},
        )
        for warning in config_warnings(self.loaded, self.matcher):
            log.warning("%s", warning, extra={"action": "start"})
        try:
            await self.stop.wait()
        finally:
            stalls.cancel()
            await self._shutdown(server)

    def _on_stop_signal(self) -> None:
        self.signals += 1
        if self.signals > 1:
            log.warning("second signal: exiting now", extra={"action": "stop"})
            os._exit(130)  # the outbox makes this safe: nothing sent is forgotten
        log.info("stopping: finishing polls and sends in flight", extra={"action": "stop"})
        self.stop.set()

    def _job(self, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """`job` as the scheduler runs it, its run known while it lasts (`_shutdown` lets a
        run finish rather than have the scheduler cancel it midway; one cancelled past the
        grace ends quietly)."""

        async def run() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._jobs.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                if not self.stop.is_set():
                    raise
                # `_shutdown` cancelled a run that outlasted the grace, and says what it
                # left; the scheduler would log the cancellation as an error.
                log.debug("%s cut short by the stop", job.__name__, extra={"action": "stop"})
            finally:
                if task is not None:
                    self._jobs.discard(task)

        run.__name__ = job.__name__
        return run

    async def _shutdown(self, server: Any) -> None:
        """Stop within `shutdown_grace`: each wait gets what is left of it (a database call
        at least a second). What a database that does not answer left unrecorded is told in
        one line, and the process then exits at once with code 1 rather than wait on the
        threads stuck in it: the outbox makes that safe."""
        grace = self.loaded.config.settings.shutdown_grace.total_seconds()
        deadline = time.monotonic() + grace
        #: What could not be recorded in time, for the last line.
        left: list[str] = []

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        async def within(what: str, call: Awaitable[Any]) -> bool:
            """`call` in what is left of the grace, a database call at least a second; once
            one timed out (the database does not answer), a moment only: what needs no
            database still gets done. `what` is told when it was not."""
            try:
                await asyncio.wait_for(call, max(1.0, remaining()) if not left else 0.2)
            except TimeoutError:
                left.append(what)
                return False
            except Exception:
                return False  # a database that refuses: what it did not take is told below
            return True

        if self.scheduler is not None:
            # No new run; one under way (a tick claiming sources, a delivery) ends first:
            # shutting the scheduler down cancels it (quietly: `_job`).
            self.scheduler.pause()
            self.deliverer.stop()  # the send under way ends and is recorded; no next one
            if self._jobs:
                await asyncio.wait(list(self._jobs), timeout=remaining())
            self.scheduler.shutdown(wait=False)
        pending = list(self.in_flight.values())
        if pending:
            _, late = await asyncio.wait(pending, timeout=remaining())
            cut = {
                sid: self.leases.held[sid]
                for sid, task in self.in_flight.items()
                if task in late and sid in self.leases.held
            }
            for task in late:
                task.cancel()
            if late:
                log.warning(
                    "%d polls still running after %gs; cancelled (their sources are due again)",
                    len(late),
                    grace,
                    extra={"action": "stop"},
                )
                if cut:  # else they are due when the lease ends
                    await within(
                        f"the claims of {_count(len(cut), 'source')} cancelled (due again "
                        "when their leases end)",
                        self.db(self.store.release_sources, cut, self.clock()),
                    )
        if self.unchanged or self.polled:  # what the next tick would have settled
            unchanged = len(self.unchanged)
            if not unchanged or await within(
                f"{_count(unchanged, 'unchanged poll')} (their sources are polled again when "
                "their leases end)",
                self.db(self.store.record_unchanged, self.unchanged[:]),
            ):
                self.unchanged.clear()
                await within(
                    "the health of the sources last polled (checked at the next poll)",
                    self._check_health(self.clock(), self.polled[:]),
                )
        if self._keeper is not None:  # the polls are over: nothing left to renew
            self._keeper.cancel()
        if self.rechecking is not None and not self.rechecking.done():
            # A check cut short is due again later (`store.checks.due_checks` pushed it on).
            self.rechecking.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.rechecking, max(1.0, remaining()))
        unrecorded: list[int] = []
        # The channels' batches under way end with the send each has begun (`stop` above); a
        # channel that does not answer within the grace is left to its thread.
        ended = True
        try:
            await asyncio.wait_for(self.deliverer.sends_ended(), max(1.0, remaining()))
        except TimeoutError:
            ended = False
            log.warning(
                "a send was still under way after shutdown_grace (%gs): its channel did not "
                "answer; it is not recorded and may be sent once more after the restart",
                grace,
                extra={"action": "stop"},
            )

        async def record_sent() -> None:
            unrecorded.append(await self.deliverer.record_sent(wait=ended))

        try:  # a send in progress (cancelled past the grace: it ends at once) is recorded
            await asyncio.wait_for(self._deliver_lock.acquire(), max(1.0, remaining()))
        except TimeoutError:
            left.append("a send in progress")
        else:
            try:  # it finished; record what the database refused earlier, if anything
                await within("sends made while the database was away", record_sent())
            finally:
                self._deliver_lock.release()
        if unrecorded and unrecorded[0]:
            log.warning(
                "%d sent messages could not be recorded before stopping (the database is "
                "unavailable): they will be sent again once it is back",
                unrecorded[0],
                extra={"action": "stop"},
            )
        if (self.tally.polled or self.tally.sent or self.tally.unsent) and not left:
            await within("the last cycle line", self._tell_cycle(final=True))
        if self.fetcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.fetcher.aclose(), max(1.0, remaining()))
        if server is not None:
            server.close()
        if left:
            log.error(
                "stopped after shutdown_grace (%gs) with the database not answering; not "
                "recorded: %s. Nothing is lost: the outbox keeps every message, and one whose "
                "send was not recorded may be sent once more after the restart",
                grace,
                "; ".join(left),
                extra={"action": "stop"},
            )
            log.info("watcher stopped (exit code 1)", extra={"action": "stop"})
            self._exit_now(1)  # the threads stuck in the database would hold the exit
        self.parsing.close()
        self.db.close()
        log.info("watcher stopped", extra={"action": "stop"})
        if not ended:  # the send under way holds its task (send, then record) to its end
            self._exit_now(0)

    def _exit_now(self, code: int) -> None:
        """End the process without waiting for its threads: flush the log, remove the PID
        file (the OS frees the SQLite lock)."""
        with contextlib.suppress(Exception):
            self.parsing.close()
        if self.pid_path is not None:
            with contextlib.suppress(OSError):
                if self.pid_path.read_text().split("\n", 1)[0].strip() == str(os.getpid()):
                    self.pid_path.unlink()
        logging.shutdown()
        os._exit(code)

    # ------------------------------------------------------------------ polling

    async def tick(self) -> None:
        """Claim the sources that are due and start polling each (never twice at once)."""
        if self.stop.is_set() or self._database_file_gone():
            return
        config = self.loaded.config
        now = self.clock()
        if time.monotonic() >= self.cycle_ends:
            await self._tell_cycle()
        candidates = [s.id for s in config.sources if s.enabled and s.id not in self.in_flight]
        # Renewed while the poll runs (Leases.keep); a replica that dies frees its sources
        # when the last renewal ends.
        lease = now + self.leases.length
        # Taken together: a poll lists its unchanged mark before its source.
        unchanged, polled = self.unchanged[:], self.polled[:]
        try:
            if self.sources_unsynced:  # the database was away: it may have lost them
                await self.db(self.store.sync_sources, config.sources, now)
                self.sources_unsynced = False
            if self.orphaned:  # polls cut short by an outage: due again now, not at lease end
                orphaned, self.orphaned = self.orphaned, {}
                await self.db(self.store.release_sources, orphaned, now)
            # Recorded before the claim, in its transaction: an unchanged source is due later.
            states = await self.db(self.store.settle_and_claim, unchanged, candidates, now, lease)
            self._database_back("claim")
        except Exception as exc:
            self._database_down(exc, "claim")  # the unchanged polls stay listed for the next tick
            return
        del self.unchanged[: len(unchanged)]
        claimed = list(states)
        if polled:
            await self._check_health(now, polled)
        if self.stored_new and time.monotonic() >= self.next_analyze:
            self.stored_new, self.next_analyze = False, time.monotonic() + ANALYZE_EVERY
            try:
                await self.db(self.store.analyze_grown)
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                self._database_down(exc, "analyze")
                return
        if config.settings.heartbeat and time.monotonic() >= self.next_heartbeat_check:
            self.next_heartbeat_check = time.monotonic() + 60
            try:
                if await self.db(heartbeat_if_due, self.store, config, now):
                    log.info("daily heartbeat queued", extra={"action": "heartbeat"})
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                self._database_down(exc, "heartbeat")
        if time.monotonic() >= self.next_recheck and (
            self.rechecking is None or self.rechecking.done()
        ):
            self.next_recheck = time.monotonic() + RECHECK_EVERY
            self.rechecking = asyncio.create_task(self._recheck(now))
        if self.stop.is_set() and claimed:  # stopping meanwhile: give them back, due now
            with contextlib.suppress(Exception):
                await self.db(self.store.release_sources, dict.fromkeys(claimed, lease), now)
            return
        by_id = {s.id: s for s in config.sources}
        for source_id in claimed:
            self.leases.held[source_id] = lease
            task = asyncio.create_task(self._poll(by_id[source_id], states[source_id]))
            self.in_flight[source_id] = task
            task.add_done_callback(functools.partial(self._done, source_id))

    async def _recheck(self, now: datetime) -> None:
        """Fetch the matched items whose re-check is due (removed or changed at source)."""
        if self.fetcher is None:
            return
        try:
            found = await recheck.run_checks(
                self.store, self.fetcher, self.loaded.config, now, alerting=self.alerting
            )
        except Exception as exc:
            if is_database_error(exc):
                self._database_down(exc, "recheck")
                return
            log.exception("re-checks failed", extra={"action": "recheck"})
            return
        if found:
            removed = sum(v.outcome == "removed" for _, v in found)
            changed = sum(v.outcome == "changed" for _, v in found)
            log.info(
                "re-checked %d reports at their source: %d removed, %d changed",
                len(found),
                removed,
                changed,
                extra={"action": "recheck"},
            )

    def _done(self, source_id: str, _task: object) -> None:
        self.in_flight.pop(source_id, None)
        self.leases.held.pop(source_id, None)

    async def _poll(self, source: Source, state: SourceState | None) -> None:
        config = self.loaded.config
        try:
            async with self.slots:
                report = await poll_source(
                    source,
                    state,
                    fetcher=self.fetcher,  # type: ignore[arg-type]
                    store=self.store,
                    settings=config.settings,
                    clock=self.clock,
                    parsing=self.parsing,
                    db=self.db,
                    matcher=self.matcher,
                    alerting=self.alerting,
                    unchanged=self.unchanged,
                )
        except Exception as exc:
            if not is_database_error(exc):  # poll_source keeps a source's faults its own
                raise
            self._database_down(exc, "save")
            if source.id in self.leases.held:
                self.orphaned[source.id] = self.leases.held[source.id]
            return
        self._database_back("save")
        self._count(report)
        self.tally.add(report)
        self.metrics.last_cycle.set(time.time())
        if report.outcome != "failed":
            self.last_ok_poll = time.monotonic()
        if report.stories:
            self._deliver_soon()
        self.polled.append(source.id)
        self.stored_new = self.stored_new or bool(report.new)

    async def _check_health(self, now: datetime, polled: list[str]) -> None:
        """The health of the sources polled since the last tick, in one pass."""
        config = self.loaded.config
        try:
            changes = await self.db(check_health, self.store, config, now, sorted(set(polled)))
        except Exception as exc:
            if not is_database_error(exc):
                raise
            self._database_down(exc, "health")  # checked again after the next tick's polls
            return
        self._database_back("health")
        del self.polled[: len(polled)]
        for change in changes:
            self._health_metric(change)
        if any(c.subject for c in changes):
            self._deliver_soon()

    def _health_metric(self, change: HealthChange) -> None:
        m = self.metrics
        if change.old:
            with contextlib.suppress(KeyError):  # told before this process started
                m.problem.remove(change.source_id, change.old)
        if change.new:
            m.problem.labels(change.source_id, change.new).set(1)
            self.unhealthy[change.source_id] = change.new
        else:
            self.unhealthy.pop(change.source_id, None)
        m.unhealthy.set(len(self.unhealthy))

    def _unwatched_health(self, sources: Sequence[Any]) -> None:
        """Take sources a reload removed or disabled out of the health metrics."""
        watched = {s.id for s in sources if s.enabled}
        for source_id, status in list(self.unhealthy.items()):
            if source_id not in watched:
                self._health_metric(
                    HealthChange(source_id=source_id, old=status, new=None, reason=None)
                )

    def _unwatched_series(self, sources: Sequence[Any]) -> None:
        """Take every series labelled with a source the configuration no longer polls (removed,
        renamed or disabled) out of the per-source metrics, whatever its outcome or problem: a
        last-success time left behind would age into an alert for ever, and series of sources
        renamed by each reload would pile up."""
        self.metrics.forget_sources_except({s.id for s in sources if s.enabled})

    def _deliverer(self, config: Any) -> Deliverer:
        def attempted(channel: str, outcome: str) -> None:
            self.metrics.deliveries.labels(channel, outcome).inc()
            self.tally.attempted(outcome)

        return Deliverer(self.store, config, clock=self.clock, on_attempt=attempted)

    def _count(self, report: Any) -> None:
        m = self.metrics
        # a poll that ends after a reload removed its source adds no series back
        watched = any(s.id == report.source_id and s.enabled for s in self.loaded.config.sources)
        if watched:
            m.polls.labels(report.source_id, report.outcome).inc()
        if report.elapsed:
            m.fetch_seconds.observe(report.elapsed)
        if watched and report.outcome != "failed":
            m.last_success.labels(report.source_id).set(time.time())
        m.items.inc(report.new)
        for event in report.events:
            m.matches.labels(event).inc()
        for change in report.stories:
            for route in change.routes:
                m.alerts.labels(route).inc()

    async def deliver(self) -> None:
        if self.stop.is_set():
            return
        async with self._deliver_lock:
            try:
                await self.deliverer.run_due(wait=False)  # a slow channel holds no other
                depth = await self.db(self.deliverer.outbox.depth)
                self.metrics.outbox.set(depth)
                self._database_back()
            except Exception as exc:
                self._database_down(exc)

    # ------------------------------------------------------------------ the cycle line

    def _cycle_seconds(self) -> float:
        intervals = [s.interval.total_seconds() for s in self.loaded.config.sources if s.enabled]
        return max(1.0, min([self.CYCLE, *intervals]))

    async def _tell_cycle(self, *, final: bool = False) -> None:
        """At the end of a cycle, log what happened since the last `cycle:` line; a quiet
        cycle only every QUIET_EVERY seconds (or at debug), else it adds up into the next."""
        now = time.monotonic()
        self.cycle_ends = now + self._cycle_seconds()
        tally, since_told = self.tally, now - self.told_at
        overdue = since_told >= self.QUIET_EVERY
        if tally.quiet and not (final or overdue or log.isEnabledFor(logging.DEBUG)):
            return
        enabled = [
            s.id for s in self.loaded.config.sources if s.enabled and s.id not in self.in_flight
        ]
        try:
            upcoming = await self.db(self.store.next_poll, enabled)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            self._database_down(exc, "cycle")
            return  # told when the database answers again, with what happened meanwhile
        self.tally, self.told_at = CycleTally(), now
        level = logging.DEBUG if tally.quiet and not (final or overdue) else logging.INFO
        span = format_duration(timedelta(seconds=round(since_told)))
        log.log(
            level,
            "%s",
            tally.line(upcoming, self.clock(), f"last {span}"),
            extra={"action": "cycle"},
        )

    def _database_file_gone(self) -> bool:
        """Whether the SQLite file was removed (its folder with it, often) or replaced since
        it was opened; if so, say so and stop with exit code 1. The daemon would otherwise go
        on writing into a file that no longer has a name, lost at its next stop, while the
        lock beside it, gone too, lets a second daemon start. One stat() a second."""
        if self.database_file is None or self._file_id is None:
            return False
        if _file_id(self.database_file) in (self._file_id, (0, 0)):
            return False
        log.error(
            "database file %s was removed or replaced while running; stopping: nothing more "
            "can be stored there",
            self.database_file,
            extra={"action": "database"},
        )
        self.exit_code = 1
        self.stop.set()
        return True

    #: An outage ends when each kind of call that failed has succeeded again, or when this
    #: many seconds passed without any database error (a kind that runs rarely).
    DATABASE_QUIET = 15.0

    def _database_down(self, exc: Exception, what: str = "deliver") -> None:
        """Tell an outage once, and again when what is wrong changes: a database dropped and
        created again empty answers, but without watcher's tables. `what` is the kind of call
        that failed: the outage lasts until that kind succeeds (`_database_back`): on a full
        disk, reads and small writes go on while saves fail, and that is one outage, not one
        a second."""
        problem = "no tables" if is_missing_table(exc) else "unavailable"
        self._failing.add(what)
        self._last_database_error = time.monotonic()
        if problem != self.database_problem:
            if problem == "no tables":
                # Not created here, as `watcher run` does at start: the database may be
                # half-way through a restore, which tables made now would break.
                log.error(
                    "database %s has no watcher tables: run `watcher db upgrade` (or restore "
                    "a backup); retrying every second, the sources are registered again once "
                    "they are there",
                    self.database,
                    extra={"action": "database"},
                )
            else:
                log.error(
                    "database unavailable: %s (retrying every second; nothing is lost)",
                    with_hint(logsetup.one_line(exc)),
                    extra={"action": "database"},
                )
        self.database_problem = problem
        self.database_ok = False
        self.sources_unsynced = True

    def _database_back(self, what: str = "deliver") -> None:
        """A call of kind `what` succeeded: the outage is over once every kind that failed
        has, or after DATABASE_QUIET seconds without an error."""
        self._failing.discard(what)
        if not self.database_ok:
            quiet = time.monotonic() - self._last_database_error >= self.DATABASE_QUIET
            if self._failing and not quiet:
                return
            log.info("database available again", extra={"action": "database"})
        self._failing.clear()
        self.database_ok = True
        self.database_problem = None
        if self.reload_pending and not self.stop.is_set():
            self.reload_pending = False
            self._reload_soon()

    def _reload_soon(self) -> None:
        """Reload in a task of its own (SIGHUP, or a reload the database deferred); an error
        it did not expect is logged as one line, not left in an unread task."""

        async def run() -> None:
            try:
                await self.reload()
            except Exception as exc:
                log.error(
                    "reload failed: %s; the running configuration stays",
                    logsetup.one_line(exc),
                    extra={"action": "reload"},
                )

        task = asyncio.ensure_future(run())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    # ------------------------------------------------------------------ reload

    async def reload(self) -> bool:
        """Re-read sources.yaml; an invalid file is refused and the running one stays."""
        try:
            loaded = await asyncio.to_thread(load_config, self.config_path)
            matcher = await asyncio.to_thread(compile_rules, loaded.config)
        except ConfigError as exc:
            self._refused(exc.problems)
            return False
        except RuleError as exc:
            self._refused([loaded.problem(path, message) for path, message in exc.problems])
            return False
        logsetup.add_secrets(loaded.secrets)
        try:
            await self.db(self.store.sync_sources, loaded.config.sources, self.clock())
        except Exception as exc:
            if not is_database_error(exc):
                raise
            # The file is valid; the database must take its sources first. Read again (the
            # file may change meanwhile) once the database is back.
            self._database_down(exc, "reload")
            self.reload_pending = True
            log.error(
                "reload deferred: the database is unavailable (%s); %s is read again once it "
                "is back, until then the running configuration stays",
                logsetup.one_line(exc),
                self.config_path,
                extra={"action": "reload"},
            )
            return False
        self.reload_pending = False
        self._database_back("reload")
        self._unwatched_health(loaded.config.sources)
        self._unwatched_series(loaded.config.sources)
        self.loaded, self.matcher = loaded, matcher
        self.loaded_at = self.clock()
        self.leases.length = lease_length(loaded.config.settings)
        old_parsing, self.parsing = (
            self.parsing,
            Parsing.from_settings(loaded.config.settings, matcher),
        )
        await asyncio.to_thread(lambda: old_parsing.close(cancel=False))  # polls in flight finish
        self.alerting = Alerting.from_config(loaded.config)
        deliverer = self._deliverer(loaded.config)
        deliverer.inherit(self.deliverer)  # sends not yet recorded are not forgotten
        self.deliverer = deliverer
        try:
            await deliverer.replan_digests()
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning(
                "digest lines already queued keep their times (the database is unavailable: "
                "%s); they are re-planned on the next reload or start",
                logsetup.one_line(exc),
                extra={"action": "reload"},
            )
        with contextlib.suppress(Exception):  # else at the next reload or start
            await self._channels_changed(loaded.config)  # sent through the new URLs
        log.info(
            "reloaded %s: %s",
            self.config_path,
            summary(loaded, matcher, self.database, self.metrics_address),
            extra={"action": "reload"},
        )
        for warning in config_warnings(loaded, matcher):
            log.warning("%s", warning, extra={"action": "reload"})
        return True

    async def _channels_changed(self, config: Any) -> None:
        """Channels whose URL changed since the last start or reload are no longer the ones
        that were down: their waiting messages are tried now, not after the old URL's
        backoff. (Compared by a hash: the URL, which may hold a password, is not stored.)"""
        from watcher.store.outbox import Outbox

        hashes = {c.id: url_hash(c.id, c.url) for c in config.channels}
        for was in await self.db(Outbox(self.store).channels_changed, hashes):
            log.info(
                "channel %s has a new URL: its waiting messages are tried now (it was down "
                "since %s, %d failed tries)",
                was.channel,
                f"{was.down_since:%Y-%m-%d %H:%M:%S} UTC",
                was.failures,
                extra={"action": "deliver", "channel": was.channel},
            )
        self._deliver_soon()

    def _deliver_soon(self) -> None:
        """Run the delivery job now, not at its next second; nothing once the scheduler has
        stopped (a poll that ends after a stop began: its messages wait in the outbox)."""
        from apscheduler.jobstores.base import JobLookupError

        if self.scheduler is None or not self.scheduler.running:
            return
        with contextlib.suppress(JobLookupError):  # the scheduler shut down meanwhile
            self.scheduler.modify_job("deliver", next_run_time=datetime.now().astimezone())

    def _refused(self, problems: Sequence[str]) -> None:
        """A refused file: its problems, then which configuration still runs."""
        settings = self.loaded.config.settings
        logsetup.reload_refused(log, problems, self.config_path, self.loaded_at, settings.timezone)

    # ------------------------------------------------------------------ /healthz, /metrics

    async def _serve_metrics(self) -> Any:
        if not self.metrics_address:
            return None
        host, _, port = self.metrics_address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:9464
        return await asyncio.start_server(self._http, host or "127.0.0.1", int(port))

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = request.split(b" ", 2)[1].decode("ascii", "replace").split("?")[0]
            if path == "/metrics":
                status, body, ctype = 200, self.metrics.render(), "text/plain; version=0.0.4"
            elif path in ("/healthz", "/readyz"):
                # Liveness: the process and its loop answer (a database outage must not make
                # Kubernetes restart pods). Readiness: the service is doing its job now.
                problem = self._readiness_problem() if path == "/readyz" else None
                status = 503 if problem else 200
                body, ctype = (problem or "ok").encode() + b"\n", "text/plain; charset=utf-8"
            else:
                status, body, ctype = 404, b"not found\n", "text/plain"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, IndexError):
            pass
        finally:
            writer.close()

    #: A database call running longer than this is a stall: not ready, logged once each way.
    #: Calls time out after store.DB_TIMEOUT (10 s); only a hung driver gets this far.
    STALLED_AFTER = 30.0

    async def _watch_stalls(self) -> None:
        """Tell a database stall once when it starts and once when it ends (readiness checks
        tell it too, so a stall seen by a probe is never left untold)."""
        while not self.stop.is_set():
            self._stalled()
            try:
                await asyncio.wait_for(self.stop.wait(), 1)
            except TimeoutError:
                pass
        self._stalled()  # one that ended as the daemon stopped is told as well

    def _stalled(self) -> float | None:
        """How long the database call in progress has waited, when that makes a stall; logs
        the start and the end of each stall once."""
        busy = self.db.busy_since
        waited = time.monotonic() - busy if busy is not None else 0.0
        if busy is not None and waited > self.STALLED_AFTER:
            if self._stall_told != busy:
                self._stall_told = busy
                log.warning(
                    "database stalled: one call has waited %.0fs (readiness fails meanwhile)",
                    waited,
                    extra={"action": "database"},
                )
            return waited
        if self._stall_told is not None:
            self._stall_told = None
            log.info("database answers again after a stall", extra={"action": "database"})
        return None

    def _readiness_problem(self) -> str | None:
        if not self.started:
            return "starting"
        if self.stop.is_set():
            return "stopping"
        if not self.database_ok:
            return "database unavailable"
        waited = self._stalled()
        if waited is not None:
            return f"database stalled: one call has run for {waited:.0f}s"
        intervals = [s.interval for s in self.loaded.config.sources if s.enabled]
        if intervals:
            quiet = time.monotonic() - max(self.started_at, self.last_ok_poll)
            limit = 2 * min(intervals).total_seconds()
            if quiet > limit:
                return f"no source polled successfully for {quiet:.0f}s (two intervals)"
        return None


def summary(loaded: LoadedConfig, matcher: Any, database: str, metrics_address: str | None) -> str:
    """What the daemon runs, in one line: sources by kind and language, rules, where alerts
    go (route → channels, a channel by its scheme), the ops routes, database and metrics."""
    config = loaded.config
    enabled = [s for s in config.sources if s.enabled]
    kinds = Counter(s.kind for s in enabled)
    langs = Counter(s.lang or "auto" for s in enabled)
    disabled = len(config.sources) - len(enabled)
    sources = "; ".join(
        part
        for part in (
            ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
            ", ".join(f"{k} {n}" for k, n in langs.most_common()),
            f"{disabled} disabled" if disabled else "",
        )
        if part
    )
    channels = {c.id: c for c in config.channels}

    def shown(channel_id: str) -> str:
        channel = channels.get(channel_id)
        if channel is None:
            return channel_id
        scheme = channel.url.split("://", 1)[0] if "://" in channel.url else "?"
        return f"{channel_id} ({scheme}{'' if channel.enabled else ', disabled'})"

    def routes(ops: bool) -> str:
        return ", ".join(
            f"{route.key(i)}{' (digest)' if route.mode == 'digest' else ''} → "
            + " + ".join(shown(c) for c in route.channels)
            for i, route in enumerate(config.routes)
            if route.ops == ops
        )

    return (
        f"{_count(len(enabled), 'source')} ({sources or 'none enabled'}), "
        f"{_count(matcher.rule_count, 'rule')}; "
        f"alerts: {routes(False) or 'no route (stories are kept, not sent)'}; "
        f"ops: {routes(True) or 'none (nobody hears of broken sources or failed sends)'}; "
        f"database {database}; "
        + (f"metrics on {metrics_address}" if metrics_address else "metrics off")
    )


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def config_warnings(loaded: LoadedConfig, matcher: Any) -> list[str]:
    """The warnings `watcher check` prints, for the start-up and reload logs."""
    no_rules = (
        []
        if matcher.rule_count
        else ["no enabled rule: no story is made, so no alert will be sent (see docs/rules.md)"]
    )
    channels = loaded.config.channels
    unreadable = [
        f"channel {channels[i].id!r}: {what}: its alerts will fail"
        for i, what in unreadable_channels(loaded.config)
    ]
    return [*loaded.warnings, *no_rules, *unreadable, *nobody_hears(loaded.config)]


def url_hash(channel_id: str, url: str) -> str:
    """What tells a channel's URL from its next one: a hash salted with the channel's id."""
    import hashlib

    return hashlib.sha256(f"{channel_id}\n{url}".encode()).hexdigest()[:32]


def _file_id(path: Path) -> tuple[int, int] | None:
    """A file's identity (device, inode); None when there is no file at `path`, and (0, 0)
    when that cannot be told (a folder on the way not searchable): not taken for gone."""
    try:
        found = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return (0, 0)
    return found.st_dev, found.st_ino


def run_daemon(
    config_path: str,
    loaded: LoadedConfig,
    store: Store,
    matcher: Any,
    *,
    metrics_address: str | None,
    database_url: str,
) -> int:
    """Write the PID file, run until stopped, clean up (the caller holds the InstanceLock);
    the exit code (1: the daemon stopped itself, having logged why)."""
    pid = pid_file(loaded, database_url)
    database = shown_database(database_url)
    written: Path | None = pid
    try:
        pid.parent.mkdir(parents=True, exist_ok=True)
        pid.write_text(f"{os.getpid()}\ndatabase {database}\n")
    except OSError as exc:
        written = None
        log.warning(
            "cannot write %s: %s (watcher reload will not find this daemon; set "
            "settings.state_dir to a writable folder)",
            pid,
            exc.strerror or exc,
            extra={"action": "start"},
        )
    try:
        daemon = Daemon(
            config_path=config_path,
            loaded=loaded,
            store=store,
            matcher=matcher,
            metrics_address=metrics_address,
            database=database,
            pid_path=written,
            database_file=sqlite_file(database_url),
        )
        asyncio.run(daemon.run())
        return daemon.exit_code
    finally:
        try:
            if pid.read_text().split("\n", 1)[0].strip() == str(os.getpid()):
                pid.unlink()
        except OSError:
            pass
