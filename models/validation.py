"""Validation of what people type in: phone numbers (and the shared error type)."""

from __future__ import annotations

import re

from models.lifecycle import CaseError


class InvalidInput(CaseError):
    """Input that cannot be accepted; its wording tells the user what to fix."""


_SEPARATORS = re.compile(r"[\s\-()（）]")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
# Area codes: 010 and 02x are three digits, all others four; local numbers 7–8 digits.
_LANDLINE = re.compile(r"^(0(?:10|2\d|[3-9]\d{2}))([2-9]\d{6,7})$")


def normalize_phone(raw: str) -> str:
    """A mainland mobile ('13812345678') or landline ('0731-88888888'); raises InvalidInput."""
    digits = _SEPARATORS.sub("", raw or "")
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and _MOBILE.match(digits[len(prefix) :]):
            digits = digits[len(prefix) :]
            break
    if _MOBILE.match(digits):
        return digits
    m = _LANDLINE.match(digits)
    if m:
        return f"{m.group(1)}-{m.group(2)}"
    raise InvalidInput("invalid_phone")


def clean_text(raw: str | None, *, field: str, min_len: int, max_len: int) -> str:
    """Stripped text between min_len and max_len characters; raises InvalidInput.

    `field` is a code the error's wording names (bot/texts/errors.py FIELD_NAMES).
    """
    text = (raw or "").strip()
    if len(text) < min_len:
        raise InvalidInput("text_too_short", field=field, min_len=min_len)
    if len(text) > max_len:
        raise InvalidInput("text_too_long", field=field, max_len=max_len)
    return text
