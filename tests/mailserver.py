"""A real SMTP server in the test process (aiosmtpd) that keeps what it receives, and can
misbehave the ways mail servers do.

Usage::

    with MailServer() as mail:
        url = mail.apprise_url("alerts@example.org")   # mailto://… for apprise
        ...
        (message,) = mail.messages                     # email.message.EmailMessage
        mail.stop(); mail.start()                      # down for a while, then up (same port)
        mail.refuse = True                             # up, but every recipient gets a 550
        mail.rcpt_replies["gone@example.org"] = "550 5.1.1 no such mailbox"  # one recipient
        mail.data_reply = "451 4.3.0 try again later"  # the message is not taken
        mail.data_delay = 2.0                          # takes it, answers 250 2 s later
        mail.cut_after_data = True                     # takes it, drops the connection
"""

from __future__ import annotations

import asyncio
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
        reply = self.server.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        if self.server.data_reply is not None:
            return self.server.data_reply  # not taken
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.server.lock:
            self.server.messages.append(message)  # type: ignore[arg-type]
            self.server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.server.cut_after_data:
            smtp.transport.close()  # kept, but the client never hears so
            return "250 OK"
        if self.server.data_delay:
            await asyncio.sleep(self.server.data_delay)  # a content filter, say
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
        #: The reply to RCPT for these recipients (the others are taken).
        self.rcpt_replies: dict[str, str] = {}
        #: The reply at the end of DATA instead of taking the message ("451 …", "421 …").
        self.data_reply: str | None = None
        #: Seconds between taking the message and answering 250.
        self.data_delay = 0.0
        #: Take the message, then close the connection without answering.
        self.cut_after_data = False
        self._controller: Controller | None = None

    def received(self, address: str) -> int:
        """How many messages reached this recipient."""
        with self.lock:
            return sum(address in rcpts for _, rcpts in self.envelopes)

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

    def apprise_url(self, to: str = "alerts@example.org", **params: str) -> str:
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        return (
            f"mailto://127.0.0.1:{self.port}?from=watcher@example.org&to={to}&mode=insecure{extra}"
        )
