"""Outgoing mail: an outbox folder (one .eml per message) by default, SMTP when MAIL_URL is set.

MAIL_URL: smtp://user:pass@host:587 (STARTTLS) or smtps://user:pass@host:465.
"""
from __future__ import annotations

import smtplib
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mimetype: str = "application/pdf"


def build_message(*, sender: str, to: str, subject: str, text: str, html: str | None = None,
                  attachments: tuple[Attachment, ...] = (), reply_to: str | None = None,
                  language: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="returns-connector")
    if reply_to:
        msg["Reply-To"] = reply_to
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    for att in attachments:
        maintype, subtype = att.mimetype.split("/", 1)
        msg.add_attachment(att.content, maintype=maintype, subtype=subtype, filename=att.filename)
    if language:
        # Last: set_content and the multipart conversions move or drop Content-* headers.
        msg["Content-Language"] = language
    return msg


class OutboxMailer:
    """Writes each message as `<time>-<id>.eml` into a folder; tests and the demo read it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, msg: EmailMessage) -> str:
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.folder / (name + ".tmp")
        tmp.write_bytes(bytes(msg))
        tmp.rename(self.folder / name)
        return name


class SMTPMailer:
    def __init__(self, url: str, timeout: float = 20):
        parts = urlparse(url)
        self.ssl = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.ssl else 587)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout

    def send(self, msg: EmailMessage) -> str:
        cls = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        with cls(self.host, self.port, timeout=self.timeout) as smtp:
            if not self.ssl:
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls()
                    smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(msg)
        return msg["Message-ID"]


def make_mailer(mail_url: str | None, outbox: Path):
    return SMTPMailer(mail_url) if mail_url else OutboxMailer(outbox)
