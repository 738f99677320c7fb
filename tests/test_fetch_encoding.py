"""Compressed bodies: gzip and deflate are inflated in bounded steps against a real local
server, so the body cap holds for what a body inflates to: a gzip bomb (a few MB of zeros
that grow a thousandfold) is refused at the cap without ever being inflated whole."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest

from tests.helpers import rss
from tests.httpserver import FeedServer
from watcher.fetch import Fetcher, FetchLimits, FetchRequest

FEED = rss([("North Korean defectors repatriated", "https://e.org/1")])


def _deflate(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def bomb(megabytes: int) -> bytes:
    """`megabytes` MiB of zeros, gzipped (about a thousandth of that)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(megabytes)) + packer.flush()


async def fetch(server: FeedServer, path: str, **limits: int) -> object:
    async with Fetcher(FetchLimits(allow_private=True, retries=0, **limits)) as fetcher:
        return await fetcher.fetch(FetchRequest(source_id="s", url=server.url(path)))


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(FEED)),
        ("x-gzip", gzip.compress(FEED)),
        ("deflate", _deflate(FEED, 15)),  # zlib-wrapped, as the RFC says
        ("deflate", _deflate(FEED, -15)),  # raw, as some servers send it
        ("gzip, deflate", _deflate(gzip.compress(FEED), 15)),  # applied in this order
        ("identity", FEED),
    ],
    ids=["gzip", "x-gzip", "deflate", "raw-deflate", "gzip-then-deflate", "identity"],
)
async def test_a_compressed_body_arrives_as_sent(encoding: str, body: bytes) -> None:
    with FeedServer() as server:
        server.route("/feed", body=body, headers={"Content-Encoding": encoding})
        result = await fetch(server, "/feed")
        (hit,) = server.requests
    assert result.error is None and result.body == FEED  # type: ignore[attr-defined]
    assert hit.headers["Accept-Encoding"] == "gzip, deflate"  # nothing it cannot inflate


async def test_a_corrupt_gzip_body_is_one_line() -> None:
    with FeedServer() as server:
        server.route("/feed", body=b"\x1f\x8b not gzip", headers={"Content-Encoding": "gzip"})
        result = await fetch(server, "/feed")
    assert result.error.startswith("HTTP error: gzip: ")  # type: ignore[attr-defined]


@pytest.mark.parametrize("layers", [3, 4, 3000])
async def test_stacked_encodings_beyond_three_are_a_fetch_error(layers: int) -> None:
    """`gzip, gzip, …` thousands of times (a kilobyte's body) is refused as one fetch error,
    not a crash; three layers are still inflated."""
    body = FEED
    for _ in range(layers):
        body = gzip.compress(body, compresslevel=1, mtime=0)
    encoding = ", ".join(["gzip"] * layers)
    with FeedServer() as server:
        server.route("/feed", body=body, headers={"Content-Encoding": encoding})
        result = await fetch(server, "/feed")
    assert result.status == 200  # type: ignore[attr-defined]
    if layers == 3:
        assert result.error is None and result.body == FEED  # type: ignore[attr-defined]
    else:
        assert result.error == (  # type: ignore[attr-defined]
            f"too many content encodings ({layers}; at most 3 are decoded)"
        )


async def test_a_gzip_bomb_is_refused_at_the_cap_within_little_memory() -> None:
    # 256 KB on the wire, 256 MiB inflated: httpx inflates each network chunk whole (64 MB from
    # 64 KB), which the cap only saw after the fact; the process grew by hundreds of MB.
    payload = bomb(256)
    assert len(payload) < 512 * 1024
    with FeedServer() as server:
        server.route("/feed", body=payload, headers={"Content-Encoding": "gzip"})
        tracemalloc.start()
        try:
            result = await fetch(server, "/feed")  # the default 10 MiB cap
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.error == "response over the 10 MiB limit (stopped reading)"  # type: ignore[attr-defined]
    assert peak < 40 * 1024 * 1024, f"peak {peak / 1024 / 1024:.0f} MiB while fetching"


async def test_a_bomb_behind_an_error_status_is_read_only_so_far() -> None:
    # A 503's start is read to recognise a bot challenge: only its first bytes inflate.
    with FeedServer() as server:
        server.route("/feed", status=503, body=bomb(256), headers={"Content-Encoding": "gzip"})
        tracemalloc.start()
        try:
            result = await fetch(server, "/feed")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.status == 503  # type: ignore[attr-defined]
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1024 / 1024:.0f} MiB while fetching"
