"""The address policy: no fetch (configured URL, redirect, article page, retry) reaches a
loopback, private, link-local or metadata address unless `allow_private_addresses` is set.

No test here sends a packet beyond loopback. Names resolve through a stub (`resolver`), and
every connection goes through a stub (`connections`) that lets only loopback through, maps the
made-up public address PUBLIC onto the loopback test server (so a "public" host can redirect),
and refuses anything else without touching the network.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

import httpcore
import pytest

from tests.helpers import ROOT, config_for, cycle, rss
from tests.httpserver import FeedServer
from watcher.config import Settings
from watcher.fetch import Fetcher, FetchLimits, FetchRequest, address_kind
from watcher.store import Store

#: A public address (example.com's), never contacted: `connections` maps it onto loopback.
PUBLIC = "93.184.215.14"

HINT = "; set settings.allow_private_addresses to allow it"


@dataclass
class Resolver:
    """socket.getaddrinfo for made-up names: each name answers its next list of addresses
    (the last one again when the list runs out); numeric hosts are parsed, never looked up."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.answers:  # a numeric form ("2130706433"), or a name we refuse
            return REAL_GETADDRINFO(name, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        self.asked.append(name)
        queue = self.answers[name]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        infos = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr: tuple[Any, ...] = (
                (address, port) if ":" not in address else (address, port, 0, 0)
            )
            infos.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return infos


REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    stub = Resolver(
        {
            "metadata.example": [["169.254.169.254"]],
            "intranet.example": [["10.1.2.3"]],
            "cgnat.example": [["100.64.1.1"]],
            "mixed.example": [[PUBLIC, "10.0.0.5"]],  # every address is checked
            "mapped.example": [["::ffff:127.0.0.1"]],
            "news.example": [[PUBLIC]],
        }
    )
    monkeypatch.setattr(socket, "getaddrinfo", stub)
    return stub


@dataclass
class Connections:
    """Every connect the fetcher's network backend made: (host, port)."""

    made: list[tuple[str, int]] = field(default_factory=list)
    #: Refuse PUBLIC instead of mapping it onto loopback (an unreachable public host).
    public_unreachable: bool = False


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Connections:
    record = Connections()
    real: Callable[..., Any] = httpcore.AnyIOBackend.connect_tcp

    async def connect_tcp(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        record.made.append((host, port))
        if host == PUBLIC and not record.public_unreachable:
            host = "127.0.0.1"
        if not ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"test: {host} is not loopback; nothing was sent")
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    return record


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        s.route("/feed", body=rss([("A", "https://e.org/a")]))
        yield s


async def fetch(url: str, **limits: Any):
    async with Fetcher(FetchLimits(retries=0, **limits)) as fetcher:
        return await fetcher.fetch(FetchRequest(source_id="s", url=url))


# --------------------------------------------------------------------------- what is refused

KINDS = {
    "127.0.0.1": "a loopback address",
    "127.9.9.9": "a loopback address",
    "::1": "a loopback address",
    "::ffff:127.0.0.1": "a loopback address",  # IPv4-mapped IPv6
    "::ffff:10.0.0.1": "a private address",
    "2002:7f00:1::": "a loopback address",  # 6to4 of 127.0.0.1
    "64:ff9b::a9fe:a9fe": "a cloud metadata address",  # NAT64 of 169.254.169.254
    "0.0.0.0": "an unspecified address",
    "0.1.2.3": "an unspecified address",
    "::": "an unspecified address",
    "10.1.2.3": "a private address",
    "172.16.0.1": "a private address",
    "192.168.1.1": "a private address",
    "fd00::1": "a private address",
    "fc00::1": "a private address",
    "fec0::1": "a private address",  # site-local (deprecated)
    "169.254.169.254": "a cloud metadata address",
    "169.254.170.2": "a cloud metadata address",
    "fd00:ec2::254": "a cloud metadata address",
    "100.100.100.200": "a cloud metadata address",
    "168.63.129.16": "a cloud metadata address",
    "169.254.1.1": "a link-local address",
    "fe80::1": "a link-local address",
    "224.0.0.1": "a multicast address",
    "ff02::1": "a multicast address",
    "100.64.0.1": "a shared (carrier-grade NAT) address",
    "100.127.255.254": "a shared (carrier-grade NAT) address",
    "240.0.0.1": "a reserved address",
    "255.255.255.255": "a reserved address",
    "192.0.2.1": "a reserved address",  # documentation
    "198.18.0.1": "a reserved address",  # benchmarking
    "2001:db8::1": "a reserved address",
    "::127.0.0.1": "a reserved address",  # IPv4-compatible (deprecated)
    "2001::1": "a reserved address",  # Teredo
    "4000::1": "a reserved address",  # outside 2000::/3
    PUBLIC: None,
    "1.1.1.1": None,
    "2606:4700:4700::1111": None,
    "2002:5db8:d70e::1": None,  # 6to4 of a public address
}


@pytest.mark.parametrize(("address", "kind"), KINDS.items(), ids=list(KINDS))
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(ip_address(address)) == kind


@pytest.mark.parametrize(
    ("url", "line"),
    [
        ("http://127.0.0.1:{port}/feed", f"refused: 127.0.0.1 is a loopback address{HINT}"),
        (
            "http://[::ffff:127.0.0.1]:{port}/feed",
            f"refused: ::ffff:127.0.0.1 is a loopback address{HINT}",
        ),
        # numeric forms httpx takes for names: the resolver's answer is what is checked
        (
            "http://2130706433:{port}/feed",
            f"refused: 2130706433 resolves to 127.0.0.1, a loopback address{HINT}",
        ),
        (
            "http://0x7f000001:{port}/feed",
            f"refused: 0x7f000001 resolves to 127.0.0.1, a loopback address{HINT}",
        ),
        (
            "http://127.1:{port}/feed",
            f"refused: 127.1 resolves to 127.0.0.1, a loopback address{HINT}",
        ),
        (
            "http://mapped.example:{port}/feed",
            f"refused: mapped.example resolves to {ip_address('::ffff:127.0.0.1')}, "
            f"a loopback address{HINT}",
        ),
        (
            "http://0.0.0.0:{port}/feed",
            "refused: 0.0.0.0 is an unspecified address (never fetched, whatever the settings)",
        ),
        (
            "http://[::]:{port}/feed",
            "refused: :: is an unspecified address (never fetched, whatever the settings)",
        ),
        (
            "http://metadata.example/latest/meta-data/",
            f"refused: metadata.example resolves to 169.254.169.254, a cloud metadata address"
            f"{HINT}",
        ),
        (
            "http://intranet.example/",
            f"refused: intranet.example resolves to 10.1.2.3, a private address{HINT}",
        ),
        (
            "https://cgnat.example/",
            f"refused: cgnat.example resolves to 100.64.1.1, a shared (carrier-grade NAT) "
            f"address{HINT}",
        ),
        (
            "http://mixed.example/",
            f"refused: mixed.example resolves to 10.0.0.5, a private address{HINT}",
        ),
    ],
)
async def test_refused_before_any_connection(
    url: str, line: str, resolver: Resolver, connections: Connections, server: FeedServer
) -> None:
    result = await fetch(url.format(port=server.port))
    assert result.error == line
    assert result.status == 0 and result.attempts == 1  # a refusal is not retried
    assert connections.made == []
    assert server.requests == []


async def test_unspecified_and_multicast_stay_refused_when_private_is_allowed(
    resolver: Resolver, connections: Connections, server: FeedServer
) -> None:
    result = await fetch(f"http://0.0.0.0:{server.port}/feed", allow_private=True)
    assert result.error is not None and result.error.startswith("refused: 0.0.0.0 is")
    assert connections.made == [] and server.requests == []


async def test_loopback_is_refused_by_default_and_fetched_when_allowed(
    resolver: Resolver, connections: Connections, server: FeedServer
) -> None:
    refused = await fetch(server.url("/feed"))
    assert refused.error == f"refused: 127.0.0.1 is a loopback address{HINT}"
    assert server.requests == []
    allowed = await fetch(server.url("/feed"), allow_private=True)
    assert allowed.ok and allowed.body == rss([("A", "https://e.org/a")])
    assert connections.made == [("127.0.0.1", server.port)]
    assert len(server.hits("/feed")) == 1


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    ("location", "line"),
    [
        ("http://127.0.0.1:{port}/feed", "refused: redirected to 127.0.0.1, a loopback address"),
        (
            "http://intranet.example:{port}/feed",
            "refused: redirected to intranet.example, which resolves to 10.1.2.3, "
            "a private address",
        ),
        (
            "http://metadata.example/latest/meta-data/",
            "refused: redirected to metadata.example, which resolves to 169.254.169.254, "
            "a cloud metadata address",
        ),
    ],
    ids=["loopback", "private", "metadata"],
)
async def test_a_redirect_into_the_network_is_refused_and_its_target_recorded(
    location: str,
    line: str,
    resolver: Resolver,
    connections: Connections,
    server: FeedServer,
) -> None:
    target = location.format(port=server.port)
    server.route("/go", status=302, headers={"Location": target}, body=b"")
    result = await fetch(f"http://news.example:{server.port}/go")
    assert result.error == line + HINT
    assert result.final_url == target
    assert len(server.hits("/go")) == 1  # reached as news.example, through PUBLIC
    assert server.hits("/feed") == []
    assert connections.made == [(PUBLIC, server.port)]


