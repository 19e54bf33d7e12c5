"""Deterministic detectors of personal data: shapes first, then the checksum where one exists.

Each detector finds candidate spans by a regular expression and keeps those that survive its
checks: a payment card must pass Luhn and start like a card issuer's number, an IBAN must have
its country's length and pass ISO 7064 mod-97, a phone number must hold a plausible count of
digits. The checks are what keeps look-alikes (ISBNs, order numbers, dates, versions) out.
Detectors are named; a policy category lists the ones it uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

Span = tuple[int, int]

_EMAIL = re.compile(
    r"(?<![\w.%+-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63})@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})(?![\w-])"
)
# "jane.doe1 [at] example [dot] com", "j.smith1984 at example dot com": written to dodge
# scrapers, still an address. The bare " at ... dot " form needs a local part with a digit,
# dot or underscore, so that "look at the site dot com" prose stays out.
_SEP_AT = r"(?:\s*[\[({]\s*at\s*[\])}]\s*|\s+at\s+)"
_SEP_DOT = r"(?:\s*[\[({]\s*dot\s*[\])}]\s*|\s+dot\s+)"
_OBFUSCATED = re.compile(
    rf"(?<![\w.])([A-Za-z0-9][A-Za-z0-9._-]*){_SEP_AT}([A-Za-z0-9-]+(?:{_SEP_DOT}[A-Za-z0-9-]+)*)"
    rf"{_SEP_DOT}([A-Za-z]{{2,12}})\b",
    re.IGNORECASE,
)

_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,6}(?![\w-])")
_PHONE_NANP = re.compile(r"(?<![\w-])(?:\(\d{3}\)\s?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w-])")
# A national number with its trunk 0 ("020 7946 0018", "030 1234 5678").
_PHONE_TRUNK = re.compile(r"(?<![\w-])0\d{1,4}[ -]\d{3,4}[ -]?\d{3,4}(?![\w-])")
_PHONE_WORD = re.compile(
    r"\b(?:phone|telephone|tel|mobile|cell|fax|whatsapp|call (?:me|him|her|them) (?:on|at))"
    r"(?:\s+number)?(?:\s+is)?[:.]?\s*(\+?\d[\d ().-]{5,18}\d)(?![\w-])",
    re.IGNORECASE,
)

_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30})(?![a-z0-9])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_SSN_WORD = re.compile(
    r"\b(?:ssn|social security(?: number)?)(?:\s+is)?[:#]?\s*((?!000|666|9\d\d)\d{3}[ -]?"
    r"(?!00)\d{2}[ -]?(?!0000)\d{4})\b",
    re.IGNORECASE,
)
# UK National Insurance number: two letters (some pairs never issued), six digits, A-D.
_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"
)

# IBAN lengths by country (ISO 13616 registry); another country code is checked by mod-97 alone.
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
    "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check that payment card numbers carry in their last digit."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card_issuer_ok(digits: str) -> bool:
    """Starts and is as long as an issuer's card: Visa, Mastercard, Amex, Discover, JCB,
    Diners, UnionPay, Maestro. (13-digit Visa numbers are long gone; EAN-13 barcodes are not.)"""
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if digits[0] in "56":  # Discover, UnionPay, Maestro
        return 16 <= n <= 19
    if 3528 <= four <= 3589:
        return 16 <= n <= 19
    return False


def iban_ok(text: str) -> bool:
    """ISO 7064 mod-97: the rearranged IBAN, letters as 10-35, leaves remainder 1."""
    code = text.replace(" ", "")
    if not (15 <= len(code) <= 34) or IBAN_LENGTHS.get(code[:2], len(code)) != len(code):
        return False
    moved = code[4:] + code[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


# "name@instance.service" is a systemd unit (getty@tty1.service), not a mailbox.
_NOT_A_DOMAIN = re.compile(
    r"\.(service|socket|target|timer|mount|path|slice|scope|device|swap|hostname)$", re.IGNORECASE
)


def email(text: str, public: Collection[str] = ()) -> list[Span]:
    """E-mail addresses, plain or spelled out; a role mailbox of an organisation (``public``:
    support@, info@, ...) is a public contact, not personal data."""
    found = []
    for m in _EMAIL.finditer(text):
        if m.group(1).lower() not in public and not _NOT_A_DOMAIN.search(m.group(2)):
            found.append(m.span())
    for m in _OBFUSCATED.finditer(text):
        bracketed = re.search(r"[\[({]", m.group(0)) is not None
        if (bracketed or re.search(r"[._\d]", m.group(1))) and m.group(1).lower() not in public:
            found.append(m.span())
    return found


def phone(text: str, public: Collection[str] = ()) -> list[Span]:
    """Phone numbers: international (+), North American, national with a trunk 0, or any run of
    7-15 digits right after a word such as "phone" or "call me on"."""
    found = [m.span() for m in _PHONE_INTERNATIONAL.finditer(text) if 8 <= len(_digits(m[0])) <= 15]
    found += [m.span() for m in _PHONE_NANP.finditer(text)]
    found += [m.span() for m in _PHONE_TRUNK.finditer(text) if 9 <= len(_digits(m[0])) <= 12]
    found += [m.span(1) for m in _PHONE_WORD.finditer(text) if 7 <= len(_digits(m[1])) <= 15]
    return found


def payment_card(text: str, public: Collection[str] = ()) -> list[Span]:
    """Payment card numbers: 13-19 digits (spaces or dashes allowed), an issuer's prefix and
    length, and a valid Luhn check digit."""
    found = []
    for m in _CARD.finditer(text):
        digits = _digits(m[0])
        if 13 <= len(digits) <= 19 and _card_issuer_ok(digits) and luhn_ok(digits):
            found.append(m.span())
    return found


def iban(text: str, public: Collection[str] = ()) -> list[Span]:
    """IBANs (bank accounts): country, check digits, account; the country's length, mod-97."""
    found = []
    for m in _IBAN.finditer(text):
        candidate = m.group(1)
        # The account may be followed by other capitals ("... 00 EUR"): try the country's length.
        compact = candidate.replace(" ", "")
        length = IBAN_LENGTHS.get(compact[:2])
        if length is not None and len(compact) > length:
            compact = compact[:length]
        if iban_ok(compact):
            found.append(m.span(1))
    return found


def us_ssn(text: str, public: Collection[str] = ()) -> list[Span]:
    """US Social Security numbers (no checksum exists): 3-2-4 digits outside the never-issued
    ranges, or 9 digits right after "SSN"/"social security number"."""
    return [m.span() for m in _SSN.finditer(text)] + [m.span(1) for m in _SSN_WORD.finditer(text)]


def uk_nino(text: str, public: Collection[str] = ()) -> list[Span]:
    """UK National Insurance numbers (no checksum exists): the issued letter pairs, 6 digits,
    a final A-D; capitals only, so that ordinary words and codes stay out."""
    return [m.span() for m in _NINO.finditer(text)]


DETECTORS: dict[str, Callable[[str, Collection[str]], list[Span]]] = {
    "email": email,
    "phone": phone,
    "payment_card": payment_card,
    "iban": iban,
    "us_ssn": us_ssn,
    "uk_nino": uk_nino,
}
# What each finds, for messages ("seed_examples[2].answer holds an e-mail address").
DESCRIPTIONS = {
    "email": "an e-mail address",
    "phone": "a phone number",
    "payment_card": "a payment card number (Luhn-valid)",
    "iban": "a bank account number (IBAN, mod-97-valid)",
    "us_ssn": "a US Social Security number",
    "uk_nino": "a UK National Insurance number",
    "lexicon": "a phrase from the policy's lexicon",
}
