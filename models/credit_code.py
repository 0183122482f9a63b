"""统一社会信用代码 (unified social credit code) check, GB 32100-2015.

18 characters from a 31-symbol alphabet (digits and capitals without I, O, Z, S, V):
registration authority (1), organisation type (1), administrative division (6 digits),
organisation code (9), check character (1). The check character makes the weighted sum
of all 18 values divisible by 31, with weights 3^(i-1) mod 31.
"""

from __future__ import annotations

import re

from models.validation import InvalidInput

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, 16, ...
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_SHAPE = re.compile(rf"^[{ALPHABET}]{{2}}\d{{6}}[{ALPHABET}]{{10}}$")


def check_character(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters."""
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def validate_credit_code(raw: str) -> str:
    """The normalised (upper-case, no spaces) code, or InvalidInput saying what is wrong."""
    code = re.sub(r"\s", "", raw or "").upper()
    if len(code) != 18:
        raise InvalidInput("credit_code_length")
    if not _SHAPE.match(code):
        raise InvalidInput("credit_code_characters")
    if check_character(code[:17]) != code[17]:
        raise InvalidInput("credit_code_check")
    return code


def is_valid_credit_code(raw: str) -> bool:
    try:
        validate_credit_code(raw)
    except InvalidInput:
        return False
    return True