async def test_the_final_url_of_a_redirect_is_recorded(
    resolver: Resolver, connections: Connections, server: FeedServer
) -> None:
    server.route("/old", status=301, headers={"Location": "/moved"}, body=b"")
    server.route("/moved", status=302, headers={"Location": "/feed"}, body=b"")
    result = await fetch(f"http://news.example:{server.port}/old")
    assert result.ok
    assert result.final_url == f"http://news.example:{server.port}/feed"
    assert result.moved_to == f"http://news.example:{server.port}/moved"


# --------------------------------------------------------------------------- rebinding


async def test_a_name_is_resolved_once_per_connection_and_the_checked_address_used(
    resolver: Resolver, connections: Connections, server: FeedServer
) -> None:
    """DNS rebinding: public for the check, loopback for the connection. The backend
    connects to the address it checked, so the second answer is never used for it."""
    resolver.answers["rebind.example"] = [[PUBLIC], ["127.0.0.1"]]
    first = await fetch(f"http://rebind.example:{server.port}/feed")
    assert first.ok  # PUBLIC, which the test maps onto the loopback server
    assert resolver.asked == ["rebind.example"]
    assert connections.made == [(PUBLIC, server.port)]  # an address, not the name
    second = await fetch(f"http://rebind.example:{server.port}/feed")  # a new connection
    assert second.error == (
        f"refused: rebind.example resolves to 127.0.0.1, a loopback address{HINT}"
    )
    assert connections.made == [(PUBLIC, server.port)]
    assert len(server.hits("/feed")) == 1


