"""`watcher serve`: the web pages, feeds and API."""

from __future__ import annotations

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
        shown_host = f"[{host}]" if ":" in host else host
        app = web.create_app(store, config, token=token, base_url=f"http://{shown_host}:{port}")
        log.info("serving on http://%s:%s", host, port, extra={"action": "serve"})
        web.serve(app, host, int(port))
