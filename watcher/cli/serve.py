"""`watcher serve`: the web pages, feeds and API."""

from __future__ import annotations

from typing import Any

import click

from watcher import log as logsetup
from watcher.cli.base import Context, cli, fail, log, pass_ctx


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
    "?token=TOKEN once, which sets a cookie). With --behind-proxy: a valid token gets in "
    "from anywhere.",
)
@click.option(
    "--behind-proxy",
    metavar="ADDRESS[,ADDRESS]",
    help="The IP address(es) or networks (10.0.0.2, 10.0.0.0/24) of the authenticating proxy "
    "in front: only connections from there are served, and only with the user header the "
    "proxy sets (--proxy-user-header); any other client gets 403 (401 with --token-env: the "
    "token gets in). X-Forwarded-For and the like are never trusted.",
)
@click.option(
    "--proxy-user-header",
    metavar="HEADER",
    help="The header in which the proxy names the signed-in user "
    "(default X-Forwarded-User); a request from the proxy without it gets 401.",
)
@pass_ctx
def serve(
    ctx: Context,
    address: str,
    token_env: str | None,
    behind_proxy: str | None,
    proxy_user_header: str | None,
) -> None:
    """Serve the web pages (stories timeline, story pages, search, sources, rules), the
    Atom and JSON feeds (/feed.atom, /feed.json) and the read-only API (/openapi.json).

    SIGHUP (kill -HUP PID) re-reads sources.yaml; an invalid file is refused in the log and
    the pages go on as they were."""
    import errno
    import ipaddress
    import os

    from watcher import web
    from watcher.config.models import address_problem
    from watcher.web.base import (
        DEFAULT_PROXY_USER_HEADER,
        Network,
        check_user_header,
        parse_proxies,
    )

    if problem := address_problem(address):
        fail(f"--address: {problem}", code=2)
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    proxies: tuple[Network, ...] = ()
    if behind_proxy is not None:
        try:
            proxies = parse_proxies(behind_proxy)
        except ValueError as exc:
            fail(f"--behind-proxy {behind_proxy}: {exc}", code=2)
    if proxy_user_header is not None and not proxies:
        fail("--proxy-user-header needs --behind-proxy (the proxy that sets it)", code=2)
    user_header = proxy_user_header or DEFAULT_PROXY_USER_HEADER
    try:
        check_user_header(user_header)
    except ValueError as exc:
        fail(f"--proxy-user-header {user_header}: {exc}", code=2)
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
    if not loopback and not token and not proxies:
        fail(
            f"refusing to serve on {host} without a token: add --token-env VAR, or "
            "--behind-proxy ADDRESS when an authenticating proxy is in front",
            code=2,
        )
    config = ctx.config().config
    try:
        sock = web.listen(host, int(port))
    except OSError as exc:
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
        fail(f"cannot serve on {address}: {why}")
    with ctx.open_store(existing=True) as store:
        shown_host = f"[{host}]" if ":" in host else host
        base_url = f"http://{shown_host}:{port}"
        app = web.create_app(
            store,
            config,
            token=token,
            proxies=proxies,
            proxy_user_header=user_header,
            base_url=base_url,
        )
        if proxies and not config.settings.public_url:
            log.warning(
                "settings.public_url is not set: feed links point at %s, the address served "
                "on, not at the proxy",
                base_url,
                extra={"action": "serve"},
            )
        behind = (
            f" behind the proxy at {', '.join(str(p) for p in proxies)} (user in {user_header})"
            if proxies
            else ""
        )
        log.info("serving on %s%s", base_url, behind, extra={"action": "serve"})
        _reload_on_sighup(ctx, app.state.web, config.settings.timezone)
        web.serve(app, sock)


def _reload_on_sighup(ctx: Context, site: Any, zone: str) -> None:
    """SIGHUP re-reads sources.yaml, as the daemon's does (`kill -HUP PID`, or systemd's
    `ExecReload`): the pages show a source added since by its name. An invalid file is refused
    in one log line per problem and a last line naming the configuration still served (when it
    was read), and that configuration stays. The file is read in a
    thread: a signal handler must not hold the server's loop."""
    import signal
    import threading
    from datetime import UTC, datetime

    #: When the configuration served was read, and its zone (for the refusal's last line).
    running: list[Any] = [datetime.now(UTC), zone]

    def reload() -> None:
        from watcher.config import load_config
        from watcher.errors import ConfigError

        try:
            loaded = load_config(ctx.config_path)
        except ConfigError as exc:
            problems = list(exc.problems)
        except Exception as exc:  # never let a reload take the server down
            problems = [logsetup.one_line(exc)]
        else:
            problems = []
        if problems:
            at, zone = running
            logsetup.reload_refused(log, problems, ctx.config_path, at, zone)
            return
        logsetup.add_secrets(loaded.secrets)
        site.reload(loaded.config)
        running[:] = [datetime.now(UTC), loaded.config.settings.timezone]
        log.info(
            "reloaded %s: %d sources",
            ctx.config_path,
            len(loaded.config.sources),
            extra={"action": "reload"},
        )

    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload, daemon=True).start())
