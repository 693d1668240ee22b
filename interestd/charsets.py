"""Decode mail bytes to text when the declared charset is missing, misspelt or wrong (UTF-8, cp1251, KOI8-R)."""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

# Misspellings and vendor names seen in the wild, mapped to the codec they mean.
_ALIASES = {
    "uft-8": "utf-8",
    "utf8": "utf-8",
    "utf-8bit": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "win-1251": "cp1251",
    "windows1251": "cp1251",
    "x-cp1251": "cp1251",
    "cp-1251": "cp1251",
    "win1251": "cp1251",
    "windows-1251x": "cp1251",
    "x-win1251": "cp1251",
    "koi8r": "koi8_r",
    "koi-8-r": "koi8_r",
    "koi8-u": "koi8_u",
    "x-koi8-r": "koi8_r",
    "windows-1252x": "cp1252",
    "x-user-defined": "cp1252",
    "iso-8859-8-i": "iso8859_8",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
}
# Codecs Python knows that are not mail charsets (or transform text in surprising ways).
_REFUSED = {
    "unicode_escape",
    "raw_unicode_escape",
    "punycode",
    "idna",
    "mbcs",
    "oem",
    "undefined",
    "utf_16",
    "utf_16_le",
    "utf_16_be",
    "utf_32",
    "utf_32_le",
    "utf_32_be",
}
_EIGHT_BIT_CYRILLIC = ("cp1251", "koi8_r")
_SAMPLE = 8_000  # characters scored per candidate: enough to tell, bounded for huge bodies


@lru_cache(maxsize=256)
def codec_for(declared: str | None) -> str | None:
    """The Python codec name for a declared MIME charset, or None when it is unknown or unusable."""
    if not declared:
        return None
    name = declared.strip().strip("\"'").lower()
    name = _ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED:
        return None
    return info.name


def decode_bytes(data: bytes, declared: str | None = None) -> str:
    """Text from bytes: valid UTF-8 wins, else the most plausible of the declared charset, cp1251 and KOI8-R."""
    if not data:
        return ""
    if data.isascii():
        return data.decode("ascii")
    codec = codec_for(declared)
    if codec and codec not in ("utf-8", "ascii") and not _is_single_byte(codec):
        # A multi-byte charset (Shift_JIS, GB18030, ...) that decodes cleanly is trusted as declared.
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    candidates: list[str] = []
    if codec and codec not in ("utf-8", "ascii"):
        candidates.append(codec)
    candidates.extend(c for c in _EIGHT_BIT_CYRILLIC if c not in candidates)
    best: tuple[float, str] | None = None
    for index, candidate in enumerate(candidates):
        try:
            text = data.decode(candidate)
        except UnicodeDecodeError:
            continue
        sample = text[:_SAMPLE]
        if index == 0 and candidate == codec and _clean_cyrillic(sample):
            return text  # the declared charset reads as well-formed words: a guess could at best tie with it
        # The declared charset wins ties; among the guesses, the earlier (more common) one does.
        score = plausibility(sample) + (0.5 if index == 0 and candidate == codec else 0) - index * 0.01
        if best is None or score > best[0]:
            best = (score, text)
    if best is not None:
        return best[1]
    return data.decode(codec or "utf-8", errors="replace")


@lru_cache(maxsize=64)
def _is_single_byte(codec: str) -> bool:
    try:
        return len(bytes(range(256)).decode(codec, errors="replace")) == 256
    except Exception:
        return False


_CYRILLIC_LETTER = re.compile("[\u0400-\u04ff]")
_CYRILLIC_RUN = re.compile("[\u0400-\u04ff]+")  # counted by runs: a word is one match, not one per letter
_LOWER_THEN_UPPER = re.compile("[\u0430-\u045f][\u0400-\u042f]")  # "пРХБЕР": koi8/cp1251 read the wrong way
_MIXED_SCRIPTS = re.compile("[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]")
_ACCENTED_RUN = re.compile("[\u00c0-\u00ff]{3,}")  # "Ïðèâåò": Cyrillic read as latin-1
_ODD_SIGNS = "".join(map(chr, (*range(0x80, 0xC0), *range(0x2500, 0x25A0), 0x2320, 0x2321, 0xD7, 0xF7, 0xFFFD)))
# Signs Russian text itself is full of: no-break space, « », °, ©, ®, §, ·, ±. A declared reading that has them
# and nothing else odd is taken as it stands; one that has any other odd sign is scored.
_RUSSIAN_TYPOGRAPHY = frozenset("\u00a0\u00a7\u00a9\u00ab\u00ae\u00b0\u00b1\u00b7\u00bb")
_ODD_SYMBOLS = re.compile(f"[{re.escape(_ODD_SIGNS)}]")
_ODD_SYMBOLS_BESIDE_TYPOGRAPHY = re.compile(
    f"[{re.escape(''.join(sign for sign in _ODD_SIGNS if sign not in _RUSSIAN_TYPOGRAPHY))}]"
)


def _clean_cyrillic(text: str) -> bool:
    """Cyrillic text with none of the marks of a wrong reading: plausibility's penalties, less those for
    Russian typography (which a wrong reading of the same bytes pays as well)."""
    return (
        _CYRILLIC_LETTER.search(text) is not None
        and _LOWER_THEN_UPPER.search(text) is None
        and _MIXED_SCRIPTS.search(text) is None
        and _ACCENTED_RUN.search(text) is None
        and _ODD_SYMBOLS_BESIDE_TYPOGRAPHY.search(text) is None
    )


def plausibility(text: str) -> float:
    """How much the text looks like real words: well-cased Cyrillic scores, mojibake patterns cost.

    Counted with regular expressions (in C): this runs on every 8-bit body and header whose charset is in doubt.
    """
    score = float(sum(map(len, _CYRILLIC_RUN.findall(text))))
    score -= 4 * len(_LOWER_THEN_UPPER.findall(text))
    score -= 3 * len(_MIXED_SCRIPTS.findall(text))
    score -= sum(len(run) for run in _ACCENTED_RUN.findall(text))
    score -= 3 * len(_ODD_SYMBOLS.findall(text))
    return score
