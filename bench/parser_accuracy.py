"""Field-level accuracy of the parsers over every fixture and over the same mail as it also arrives in practice.

For each fixture with an expected card, three variants are evaluated: the mail as it is, the mail forwarded
by a manager as an attachment (message/rfc822 inside a "Fwd:" letter), and the mail re-encoded (every text
part as UTF-8 base64). Each of the 13 card fields is compared with the expected card; the table shows, per
parser and per field, the share that came out right.

    .venv/bin/python bench/parser_accuracy.py [--variants original,attached,reencoded]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import sys
from collections import defaultdict
from datetime import UTC, datetime
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

from interestd.card import PARSED_FIELDS
from interestd.charsets import decode_bytes
from interestd.pipeline import PipelineContext, evaluate
from interestd.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "parsers"
FIELDS = PARSED_FIELDS
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def original(raw: bytes) -> bytes:
    return raw


def attached(raw: bytes) -> bytes:
    """The mail forwarded by a manager as an attachment (as Thunderbird's "Forward as attachment" does)."""
    inner = email.message_from_bytes(raw)
    outer = MIMEMultipart("mixed")
    outer["From"] = "Anna Petrova <anna.petrova@uyut-dom.ru>"
    outer["To"] = "zayavki@uyut-dom.ru"
    outer["Subject"] = "Fwd: " + str(email.header.make_header(email.header.decode_header(inner.get("Subject", ""))))
    outer["Date"] = "Mon, 23 Nov 2026 09:00:00 +0300"
    outer["Message-ID"] = "<forward-variant@uyut-dom.ru>"
    outer.attach(MIMEText("Пересылаю, возьмите в работу.", "plain", "utf-8"))
    outer.attach(MIMEMessage(inner))
    return outer.as_bytes()


def reencoded(raw: bytes) -> bytes:
    """The same mail with every text part re-encoded as UTF-8 base64 (what a relaying server might do)."""
    message = email.message_from_bytes(raw)
    for part in message.walk():
        if part.get_content_maintype() != "text" or part.is_multipart():
            continue
        data = part.get_payload(decode=True) or b""
        text = decode_bytes(data, part.get_content_charset())
        del part["Content-Transfer-Encoding"]
        part.set_payload(text.encode("utf-8"))
        part.set_param("charset", "utf-8")
        email.encoders.encode_base64(part)
    return message.as_bytes()


def inline(raw: bytes) -> bytes:
    """The mail forwarded inline from Gmail: the original's headers are lost but for From/Date/Subject/To."""
    from interestd.message import parse_raw

    source = parse_raw(raw)
    head = (
        f"---------- Forwarded message ---------\nFrom: {source.sender or ''}\n"
        f"Date: {source.header('Date') or ''}\nSubject: {source.subject}\nTo: {source.header('To') or ''}\n\n"
    )
    plain = "Коллеги, возьмите в работу.\n\n" + head + (source.plain or source.html_text)
    outer = MIMEMultipart("alternative")
    outer["From"] = "Anna Petrova <anna.petrova@uyut-dom.ru>"
    outer["To"] = "zayavki@uyut-dom.ru"
    outer["Subject"] = "Fwd: " + source.subject
    outer["Date"] = "Mon, 23 Nov 2026 09:00:00 +0300"
    outer["Message-ID"] = "<inline-variant@uyut-dom.ru>"
    outer.attach(MIMEText(plain, "plain", "utf-8"))
    if source.html:
        quoted = head.replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")
        html = (
            f'<div dir="ltr">Коллеги, возьмите в работу.<br><br><div class="gmail_quote">'
            f'<div class="gmail_attr">{quoted}</div><br>{source.html}</div></div>'
        )
        outer.attach(MIMEText(html, "html", "utf-8"))
    return outer.as_bytes()


VARIANTS = {"original": original, "attached": attached, "reencoded": reencoded, "inline": inline}


def measure(variants: list[str]) -> dict[str, dict[str, list[int]]]:
    """parser -> field -> [right, total] (plus the "_status" pseudo-field for the outcome itself)."""
    context = PipelineContext(registry=load_registry())
    scores: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for case in sorted(FIXTURES.glob("*/*.eml")):
        expected = json.loads(case.with_suffix(".json").read_text(encoding="utf-8"))
        if expected["status"] != "card":
            continue
        parser = case.parent.name
        for variant in variants:
            try:
                raw = VARIANTS[variant](case.read_bytes())
            except Exception:
                continue
            outcome = evaluate(raw, context, now=NOW)
            status_ok = outcome.status == "card" and outcome.parser == expected["parser"]
            scores[parser]["_status"][0] += status_ok
            scores[parser]["_status"][1] += 1
            for name in FIELDS:
                value = getattr(outcome.card, name, None) if outcome.card else None
                value = value.isoformat() if isinstance(value, datetime) else value
                scores[parser][name][0] += status_ok and value == expected["card"][name]
                scores[parser][name][1] += 1
    return scores


def table(scores: dict[str, dict[str, list[int]]]) -> str:
    columns = ["_status", *FIELDS]
    short = {
        "_status": "parsed",
        "source_type": "type",
        "occurred_at": "date",
        "source_url": "source",
        "author_name": "name",
        "author_url": "profile",
        "author_photo_url": "photo",
        "author_email": "email",
        "author_phone": "phone",
        "product_url": "prod_url",
        "reply_url": "reply",
    }
    header = ["parser", "cases", *[short.get(c, c) for c in columns]]
    rows = [header]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for parser in sorted(scores):
        fields = scores[parser]
        row = [parser, str(fields["_status"][1])]
        for column in columns:
            right, total = fields[column]
            totals[column][0] += right
            totals[column][1] += total
            row.append(f"{100 * right / total:.0f}%" if total else "-")
        rows.append(row)
    rows.append(
        [
            "all",
            str(totals["_status"][1]),
            *[f"{100 * totals[c][0] / totals[c][1]:.1f}%" if totals[c][1] else "-" for c in columns],
        ]
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"parser_accuracy: unknown variant {unknown[0]!r}", file=sys.stderr)
        return 2
    for variant in variants:
        print(f"== {variant}")
        print(table(measure([variant])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
