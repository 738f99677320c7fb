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


def test_pieces_of_an_address_or_a_short_secret_are_not_redacted_where_they_are_words() -> None:
    """An e-mail address in a variable (a recipient) is never a URL's user-info: its domain
    stays in the lines that name it; a secret's pieces of four characters ("2026") are too
    common to take out of a date. The whole values still go."""
    f = RedactingFilter(["alerts@example.org", "news@2026"])
    line = "Date: Thu, 03 Dec 2026; GET https://example.org/a; to alerts@example.org; news@2026"
    assert f.redact(line) == "Date: Thu, 03 Dec 2026; GET https://example.org/a; to ***; ***"


def test_a_record_keeps_what_the_source_sent_but_the_whole_secret() -> None:
    """Evidence is redacted of whole values only: a piece of a password that is also a word
    stays as the source sent it, while the log takes the piece out too."""
    f = RedactingFilter(["SMTPPASS-p@ss/w:rd"])
    line = "https://e.org/ss/w:rd?k=SMTPPASS-p%40ss%2Fw%3Ard"
    assert f.redact_whole(line) == "https://e.org/ss/w:rd?k=***"
    assert f.redact(line) == "https://e.org/***?k=***"
