"""Evidence: the first-seen record of every matched report, and WARC files made from it.

    fetch ──FetchResult──▶ Capture (bytes and headers as received)
    matched item ──store.evidence.keep──▶ content-addressed blobs + one row per item and kind
    watcher evidence export ──warc_records──▶ WARC 1.1 (.warc.gz): request, response, metadata
    watcher evidence verify ──verify──▶ every digest recomputed

Advocates cite reports months later, when pages have changed or gone. What watcher keeps is
what it fetched, byte for byte: the feed response an item came in, and the article page when
it was fetched, with the response's status, final URL and header lines, the fetch time, the
text the rules read, and the SHA-256 of each. A WARC file opens in the tools web archivists
use (warcio, pywb, ReplayWeb.page); `verify` recomputes every digest in it.

The stored body is the one the HTTP client handed over: after transfer and content decoding
(gzip), never re-encoded as text. In the WARC response record the header lines that described
the encoding on the wire (Content-Encoding, Transfer-Encoding, Content-Length) are kept under
`X-Archive-Orig-…` names and Content-Length gives the stored body's length, as web archives do,
so replay tools read the payload as it is.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from io import BytesIO
from typing import IO, Any
from urllib.parse import urlsplit

from watcher import __version__
from watcher.items import published_day, published_fields

#: Header lines of the wire encoding, renamed in the WARC (the payload is stored decoded).
WIRE_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Capture:
    """One response as fetched: what evidence keeps of it."""

    #: feed (the listing, feed or API response the item came in) | article (its page)
    kind: str
    url: str
    final_url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    fetched_at: datetime
    body: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """The evidence of one report: a capture and the text the rules read, with digests."""

    item_key: str
    item_url: str | None
    title: str
    source_id: str
    story_id: int | None
    capture: Capture
    text: str
    body_sha256: str
    text_sha256: str
    #: When the outlet says it published the report (None: it gave no date), and the date as
    #: it wrote it.
    published_at: datetime | None = None
    published_raw: str | None = None
    #: When the item was first fetched: `published_at` is this time when the date the outlet
    #: gave was in the future (`items.future_date`).
    fetched_at: datetime | None = None


def _published(record: Record) -> dict[str, Any]:
    """`published`, `published_precision`, `published_day`: as the API gives them."""
    at = record.published_at.astimezone(UTC) if record.published_at else None
    fields = published_fields(at, published_day(record))
    return {"published": fields.pop("published_at"), **fields}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_bytes(title: str, text: str) -> bytes:
    """The text the rules read, as kept: the title, a blank line, the text, UTF-8."""
    return f"{title}\n\n{text}".encode()


def warc_digest(hex_digest: str) -> str:
    """`sha256:` and the digest in base 32, as WARC files conventionally write it."""
    return "sha256:" + base64.b32encode(bytes.fromhex(hex_digest)).decode("ascii")


def _digest_value(header: str) -> tuple[str, bytes] | None:
    """(algorithm, raw digest) of a WARC digest header, base 32, base 16 or base 64."""
    algorithm, _, value = header.partition(":")
    for decode in (base64.b32decode, bytes.fromhex, base64.b64decode):
        try:
            return algorithm.lower(), decode(value)
        except (ValueError, TypeError):
            continue
    return None


# --------------------------------------------------------------------------- writing


def warc_records(
    records: Iterable[Record],
    out: IO[bytes],
    *,
    gzip: bool = True,
    redact: Callable[[str], str] | None = None,
) -> int:
    """Write the records to `out` as WARC 1.1; the number of reports written.

    One response record (with its request) per distinct capture, and one metadata record per
    report that refers to it: many reports of one feed share one response. `redact` is
    applied to each capture's addresses and header values (the log's redaction: evidence
    kept before keys were redacted when stored must not publish them either)."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.utils import Digester
    from warcio.warcwriter import WARCWriter

    class _Writer(WARCWriter):  # type: ignore[misc]
        """SHA-256 block digests too (warcio's default is SHA-1)."""

        @staticmethod
        def _create_digester() -> Any:
            return Digester("sha256")

    writer = _Writer(out, gzip=gzip, warc_version="1.1")
    writer.write_record(
        writer.create_warcinfo_record(
            "watcher-evidence.warc.gz",
            {"software": f"watcher {__version__}", "format": "WARC File Format 1.1"},
        )
    )
    responses: dict[tuple[str, str], str] = {}
    count = 0
    for record in records:
        capture = record.capture
        if redact is not None:
            capture = replace(
                capture,
                url=redact(capture.url),
                final_url=redact(capture.final_url),
                headers=tuple((k, redact(v)) for k, v in capture.headers),
            )
        key = (capture.final_url, record.body_sha256)
        date = _warc_date(capture.fetched_at)
        if key not in responses:
            status = f"{capture.status} {_reason(capture.status)}"
            headers = [
                (f"X-Archive-Orig-{k}" if k.lower() in WIRE_HEADERS else k, v)
                for k, v in capture.headers
            ]
            headers.append(("Content-Length", str(len(capture.body))))
            response = writer.create_warc_record(
                capture.final_url,
                "response",
                payload=BytesIO(capture.body),
                length=len(capture.body),
                http_headers=StatusAndHeaders(status, headers, protocol="HTTP/1.1"),
                warc_headers_dict={
                    "WARC-Date": date,
                    "WARC-Payload-Digest": warc_digest(record.body_sha256),
                },
            )
            parts = urlsplit(capture.final_url)
            request = writer.create_warc_record(
                capture.final_url,
                "request",
                http_headers=StatusAndHeaders(
                    f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''}",
                    [("Host", parts.netloc), ("User-Agent", f"watcher/{__version__}")],
                    protocol="HTTP/1.1",
                    is_http_request=True,
                ),
                warc_headers_dict={"WARC-Date": date},
            )
            writer.write_request_response_pair(request, response)
            responses[key] = response.rec_headers.get_header("WARC-Record-ID")
        text = record.text
        meta = {
            "item": record.item_key,
            "item_url": record.item_url,
            "source": record.source_id,
            "story": record.story_id,
            "kind": capture.kind,
            "requested_url": capture.url,
            "fetched_at": capture.fetched_at.astimezone(UTC).isoformat(),
            # the outlet's own date (null: it gave none; never the fetch time in its place),
            # with its precision: "day" when it gave the day alone (`published` is then that
            # day's midnight where the source is, no time it gave) and that day as written
            **_published(record),
            "published_as_written": record.published_raw,
            "body_sha256": record.body_sha256,
            "text_sha256": record.text_sha256,
            "title": record.title,
            "text": text,
        }
        payload = json.dumps(meta, ensure_ascii=False, indent=1).encode()
        writer.write_record(
            writer.create_warc_record(
                capture.final_url,
                "metadata",
                payload=BytesIO(payload),
                length=len(payload),
                warc_content_type="application/json",
                warc_headers_dict={
                    "WARC-Date": date,
                    "WARC-Refers-To": responses[key],
                    "WARC-Concurrent-To": responses[key],
                },
            )
        )
        count += 1
    return count


