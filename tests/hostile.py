"""The hostile corpus: broken and malicious mail, generated on the fly (nothing of it is stored in the tree).

Each generator returns the raw bytes of one message. `CORPUS` names them all; `bench/hostile.py` measures
time and memory per message over the same corpus.
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable

HEAD = (
    "From: =?utf-8?B?0JrQu9C40LXQvdGC?= <client@example.ru>\r\nTo: zayavki@uyut-dom.ru\r\n"
    "Date: Fri, 20 Nov 2026 10:15:00 +0300\r\nMIME-Version: 1.0\r\n"
)


def _mail(name: str, headers: str, body: bytes | str) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return (
        HEAD + f"Message-ID: <hostile-{name}@example.ru>\r\nSubject: hostile {name}\r\n" + headers + "\r\n"
    ).encode() + data


def no_headers() -> bytes:
    return b"\r\nHello, this message has no headers at all. Call me: +7 917 555-12-34\r\n"


def binary_garbage() -> bytes:
    return bytes(range(256)) * 64


def five_thousand_headers() -> bytes:
    headers = "".join(f"X-Spam-Header-{n}: value {n} " + "x" * 40 + "\r\n" for n in range(5000))
    return _mail("headers", headers + "Content-Type: text/plain; charset=utf-8\r\n", "Body after 5000 headers.\r\n")


def huge_attachment(megabytes: int = 40) -> bytes:
    payload = base64.encodebytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * (megabytes * 1024 * 1024)).replace(b"\n", b"\r\n")
    body = (
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attached scan.\r\n"
        b"--b\r\nContent-Type: image/png; name=scan.png\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=scan.png\r\n\r\n" + payload + b"--b--\r\n"
    )
    return _mail(f"attachment-{megabytes}mb", 'Content-Type: multipart/mixed; boundary="b"\r\n', body)


def nested_multiparts(depth: int = 500) -> bytes:
    opening = "".join(f'--n{n}\r\nContent-Type: multipart/mixed; boundary="n{n + 1}"\r\n\r\n' for n in range(depth))
    closing = "".join(f"--n{n}--\r\n" for n in reversed(range(depth + 1)))
    body = opening + f"--n{depth}\r\nContent-Type: text/plain\r\n\r\nDeep down here.\r\n" + closing
    return _mail("nested", 'Content-Type: multipart/mixed; boundary="n0"\r\n', body)


def invalid_transfer_encodings() -> bytes:
    body = (
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "0J/RgNC40LLQtdGC!!!***not base64 at all@@@==ZZZ=\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        "<p>=D0=9F=D1=80=ZZ=\r\n=D0broken =XY soft=\r\nbreak=</p>\r\n--b--\r\n"
    )
    return _mail("encodings", 'Content-Type: multipart/alternative; boundary="b"\r\n', body)


def unknown_charsets() -> bytes:
    body = (
        (
            "--b\r\nContent-Type: text/plain; charset=uft-8\r\n\r\nПривет из uft-8\r\n"
            "--b\r\nContent-Type: text/plain; charset=windows-1252x\r\n\r\n"
        ).encode()
        + "Привет из cp1251".encode("cp1251")
        + b"\r\n--b\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nplain\r\n--b--\r\n"
    )
    return _mail("charsets", 'Content-Type: multipart/mixed; boundary="b"\r\n', body)


def nul_bytes_and_surrogates() -> bytes:
    body = b"Nul\x00bytes\x00here and a lone surrogate \xed\xa0\x80 and \xed\xbf\xbf in UTF-8.\r\n"
    head = "Content-Type: text/plain; charset=utf-8\r\nX-Nul: a\x00b\r\n"
    return _mail("nul", head, body)


def giant_single_line_html(megabytes: int = 2) -> bytes:
    cell = "<td>Имя</td><td>Иван</td>"
    html = "<html><body><table><tr>" + cell * (megabytes * 1024 * 1024 // len(cell.encode())) + "</tr></table>"
    return _mail("giant-html", "Content-Type: text/html; charset=utf-8\r\n", html + "</body></html>")


def scripted_html() -> bytes:
    html = (
        "<html><head><style>body{display:none}</style><script>document.location='https://evil.example'</script>"
        "</head><body onload=\"alert(1)\"><p onclick='steal()'>Хочу диван</p>"
        "<a href=\"javascript:alert(document.cookie)\">reply</a> <a href='data:text/html,<script>x</script>'>x</a>"
        "<img src=x onerror=alert(2)><iframe src='https://evil.example'></iframe>"
        '<a href="  JaVaScRiPt:alert(3)">profile</a></body></html>'
    )
    return _mail("scripted", "Content-Type: text/html; charset=utf-8\r\n", html)


def terminal_escapes_in_headers() -> bytes:
    name = base64.b64encode("\x1b[2J\x1b[31mАнна\x07\x1b]0;owned\x07\r\nInjected: yes".encode()).decode()
    subject = base64.b64encode("Вопрос\x1b[1;1H\x1b[K\x00\x08 о доставке".encode()).decode()
    raw = _mail("escapes", "Content-Type: text/plain; charset=utf-8\r\n", "Тело \x1b[31mкрасное\x1b[0m\r\n")
    return raw.replace(b"From: =?utf-8?B?0JrQu9C40LXQvdGC?=", f"From: =?utf-8?B?{name}?=".encode()).replace(
        b"Subject: hostile escapes", f"Subject: =?utf-8?B?{subject}?=".encode()
    )


def rfc822_loop(depth: int = 300) -> bytes:
    inner = b"From: a@example.ru\r\nSubject: innermost\r\n\r\nthe end\r\n"
    for n in range(depth):
        head = f"From: fwd{n}@example.ru\r\nSubject: Fwd: {n}\r\nContent-Type: message/rfc822\r\n\r\n"
        inner = head.encode() + inner
    return _mail("rfc822-loop", "Content-Type: message/rfc822\r\n", inner)


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.txt", b"\x00" * (200 * 1024 * 1024))  # 200 MB of zeros in about 200 KB
    payload = base64.encodebytes(buffer.getvalue()).decode().replace("\n", "\r\n")
    body = (
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nПрайс во вложении.\r\n"
        "--b\r\nContent-Type: application/zip; name=price.zip\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment; filename=price.zip\r\n\r\n{payload}--b--\r\n"
    )
    return _mail("zip-bomb", 'Content-Type: multipart/mixed; boundary="b"\r\n', body)


def tnef_winmail() -> bytes:
    tnef = b"\x78\x9f\x3e\x22" + b"\x01\x00\x01\x90\x08\x00" + b"IPM.Microsoft Mail.Note\x00" * 50
    payload = base64.encodebytes(tnef).decode().replace("\n", "\r\n")
    body = (
        b"--b\r\nContent-Type: text/plain; charset=windows-1251\r\n\r\n"
        + "Добрый день, заявка во вложении.".encode("cp1251")
        + (
            "\r\n--b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename=winmail.dat\r\n\r\n{payload}--b--\r\n"
        ).encode()
    )
    return _mail("tnef", 'Content-Type: multipart/mixed; boundary="b"\r\n', body)


def broken_structure() -> bytes:
    body = (
        "--missing\r\nContent-Type: text/plain\r\n\r\nThe boundary in the header is not this one, "
        "and the end boundary never comes.\r\n--missing\r\nContent-Type: text/html\r\n\r\n<p>unclosed"
    )
    return _mail("structure", 'Content-Type: multipart/mixed; boundary="declared-elsewhere"\r\n', body)


def cr_only_line_endings() -> bytes:
    return (
        _mail("cr", "Content-Type: text/plain; charset=utf-8\r\n", "").replace(b"\r\n", b"\r")
        + "Только CR\rв концах строк\r".encode()
    )


def megabyte_header_line() -> bytes:
    return _mail("long-header", "Content-Type: text/plain\r\nX-Long: " + "y" * (1024 * 1024) + "\r\n", "body\r\n")


CORPUS: dict[str, Callable[[], bytes]] = {
    "no headers": no_headers,
    "binary garbage": binary_garbage,
    "5,000 headers": five_thousand_headers,
    "40 MB attachment": huge_attachment,
    "multiparts nested 500 deep": nested_multiparts,
    "invalid base64 and quoted-printable": invalid_transfer_encodings,
    "unknown and misspelt charsets": unknown_charsets,
    "NUL bytes and lone surrogates": nul_bytes_and_surrogates,
    "2 MB single-line HTML": giant_single_line_html,
    "scripts, handlers, javascript: and data: links": scripted_html,
    "terminal escapes in RFC 2047 words": terminal_escapes_in_headers,
    "message/rfc822 nested 300 deep": rfc822_loop,
    "zip bomb attachment": zip_bomb,
    "TNEF winmail.dat": tnef_winmail,
    "broken MIME structure": broken_structure,
    "CR-only line endings": cr_only_line_endings,
    "1 MB header line": megabyte_header_line,
}
