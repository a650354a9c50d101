"""Mail transport: the outbox folder by default, a real SMTP conversation when MAIL_URL is set."""
from __future__ import annotations

import socket

import pytest

from connector.mail import Attachment, OutboxMailer, SMTPMailer, build_message, make_mailer


def _message():
    return build_message(sender="Shop <returns@shop.example>", to="erika@example.com", subject="Ihre Retoure",
                         text="Hallo", html="<p>Hallo</p>", language="de",
                         attachments=(Attachment("R-1001.pdf", b"%PDF-1.4 test"),))


def test_without_mail_url_mail_goes_to_the_outbox(tmp_path):
    mailer = make_mailer(None, tmp_path / "outbox")
    assert isinstance(mailer, OutboxMailer)
    name = mailer.send(_message())
    raw = (tmp_path / "outbox" / name).read_bytes()
    assert b"Subject: =?utf-8?q?Ihre_Retoure?=" in raw or b"Subject: Ihre Retoure" in raw
    assert b"Content-Language: de" in raw and b'filename="R-1001.pdf"' in raw


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_with_mail_url_mail_is_sent_over_smtp_with_login():
    aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd not installed (pip install '.[dev]')")
    from aiosmtpd.smtp import AuthResult

    received, logins = [], []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    def authenticate(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    port = _free_port()
    controller = aiosmtpd.Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticate,
                                     auth_require_tls=False)
    controller.start()
    try:
        mailer = make_mailer(f"smtp://shop%40example.com:s3cret@127.0.0.1:{port}", None)
        assert isinstance(mailer, SMTPMailer)
        mailer.send(_message())
    finally:
        controller.stop()
    assert logins == [(b"shop@example.com", b"s3cret")]
    assert len(received) == 1 and received[0].rcpt_tos == ["erika@example.com"]
    assert b"R-1001.pdf" in received[0].content
