"""Logs: one line per event, text or JSON, secrets and URL credentials redacted."""

from __future__ import annotations

import json
import logging

import apprise
import pytest

from watcher.log import JsonFormatter, RedactingFilter, TextFormatter


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("watcher", logging.ERROR, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_secrets_and_url_credentials_are_redacted() -> None:
    f = RedactingFilter(["tok-123456"])
    record = _record(
        "send to %s failed: %s", "tgram://tok-123456/1", "mailtos://user:pw@smtp.example.org"
    )
    assert f.filter(record)
    assert record.getMessage() == "send to tgram://***/1 failed: mailtos://***@smtp.example.org"


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (
            "database postgresql+psycopg://u@db:1/x?password=DbPaSs77: connection failed",
            "database postgresql+psycopg://***@db:1/x?password=***: connection failed",
        ),
        (
            "postgresql://db/x?sslmode=require&sslpassword=k3y&PASSWORD=p;x",
            "postgresql://db/x?sslmode=require&sslpassword=***&PASSWORD=***;x",
        ),
        ("https://e.org/f?api_key=abc123#top", "https://e.org/f?api_key=***#top"),
        ("https://e.org/f?access_token=t0k&page=2", "https://e.org/f?access_token=***&page=2"),
        ("https://e.org/f?passage=3&compass=n", "https://e.org/f?passage=3&compass=n"),
    ],
    ids=["password", "sslpassword", "api-key", "token", "not-secret-names"],
)
def test_a_secret_named_query_parameter_is_redacted(line: str, shown: str) -> None:
    f = RedactingFilter()
    assert f.redact(line) == shown
    assert f.redact_whole(line) == shown
    record = _record("%s", line)
    f.filter(record)
    assert record.getMessage() == shown


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_context_fields_are_redacted_like_the_message(formatter: logging.Formatter) -> None:
    f = RedactingFilter(["SeCrEtApIkEy123"])
    record = _record(
        "stored %s",
        "it",
        item="http://127.0.0.1/api?key=SeCrEtApIkEy123",
        source="s",
        channel="mailto://u:pw@smtp.example.org",
        route="r?password=DbPaSs77",
        alert=7,
    )
    assert f.filter(record)
    line = formatter.format(record)
    for secret in ("SeCrEtApIkEy123", ":pw@", "DbPaSs77"):
        assert secret not in line, line
    assert "api?key=***" in line and "mailto://***@smtp" in line and "password=***" in line
    assert "source" in line and "7" in line


def test_json_line_carries_context() -> None:
    record = _record("poll failed", source="yonhap-en", action="poll")
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["message"] == "poll failed" and data["source"] == "yonhap-en"
    assert "\n" not in line


def test_text_line_carries_context() -> None:
    line = TextFormatter().format(_record("stored %d items", 3, source="dailynk-ko"))
    assert line.endswith("stored 3 items  [source=dailynk-ko]")


def _longest_piece_shown(secret: str, text: str) -> str:
    """The longest run of `secret`'s characters that `text` contains."""
    return max(
        (secret[i:j] for i in range(len(secret)) for j in range(i + 1, len(secret) + 1)),
        key=lambda piece: len(piece) if piece in text else 0,
    )


