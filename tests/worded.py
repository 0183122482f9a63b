"""pytest.raises for coded errors, checking the words a person is shown (bot/texts/errors.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bot.texts.errors import error_text


@contextmanager
def raises_worded(kind: type[Exception], words: str) -> Iterator[None]:
    """Like pytest.raises(kind, match=words) for a CaseError: `words` is searched in its text."""
    with pytest.raises(kind) as caught:
        yield
    assert words in error_text(caught.value), error_text(caught.value)
