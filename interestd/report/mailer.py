"""Mailing the report by SMTP (ssl, starttls, or plain on loopback), with a header interestd recognises itself."""

from __future__ import annotations

import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from interestd.classify import OWN_MAIL_HEADER
from interestd.config import SmtpSettings
from interestd.errors import DeliveryError
from interestd.report.render import RenderedReport


def build_message(report: RenderedReport, smtp: SmtpSettings, *, period_key: str) -> EmailMessage:
    """A multipart/alternative mail: the plain text first, the HTML as the preferred part."""
    message = EmailMessage()
    message["Subject"] = report.subject
    message["From"] = smtp.sender
    message["To"] = ", ".join(smtp.to)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2] or "interestd")
    message["Auto-Submitted"] = "auto-generated"
    message[OWN_MAIL_HEADER] = period_key  # so a report landing in the shared mailbox never becomes a card
    message.set_content(report.text, subtype="plain", charset="utf-8")
    message.add_alternative(report.html, subtype="html", charset="utf-8")
    return message


def send(
    message: EmailMessage, smtp: SmtpSettings, password: str | None, *, attempts: int = 1, first_delay: float = 2.0
) -> None:
    """Deliver by SMTP, retrying with exponential backoff; raises DeliveryError with one line when all failed."""
    last: DeliveryError | None = None
    for attempt in range(attempts):
        try:
            _send_once(message, smtp, password)
            return
        except DeliveryError as exc:
            last = exc
            if attempt + 1 < attempts and not exc.permanent:
                time.sleep(first_delay * 2**attempt)
            elif exc.permanent:
                break
    assert last is not None
    raise last


def _send_once(message: EmailMessage, smtp: SmtpSettings, password: str | None) -> None:
    where = f"{smtp.host}:{smtp.effective_port}"
    timeout = smtp.timeout.total_seconds()
    try:
        if smtp.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.effective_port, timeout=timeout, context=_context(smtp)
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.effective_port, timeout=timeout)
        with client:
            if smtp.security == "starttls":
                client.starttls(context=_context(smtp))
            if smtp.user:
                client.login(smtp.user, password or "")
            refused = client.send_message(message)
        if refused:
            raise DeliveryError(f"the SMTP server {where} refused {', '.join(sorted(refused))}", permanent=True)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP login to {where} failed: {_reply(exc)}", permanent=True) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(
            f"the SMTP server {where} refused every recipient: {', '.join(exc.recipients)}", permanent=True
        ) from None
    except smtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.smtp_code < 600
        raise DeliveryError(
            f"the SMTP server {where} answered {exc.smtp_code}: {_reply(exc)}", permanent=permanent
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(f"TLS certificate of {where} not trusted ({exc.verify_message})", permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise DeliveryError(f"cannot deliver the report through {where}: {detail}") from None


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error
    return (text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)).strip().splitlines()[0]


def _context(smtp: SmtpSettings) -> ssl.SSLContext:
    if not smtp.verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
