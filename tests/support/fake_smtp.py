"""A fake SMTP server for tests (asyncio, the stdlib only): EHLO, AUTH PLAIN and LOGIN (checked against one user and
password), MAIL, RCPT, DATA. It keeps every message it took, parsed, and refuses a wrong login with 535."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    message: EmailMessage
    authenticated_as: str | None


@dataclass
class FakeSmtp:
    username: str
    password: str
    messages: list[Received] = field(default_factory=list)
    refused_logins: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write((line + "\r\n").encode())
            await writer.drain()

        async def read() -> str:
            return (await reader.readline()).decode("utf-8", errors="replace").rstrip("\r\n")

        user: str | None = None
        mail_from, rcpt = "", []
        await reply("220 fake-smtp ESMTP")
        try:
            while line := await read():
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb in ("EHLO", "HELO"):
                    writer.write(b"250-fake-smtp\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                    await writer.drain()
                elif verb == "AUTH":
                    mechanism, _, initial = arg.partition(" ")
                    if mechanism.upper() == "PLAIN":
                        if not initial:
                            await reply("334 ")
                            initial = await read()
                        _, name, secret = base64.b64decode(initial).decode().split("\0")
                    else:  # LOGIN
                        await reply("334 VXNlcm5hbWU6")
                        name = base64.b64decode(await read()).decode()
                        await reply("334 UGFzc3dvcmQ6")
                        secret = base64.b64decode(await read()).decode()
                    if (name, secret) == (self.username, self.password):
                        user = name
                        await reply("235 2.7.0 authenticated")
                    else:
                        self.refused_logins += 1
                        await reply("535 5.7.8 bad credentials")
                elif verb == "MAIL":
                    if user is None:
                        await reply("530 5.7.0 authentication required")
                        continue
                    mail_from, rcpt = arg.split(":", 1)[1].split()[0].strip("<>"), []
                    await reply("250 ok")
                elif verb == "RCPT":
                    rcpt.append(arg.split(":", 1)[1].strip().strip("<>"))
                    await reply("250 ok")
                elif verb == "DATA":
                    await reply("354 end with <CRLF>.<CRLF>")
                    lines = []
                    while (data := await reader.readline()) not in (b".\r\n", b""):
                        lines.append(data[1:] if data.startswith(b"..") else data)
                    parsed = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                    assert isinstance(parsed, EmailMessage)
                    self.messages.append(Received(mail_from, rcpt, parsed, user))
                    await reply("250 ok: queued")
                elif verb in ("RSET", "NOOP"):
                    await reply("250 ok")
                elif verb == "QUIT":
                    await reply("221 bye")
                    break
                else:
                    await reply("502 command not implemented")
        finally:
            writer.close()
