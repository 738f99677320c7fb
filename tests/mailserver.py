"""A real SMTP server in the test process (aiosmtpd) that keeps what it receives.

Usage::

    with MailServer() as mail:
        url = mail.apprise_url("alerts@example.org")   # mailto://… for apprise
        ...
        (message,) = mail.messages                     # email.message.EmailMessage
        mail.stop(); mail.start()                      # down for a while, then up (same port)
        mail.refuse = True                             # up, but every recipient gets a 550
"""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.tcpproxy import free_port


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, smtp: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.server.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.server.lock:
            self.server.messages.append(message)  # type: ignore[arg-type]
            self.server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class MailServer:
    def __init__(self) -> None:
        # not an ephemeral port: stopped and started again, it must still be free
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()
        #: Answer every recipient with 550 (the service refuses the message).
        self.refuse = False
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def apprise_url(self, to: str = "alerts@example.org") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=watcher@example.org&to={to}&mode=insecure"
