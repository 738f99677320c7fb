"""`watcher serve --behind-proxy`: only the proxy's own address gets in, and only with the user
header it sets; a token gets in from anywhere; forwarded headers, which any client can write,
change nothing. Through the Starlette test client (which sets the peer address), and against
the real server process, where uvicorn must not take the peer from X-Forwarded-For."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from tests.helpers import CONFIG, Started, listening, watcher
from tests.tcpproxy import free_port
from watcher.config import Config, load_config_text
from watcher.store import Store
from watcher.web import create_app
from watcher.web.base import check_user_header, parse_proxies

TOKEN = "t0ken-for-the-proxy-tests"
PROXY = "10.0.0.2"
#: A client that is not the proxy, and what it writes to pass for the proxy or a user.
SPOOFED = {
    "X-Forwarded-For": PROXY,
    "X-Real-IP": PROXY,
    "Forwarded": f"for={PROXY}",
    "X-Forwarded-User": "admin",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Config]]:
    """An empty migrated SQLite database and the web test config (who gets in does not
    depend on the data or the database)."""
    db = tmp_path_factory.mktemp("proxy") / "w.db"
    store = Store.open(f"sqlite:///{db}")
    store.upgrade()
    config = load_config_text(yaml.safe_dump(CONFIG, allow_unicode=True), "w.yaml", {}).config
    yield store, config
    store.close()


def case(
    name: str,
    peer: str,
    headers: dict[str, str] | None = None,
    *,
    status: int,
    proxies: str = PROXY,
    token: bool = False,
    user_header: str | None = None,
    query: str = "",
) -> object:
    return pytest.param(proxies, token, user_header, peer, headers or {}, query, status, id=name)


USER = {"X-Forwarded-User": "ana"}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("proxies", "token", "user_header", "peer", "headers", "query", "status"),
    [
        case("direct", "10.0.0.9", status=403),
        case("spoofed-forwarded-headers", "10.0.0.9", SPOOFED, status=403),
        case("loopback-is-not-the-proxy", "127.0.0.1", SPOOFED, status=403),
        case("not-an-address", "testclient", USER, status=403),
        case("proxy-with-user", PROXY, USER, status=200),
        case("proxy-without-user", PROXY, status=401),
        case("proxy-blank-user", PROXY, {"X-Forwarded-User": " "}, status=401),
        case("proxy-for-a-client", PROXY, {**USER, "X-Forwarded-For": "203.0.113.7"}, status=200),
        case("one-of-several", "10.1.0.77", USER, proxies=f"{PROXY},10.1.0.0/24", status=200),
        case("ipv6-proxy", "fd00::7", USER, proxies="fd00::7", status=200),
        case("ipv4-mapped-peer", f"::ffff:{PROXY}", USER, status=200),
        case("other-user-header", PROXY, USER, user_header="X-Auth-Request-User", status=401),
        case(
            "own-user-header",
            PROXY,
            {"X-Auth-Request-User": "ana"},
            user_header="X-Auth-Request-User",
            status=200,
        ),
        case("token-direct", "10.0.0.9", BEARER, token=True, status=200),
        case("token-in-query", "10.0.0.9", token=True, query=f"?token={TOKEN}", status=200),
        case("wrong-token", "10.0.0.9", {"Authorization": "Bearer x"}, token=True, status=401),
        case("no-token-spoofed", "10.0.0.9", SPOOFED, token=True, status=401),
        case("token-set-proxy-with-user", PROXY, USER, token=True, status=200),
        case("token-set-proxy-without-user", PROXY, token=True, status=401),
    ],
)
def test_who_gets_in_behind_a_proxy(
    site: tuple[Store, Config],
    proxies: str,
    token: bool,
    user_header: str | None,
    peer: str,
    headers: dict[str, str],
    query: str,
    status: int,
) -> None:
    store, config = site
    app = create_app(
        store,
        config,
        token=TOKEN if token else None,
        proxies=parse_proxies(proxies),
        **({"proxy_user_header": user_header} if user_header else {}),
    )
    with TestClient(app, client=(peer, 1234)) as c:
        for path in ("/", "/api/sources", "/feed.atom"):
            response = c.get(path + query, headers=headers)
            assert response.status_code == status, (path, response.text)
            if status == 401:  # a token configured is a token asked for
                assert ("www-authenticate" in response.headers) == token


def test_a_proxied_user_is_never_handed_the_token(site: tuple[Store, Config]) -> None:
    store, config = site
    app = create_app(store, config, token=TOKEN, proxies=parse_proxies(PROXY))
    with TestClient(app, client=(PROXY, 1234)) as c:
        response = c.get("/?token=guess", headers={"X-Forwarded-User": "ana"})
    assert response.status_code == 200
    assert TOKEN not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("oauth2-proxy", "'oauth2-proxy' is not an IP address or network"),
        ("10.0.0.2,", "'' is not an IP address or network"),
        ("10.0.0.300", "'10.0.0.300' is not an IP address or network"),
        ("0.0.0.0/0", "0.0.0.0/0 would trust every address"),
        ("::/0", "::/0 would trust every address"),
    ],
)
def test_a_proxy_is_named_by_address(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.").replace("*", r"\*")):
        parse_proxies(text)


def test_a_proxy_address_list() -> None:
    assert [str(n) for n in parse_proxies(" 10.0.0.2 , 10.1.0.9/24,fd00::7")] == [
        "10.0.0.2/32",
        "10.1.0.0/24",
        "fd00::7/128",
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("X-Forwarded-For", "X-Forwarded-For says where a request came from, not who sent it"),
        ("host", "host says where"),
        ("X User", "'X User' is not a header name"),
    ],
)
def test_the_user_header_must_name_a_user(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_user_header(name)
    assert check_user_header("Remote-User") == "Remote-User"


# --------------------------------------------------------------------------- the real server


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--behind-proxy", "oauth2-proxy"],
            "error: --behind-proxy oauth2-proxy: 'oauth2-proxy' is not an IP address or network",
        ),
        (
            ["--behind-proxy", "10.0.0.2", "--proxy-user-header", "X-Forwarded-For"],
            "error: --proxy-user-header X-Forwarded-For: X-Forwarded-For says where",
        ),
        (["--proxy-user-header", "Remote-User"], "error: --proxy-user-header needs --behind-proxy"),
        (["--address", "0.0.0.0:8080"], "error: refusing to serve on 0.0.0.0 without a token"),
    ],
    ids=["a-name", "forwarded-header", "header-alone", "public-unprotected"],
)
def test_serve_refuses_bad_options_in_one_line(args: list[str], error: str) -> None:
    result = watcher("serve", *args)  # refused before the config or database is read
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(error), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@contextmanager
def _serving(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`watcher serve` on 127.0.0.1 as an operator starts it; yields its address."""
    port = free_port()
    name = f"w{port}"
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG, allow_unicode=True))
    db = f"sqlite:///{tmp_path / name}.db"
    made = Store.open(db)  # serve reads an existing database; it never creates one
    made.upgrade()
    made.close()
    address = f"127.0.0.1:{port}"
    server = Started(
        "--config", str(cfg), "--db", db, "serve", "--address", address, *args, env=env
    )

    try:
        server.wait(lambda: listening(port), "watcher serve to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.mark.e2e
def test_the_real_server_trusts_the_socket_peer_not_forwarded_headers(tmp_path: Path) -> None:
    with ExitStack() as stack:
        # this test is the proxy (127.0.0.1) …
        proxied = stack.enter_context(_serving(tmp_path, "--behind-proxy", "127.0.0.1"))
        # … and here a client that is not (the proxy is elsewhere); a token is configured
        direct = stack.enter_context(
            _serving(
                tmp_path,
                "--behind-proxy",
                "10.9.9.9",
                "--token-env",
                "PROXY_TEST_TOKEN",
                env={"PROXY_TEST_TOKEN": TOKEN},
            )
        )
        with httpx.Client(timeout=10) as http:
            # from the proxy: the user header gets in, whatever X-Forwarded-For says
            user = {"X-Forwarded-User": "ana", "X-Forwarded-For": "203.0.113.7"}
            assert http.get(f"{proxied}/api/sources", headers=user).status_code == 200
            assert http.get(f"{proxied}/api/sources").status_code == 401
            # not from the proxy: posing as it is refused; the token still gets in
            spoofed = {**SPOOFED, "X-Forwarded-For": "10.9.9.9", "Forwarded": "for=10.9.9.9"}
            assert http.get(f"{direct}/").status_code == 401
            assert http.get(f"{direct}/", headers=spoofed).status_code == 401
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert http.get(f"{direct}/api/sources", headers=bearer).status_code == 200


@pytest.mark.e2e
def test_serve_rereads_sources_yaml_on_sighup_and_refuses_an_invalid_one(
    tmp_path: Path,
) -> None:
    port = free_port()
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG, allow_unicode=True))
    db = f"sqlite:///{tmp_path / 'w.db'}"
    made = Store.open(db)
    made.upgrade()
    made.close()
    server = Started("--config", str(cfg), "--db", db, "serve", "--address", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/sources"
    try:
        server.wait(lambda: listening(port), "watcher serve to listen")
        with httpx.Client(timeout=10) as http:
            assert "NK Pro Wire" not in http.get(url).text
            added = {"id": "nkpro", "name": "NK Pro Wire", "kind": "feed", "url": "https://e.org/n"}
            cfg.write_text(
                yaml.safe_dump(
                    {**CONFIG, "sources": [*CONFIG["sources"], added]}, allow_unicode=True
                )
            )
            os.kill(server.pid, signal.SIGHUP)
            server.wait(lambda: "NK Pro Wire" in http.get(url).text, "the new source's name")
            assert server.having("reloaded") and not server.having("Traceback")
            # a broken file is refused in one line; what is served stays
            cfg.write_text(cfg.read_text().replace("kind: feed", "kind: fede", 1))
            os.kill(server.pid, signal.SIGHUP)
            server.wait(lambda: server.having("reload refused"), "the refusal")
            server.wait(lambda: server.having("still running"), "the line naming what runs")
            refused, still = server.having("reload refused")
            assert "fede" in refused and str(cfg) in refused
            assert f"1 problem in {cfg}; still running the configuration loaded at 20" in still
            page = http.get(url)
            assert page.status_code == 200 and "NK Pro Wire" in page.text
    finally:
        server.stop()
