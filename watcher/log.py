"""Logging setup: one line per event, text or JSON, with secrets and URL credentials redacted.

Records may carry `extra={"action": ..., "source": ..., "item": ..., "alert": ...}`; both formats
show those fields. The redacting filter removes every value that came from the environment
through `${VAR}` (whole, cut short, or split where a URL parser splits it) and the credentials
part of any URL (`scheme://user:pass@host`) and the value of a query parameter whose name says
it is a secret (`?password=`, `&sslpassword=`, `?api_key=`…).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from watcher.urls import redact_credentials, whole_forms

#: Fields of `extra` shown in log lines, in this order.
CONTEXT_FIELDS = ("action", "source", "item", "alert", "channel", "route")


#: The shortest piece of a secret redacted where a URL parser shows it apart from the rest.
_SHORTEST_PIECE = 5
#: The shortest beginning of a secret redacted where it is shown cut short ("abc..."): fewer
#: characters tell next to nothing of it.
_SHORTEST_CUT = 3


def secret_forms(secret: str) -> set[str]:
    """What a log line may show of `secret`: itself, percent-encoded, and the pieces a URL
    parser makes of it when it holds an ``@`` (a password ``p@ss/w:rd`` in
    ``mailto://user:p@ss/w:rd@host`` is read as password ``p``, host ``ss`` and path
    ``/w:rd@host``; apprise then logs ``mailto://user:p...p@ss/w...t``).

    Usage::

        sorted(secret_forms("hunter@2secret/x"))
        # ['2secret', '2secret/x', 'hunter', 'hunter%402secret%2Fx', 'hunter%402secret/x',
        #  'hunter@2secret/x']
    """
    forms = whole_forms(secret)
    # Whatever its shape: a password can look like an e-mail address (P@ssw0rd.2024, which
    # apprise reads as the password P at the host ssw0rd.2024, and names that host).
    if "@" in secret:
        for head, tail in (secret.split("@", 1), secret.rsplit("@", 1)):
            forms |= {head, tail, re.split(r"[/?#:]", tail, maxsplit=1)[0]}
    return {f for f in forms if len(f) >= min(_SHORTEST_PIECE, len(secret))}


class RedactingFilter(logging.Filter):
    """Replace secrets in the final message, its context fields (`CONTEXT_FIELDS`) and
    exception text with `***`: every value
    from the environment, whole, percent-encoded, in the pieces a URL parser splits it into
    (`secret_forms`) and cut short ("…" or "..." after its first characters, as apprise and
    watcher's own messages shorten long values)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.whole: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        secrets = [s for s in secrets if s]
        merged = set(self.secrets) | {f for s in secrets for f in secret_forms(s)}
        self.secrets = sorted(merged, key=len, reverse=True)
        whole = set(self.whole) | {f for s in secrets for f in whole_forms(s)}
        self.whole = sorted(whole, key=len, reverse=True)

    def redact_whole(self, text: str) -> str:
        """Only whole values (and percent-encoded ones), URL user-info and secret-named query
        values (`redact_credentials`): for what is kept as a record (evidence), where a piece
        of a secret that is also a common word (a year, a domain) must stay as the source sent
        it."""
        for secret in self.whole:
            text = text.replace(secret, "***")
        return redact_credentials(text)

    def redact(self, text: str) -> str:
        if "..." in text or "…" in text:  # first: a piece of a cut value is a form too
            for secret in self.secrets:
                text = _redact_cut(text, secret)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return redact_credentials(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        # The context is written beside the message, in both formats: an item's key is its
        # link, and a link can carry a source's key.
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _redact_cut(text: str, secret: str) -> str:
    """`text` with each beginning of `secret` that is followed by an ellipsis (a value shown
    cut short) replaced by `***`, longest first."""
    for cut in range(len(secret) - 1, _SHORTEST_CUT - 1, -1):
        for mark in ("...", "…"):
            shown = secret[:cut] + mark
            if shown in text:
                text = text.replace(shown, "***")
    return text


#: What a text log line never shows as it is: control and format characters (a line break, an
#: escape sequence, a bidi override). A value from a source (an item's key, a server's error)
#: could otherwise start a forged line of its own or recolour the operator's terminal.
_UNSHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """`text` with each control or format character written as its escape (`\\n`,
    `\\x1b`, `\\u202e`): one log line stays one line, and says what it was sent."""
    if text.isprintable():
        return text
    return _UNSHOWN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        context = " ".join(
            f"{k}={shown(str(getattr(record, k)))}"
            for k in CONTEXT_FIELDS
            if getattr(record, k, None) is not None
        )
        line = f"{when} {record.levelname:<7} {shown(record.getMessage())}"
        if context:
            line += f"  [{context}]"
        if record.exc_text:
            line += " | " + shown(record.exc_text.strip().splitlines()[-1])
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_text:
            out["error"] = record.exc_text.strip().splitlines()[-1]
        return json.dumps(out, ensure_ascii=False, default=str)


_filter = RedactingFilter()


def _nothing_from(library: str) -> logging.Filter:
    """Drop a library's records (they reach its own handlers still)."""

    class Nothing(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not (record.name == library or record.name.startswith(library + "."))

    return Nothing()


def setup(level: str = "info", fmt: str = "text", secrets: Iterable[str] = ()) -> RedactingFilter:
    """Configure the root logger to write to stderr; return the redacting filter."""
    _filter.add(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries are chatty at INFO; their warnings still show.
    for name in ("httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # A one-second job still running skips its next run, with a warning each second: while
    # the database stalls that is a flood, and the stall is told once by the daemon itself.
    logging.getLogger("apscheduler").setLevel(max(logging.ERROR, root.level))
    # apprise reports each send's failure in its result, which it collects from its own log
    # records: its logger must keep them all. Our handler shows none of them but at debug:
    # the delivery worker logs each outcome with its context (a plugin fault is a failed
    # attempt there), and apprise's own lines ("Service 'JSON' did not finish within 2.1s.",
    # "Notifying 1 service(s).") would only repeat it without saying which message.
    logging.getLogger("apprise").setLevel(logging.DEBUG)
    if root.level > logging.DEBUG:
        handler.addFilter(_nothing_from("apprise"))
    return _filter


def add_secrets(secrets: Iterable[str]) -> None:
    _filter.add(secrets)


def redact(text: str) -> str:
    return _filter.redact(text)


def redact_whole(text: str) -> str:
    """`RedactingFilter.redact_whole` with the process's secrets (evidence records)."""
    return _filter.redact_whole(text)


def one_line(exc: BaseException) -> str:
    """An exception as one redacted line (drivers put details on later lines)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return redact(lines[0] if lines else type(orig).__name__)


def reload_refused(
    log: logging.Logger, problems: Iterable[str], path: object, loaded_at: datetime, zone: str
) -> None:
    """A refused reload, as the daemon and `watcher serve` both tell it: one line per problem,
    then the one line that says nothing changed, naming the configuration that still runs (when
    it was read, in `zone`, the file's `settings.timezone`)."""
    from zoneinfo import ZoneInfo

    told = 0
    for problem in problems:
        log.error("reload refused: %s", problem, extra={"action": "reload"})
        told += 1
    at = loaded_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    log.error(
        "reload refused: %d problem%s in %s; still running the configuration loaded at %s",
        told,
        "" if told == 1 else "s",
        path,
        at,
        extra={"action": "reload"},
    )