async def test_a_retry_is_checked_again(
    resolver: Resolver, connections: Connections, server: FeedServer
) -> None:
    resolver.answers["rebind.example"] = [[PUBLIC], ["127.0.0.1"]]
    connections.public_unreachable = True
    async with Fetcher(FetchLimits(retries=2, retry_base=0.01)) as fetcher:
        result = await fetcher.fetch(
            FetchRequest(source_id="s", url=f"http://rebind.example:{server.port}/feed")
        )
    assert result.error == (
        f"refused: rebind.example resolves to 127.0.0.1, a loopback address{HINT} "
        "(after 2 attempts)"
    )
    assert connections.made == [(PUBLIC, server.port)]
    assert server.requests == []


# --------------------------------------------------------------------------- polls


def test_a_refusal_is_a_failed_poll_with_its_reason(
    store: Store, resolver: Resolver, connections: Connections, server: FeedServer
) -> None:
    source = {"id": "s", "kind": "feed", "url": server.url("/feed"), "interval": "5m"}
    config = config_for([source], allow_private_addresses=False)
    reports, _ = cycle(config, store)
    line = f"refused: 127.0.0.1 is a loopback address{HINT}"
    assert reports["s"].outcome == "failed" and reports["s"].error == line
    state = store.source_states()["s"]
    assert state.last_error == line and state.consecutive_failures == 1
    assert server.requests == [] and connections.made == []


def test_article_pages_in_the_network_are_not_fetched(
    store: Store, resolver: Resolver, connections: Connections, server: FeedServer
) -> None:
    """A public feed (news.example) links items to loopback and intranet pages."""
    page = b"<html><body><article>" + b"<p>Long enough article text here.</p>" * 20
    server.route("/art", body=page + b"</article></body></html>", content_type="text/html")
    route = server.route("/f", body=rss([("Old", "https://e.org/old")]))
    source = {
        "id": "s",
        "kind": "feed",
        "url": f"http://news.example:{server.port}/f",
        "interval": "5m",
        "fetch_article": True,
        "robots": False,
    }
    config = config_for([source], allow_private_addresses=False)
    cycle(config, store)  # the baseline
    route.body = rss(
        [
            ("Loopback", server.url("/art")),
            ("Intranet", f"http://intranet.example:{server.port}/art"),
            ("Public", f"http://news.example:{server.port}/art"),
        ]
    )
    reports, _ = cycle(config, store)
    assert reports["s"].outcome == "ok" and reports["s"].new == 3
    texts = {i.title: i.text for i in store.iter_items()}
    assert texts["Loopback"] == "Loopback lead" and texts["Intranet"] == "Intranet lead"
    assert "Long enough article text" in texts["Public"]
    assert len(server.hits("/art")) == 1  # the public one only
    assert {host for host, _ in connections.made} == {PUBLIC}


# --------------------------------------------------------------------------- settings


def test_the_setting_is_off_by_default_and_reaches_the_fetcher() -> None:
    assert FetchLimits().allow_private is False
    assert FetchLimits.from_settings(Settings()).allow_private is False
    allowed = config_for([], allow_private_addresses=True).settings
    assert FetchLimits.from_settings(allowed).allow_private is True


def test_no_shipped_config_allows_private_addresses() -> None:
    shipped = [ROOT / "sources.yaml", *(ROOT / "deploy").rglob("*"), *ROOT.glob("examples/**/*")]
    enabling = re.compile(r"allow_private_addresses\s*:\s*(true|yes|on)\b", re.IGNORECASE)
    for path in shipped:
        if path.is_file():
            assert not enabling.search(path.read_text(errors="replace")), path
