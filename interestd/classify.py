"""Classification before parsing: auto-replies, bounces and interestd's own mail never become cards."""

from __future__ import annotations

import re
from dataclasses import dataclass

from interestd.message import ParsedMessage

OWN_MAIL_HEADER = "X-Interestd-Report"
PROOF_REF = re.compile(r"\[\s*INT-(\d+)\s*\]", re.IGNORECASE)

_OUT_OF_OFFICE_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|autoreply|auto:|out of (?:the )?office|"
    r"abwesenheitsnotiz|réponse automatique|автоответ|автоматический ответ|автоответчик|"
    r"нет на (?:рабочем )?месте|в отпуске|отсутству[юе])",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"(?:undeliver(?:ed|able)|delivery (?:status notification|has failed|failure)|mail delivery (?:failed|"
    r"failure|system)|returned mail|failure notice|delivery notification|"
    r"недоставленное сообщение|не удалось доставить|не доставлено|сообщение не доставлено|ошибка доставки)",
    re.IGNORECASE,
)
_BOUNCE_SENDERS = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
# Domains that only ever send robot mail (social networks' notification systems); their mail is for the
# notification parsers or nobody.
_ROBOT_DOMAINS = re.compile(
    r"(?:^|\.)(?:notify\.vk\.com|notify\.vk\.ru|vk\.com|vk\.ru|ok\.ru|odnoklassniki\.ru|facebookmail\.com|"
    r"business\.facebook\.com|mail\.instagram\.com)$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Classification:
    """What kind of mail this is. `kind` is interest, auto_reply, bounce, own_report or reply_proof."""

    kind: str
    reason: str | None = None
    automated: bool = False  # sent by a robot: only a notification parser (never the plain e-mail one) may take it
    ref: int | None = None  # the card a reply proof is about


def classify(message: ParsedMessage) -> Classification:
    """Decide from headers and subject alone what kind of mail `message` is."""
    if message.header(OWN_MAIL_HEADER) is not None:
        return Classification("own_report", f"interestd's own mail ({OWN_MAIL_HEADER} header)")

    bounce = _bounce_reason(message)
    if bounce:
        return Classification("bounce", bounce)

    auto_reply = _auto_reply_reason(message)
    if auto_reply:
        return Classification("auto_reply", auto_reply)

    ref = PROOF_REF.search(message.subject)
    if ref:
        return Classification("reply_proof", f"reply proof for INT-{ref.group(1)}", ref=int(ref.group(1)))

    automated = _automated_reason(message)
    return Classification("interest", automated, automated=automated is not None)


def _bounce_reason(message: ParsedMessage) -> str | None:
    content_type = message.header("Content-Type") or ""
    if message.content_type == "multipart/report" and "delivery-status" in content_type.lower():
        return "bounce: delivery status notification (multipart/report)"
    sender = message.sender_email or ""
    if _BOUNCE_SENDERS.match(sender) and (_BOUNCE_SUBJECT.search(message.subject) or not message.subject):
        return f"bounce from {sender}"
    if _BOUNCE_SUBJECT.search(message.subject) and (message.header("Return-Path") or "").strip() == "<>":
        return "bounce: null return path and a delivery-failure subject"
    if any(a.content_type == "message/delivery-status" for a in message.attachments):
        return "bounce: carries a message/delivery-status part"
    return None


def _auto_reply_reason(message: ParsedMessage) -> str | None:
    auto_submitted = (message.header("Auto-Submitted") or "").strip().lower()
    if auto_submitted.startswith("auto-replied"):
        return "auto-reply (Auto-Submitted: auto-replied)"
    for header in ("X-Autoreply", "X-Autorespond", "X-Autoresponse"):
        value = message.header(header)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            return f"auto-reply ({header} header)"
    precedence = (message.header("Precedence") or "").strip().lower()
    if precedence == "auto_reply":
        return "auto-reply (Precedence: auto_reply)"
    subject_hit = _OUT_OF_OFFICE_SUBJECT.search(message.subject)
    suppress = (message.header("X-Auto-Response-Suppress") or "").lower()
    if subject_hit:
        return f"auto-reply (out-of-office subject: {subject_hit.group(0).strip()!r})"
    if message.header("X-MS-Exchange-Inbox-Rules-Loop") or (
        "oof" in suppress and message.header("X-MS-Exchange-Organization-AutoReply")
    ):
        return "auto-reply (Exchange out-of-office)"
    return None


def _automated_reason(message: ParsedMessage) -> str | None:
    sender = message.sender_email or ""
    domain = sender.rpartition("@")[2]
    if domain and _ROBOT_DOMAINS.search(domain):
        return f"automated (notification robot {domain})"
    if message.header("X-Facebook-Notify") or (message.header("Feedback-ID") or "").endswith(":Facebook"):
        return "automated (Meta notification headers)"
    auto_submitted = (message.header("Auto-Submitted") or "").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"automated (Auto-Submitted: {auto_submitted})"
    precedence = (message.header("Precedence") or "").strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return f"automated (Precedence: {precedence})"
    if message.header("List-Id") or message.header("List-Unsubscribe"):
        return "automated (mailing list headers)"
    if (
        sender
        and is_robot_address(sender)
        and not any(a.email and not is_robot_address(a.email) for a in message.reply_to)
    ):
        return f"automated (robot sender {sender}, no person in Reply-To)"
    return None


def is_robot_address(address: str) -> bool:
    """An address no person reads: noreply@, notify@, wordpress@, mailer-daemon@ and the like."""
    from interestd.card import normalise_email

    return "@" in address and normalise_email(address) is None


_RESULT = re.compile(r"\b(dkim|spf)\s*=\s*(\w+)([^;]*)", re.IGNORECASE)
_PROPERTY = re.compile(r"\b(header\.d|header\.i|smtp\.mailfrom)\s*=\s*\"?([^\s;\"]+)", re.IGNORECASE)


def authenticated_sender(message: ParsedMessage, authserv_id: str | None) -> bool:
    """Did our own receiving server (`authserv_id`) record DKIM or SPF pass for the From address's domain?

    Only the first Authentication-Results header written by that server counts: one a sender adds with the
    same name would come below it (servers prepend theirs), and RFC 8601 servers remove such forgeries.
    """
    sender = message.sender_email
    if not sender or not authserv_id:
        return False
    domain = sender.rpartition("@")[2].lower()
    for value in message.header_all("Authentication-Results"):
        server = value.split(";", 1)[0].strip().split()[0].lower() if value.strip() else ""
        if server != authserv_id.lower():
            continue
        for _method, verdict, rest in _RESULT.findall(value):
            if verdict.lower() != "pass":
                continue
            for key, found in _PROPERTY.findall(rest):
                found = found.lower().lstrip("@")
                found_domain = found.rpartition("@")[2]
                if key.lower() == "header.i" and found != sender and found_domain != domain:
                    continue
                if found_domain == domain or found == sender:
                    return True
        return False
    return False