def _warc_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# --------------------------------------------------------------------------- verifying


@dataclass(frozen=True, slots=True)
class Checked:
    records: int
    digests: int
    problems: tuple[str, ...]


def verify(stream: IO[bytes]) -> Checked:
    """Recompute every digest of a WARC file (.warc or .warc.gz): each record's block and
    payload digests, and the SHA-256 of the text each metadata record carries."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    problems: list[str] = []
    records = digests = 0
    try:
        for record in ArchiveIterator(stream, no_record_parse=True):
            records += 1
            if record.format != "warc":
                problems.append(f"record {records} is not a WARC record ({record.format})")
                continue
            rid = record.rec_headers.get_header("WARC-Record-ID") or f"record {records}"
            block = record.raw_stream.read()
            claims = [("WARC-Block-Digest", block)]
            if record.rec_type in ("response", "request"):
                _, sep, payload = block.partition(b"\r\n\r\n")
                claims.append(("WARC-Payload-Digest", payload if sep else b""))
            for header, data in claims:
                claimed = record.rec_headers.get_header(header)
                if not claimed:
                    continue
                parsed = _digest_value(claimed)
                if parsed is None or parsed[0] not in hashlib.algorithms_available:
                    problems.append(f"{rid}: {header} {claimed!r} cannot be read")
                    continue
                digests += 1
                if hashlib.new(parsed[0], data).digest() != parsed[1]:
                    problems.append(f"{rid}: {header} does not match its content")
            if record.rec_type == "metadata":
                problems += _check_text(rid, block)
                digests += 1
    except ArchiveLoadFailed as exc:
        problems.append(f"not a readable WARC file: {exc}")
    if not records and not problems:
        problems.append("no WARC records")
    return Checked(records, digests, tuple(problems))


def _check_text(rid: str, block: bytes) -> list[str]:
    try:
        meta = json.loads(block)
    except ValueError:
        return []  # another tool's metadata: only its block digest applies
    if not isinstance(meta, dict) or "text_sha256" not in meta:
        return []
    kept = text_bytes(str(meta.get("title", "")), str(meta.get("text", "")))
    if sha256(kept) != meta["text_sha256"]:
        return [f"{rid}: text does not match its text_sha256"]
    return []