@pytest.mark.parametrize(
    ("user", "password", "host"),
    [
        ("user", "p@ss/w:rd", "smtp.example.org"),
        ("smtpuser", "SMTPPASS-p@ss/w:rd", "127.0.0.1:9"),
        ("alice", "longpassword-with@sign-and-more", "smtp.example.org"),
    ],
)
def test_a_password_with_an_at_sign_is_redacted_wherever_apprise_splits_it(
    user: str, password: str, host: str
) -> None:
    # An unencoded "@" ends the user-info for apprise: it logs the rest of the password as
    # the host and path, cut short ("mailto://user:p...p@ss/w...g"), never the whole value.
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    handler.addFilter(RedactingFilter([user, password]))
    apprise_log = logging.getLogger("apprise")
    was = apprise_log.level
    apprise_log.addHandler(handler)
    apprise_log.setLevel(logging.DEBUG)
    try:
        apprise.Apprise().add(f"mailto://{user}:{password}@{host}?to=a@example.org")
    finally:
        apprise_log.removeHandler(handler)
        apprise_log.setLevel(was)
    told = "\n".join(line for line in lines if "E-Mail" in line)
    assert "mailto" in told  # apprise did log the URL it read
    # At most three characters in a row of the password survive (apprise's own "p...p").
    assert len(_longest_piece_shown(password, told)) < 4, told
    assert user not in told


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        # cut short, as messages quote a long value
        ("bad value 'tok@1234567890abcdef/x...'", "bad value '***'"),
        ("bad value 'tok@1234567…'", "bad value '***'"),
        ("bad value 'tok...'", "bad value '***'"),
        # percent-encoded, as a URL carries it
        ("GET https://e.org/?key=tok%401234567890abcdef%2Fxyz", "GET https://e.org/?key=***"),
        # split at its "@": what a URL parser reads as the host
        ("connecting to 1234567890abcdef/xyz failed", "connecting to *** failed"),
        ("connecting to 1234567890abcdef failed", "connecting to *** failed"),
        # fewer characters tell nothing, and a short piece is left where it is a word too
        ("the to... prefix", "the to... prefix"),
        ("tokens and 123 items", "tokens and 123 items"),
    ],
)
def test_a_secret_is_redacted_cut_short_encoded_and_split(line: str, shown: str) -> None:
    f = RedactingFilter(["tok@1234567890abcdef/xyz"])
    assert f.redact(line) == shown


def test_pieces_shorter_than_five_characters_stay_where_they_are_words() -> None:
    """A secret's four-character piece ("2026") is too common to take out of a date; the
    whole value still goes, and so does a longer piece, whatever the secret's shape (a
    password can look like an e-mail address: apprise reads P@ssw0rd.2024 as the password
    P at the host ssw0rd.2024, and names that host in its warnings)."""
    f = RedactingFilter(["news@2026", "P@ssw0rd.2024"])
    line = 'Date: Thu, 03 Dec 2026; news@2026; submitting email to "ssw0rd.2024"'
    assert f.redact(line) == 'Date: Thu, 03 Dec 2026; ***; submitting email to "***"'


@pytest.mark.parametrize("secret", ["p@ss w!rd", 'a"b!c', "x y'z(1);k"])
def test_a_secret_in_an_address_as_httpx_writes_it_is_redacted(secret: str) -> None:
    """httpx encodes a query its own way (a space and a quote, but not ! ' ( ) ;): the
    address a response came from is redacted in that form too, in evidence as in logs."""
    import httpx

    f = RedactingFilter([secret])
    for url in (f"https://e.org/feed?key={secret}", f"https://e.org/{secret}/feed"):
        written = str(httpx.URL(url))
        assert f.redact_whole(written) in (
            "https://e.org/feed?key=***",
            "https://e.org/***/feed",
        ), written


def test_a_record_keeps_what_the_source_sent_but_the_whole_secret() -> None:
    """Evidence is redacted of whole values only: a piece of a password that is also a word
    stays as the source sent it, while the log takes the piece out too."""
    f = RedactingFilter(["SMTPPASS-p@ss/w:rd"])
    line = "https://e.org/ss/w:rd?k=SMTPPASS-p%40ss%2Fw%3Ard"
    assert f.redact_whole(line) == "https://e.org/ss/w:rd?k=***"
    assert f.redact(line) == "https://e.org/***?k=***"


@pytest.mark.parametrize(
    "hostile",
    ["s:g1\n2026-12-03T00:00:00Z ERROR   forged line", "s:g\x1b[31mred", "s:g\u2028x\u202ey"],
)
def test_a_text_log_line_stays_one_line_whatever_a_source_sent(hostile: str) -> None:
    """An item's key (a feed's guid) or a server's error in a log line cannot start a forged
    line or send the terminal an escape: each control or format character is written out."""
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "not fetched: %s", (hostile,), None)
    record.item = hostile
    line = TextFormatter().format(record)
    assert line.isprintable() and "\n" not in line
    assert "\\n2026-12-03" in line or "\\x1b" in line or "\\u2028" in line
