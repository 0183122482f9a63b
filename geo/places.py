"""Text → grid: the longest known place name (小区, 路, 村组 …) mentioned in a report."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable

import ahocorasick

from geo.grids import GridTree

MIN_PLACE_CHARS = 2  # one character (e.g. 村) matches almost every report


def normalise(text: str) -> str:
    """Full-width letters/digits to half-width, no whitespace, lower case: how places are compared."""
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


class PlaceMatcher:
    """An Aho–Corasick automaton over normalised place names.

    `match` returns the longest place found anywhere in the text; ties go to the deepest grid,
    then the lowest code. A name shared by several grids resolves the same way.
    """

    def __init__(self, places: Iterable[tuple[str, str]], depth: Callable[[str], int]):
        best: dict[str, tuple[int, int, str, str]] = {}
        codes_by_key: dict[str, set[str]] = {}
        for place, code in places:
            key = normalise(place)
            if len(key) < MIN_PLACE_CHARS:
                continue
            # Smaller sorts first: longer, then deeper, then lower code.
            entry = (-len(key), -depth(code), code, place)
            if key not in best or entry < best[key]:
                best[key] = entry
            codes_by_key.setdefault(key, set()).add(code)
        self._automaton = ahocorasick.Automaton()
        for key, entry in best.items():
            self._automaton.add_word(key, entry)
        if best:
            self._automaton.make_automaton()
        self._size = len(best)
        # Place names given to more than one grid: worth a warning in `whistle check`.
        self.shared = {best[k][3]: tuple(sorted(c)) for k, c in codes_by_key.items() if len(c) > 1}

    @classmethod
    def from_tree(cls, tree: GridTree) -> PlaceMatcher:
        return cls(tree.places(), tree.depth)

    def __len__(self) -> int:
        return self._size

    def match(self, text: str) -> tuple[str, str] | None:
        """(code, place) for the best place named in the text, or None."""
        if not self._size or not text:
            return None
        found = [entry for _, entry in self._automaton.iter(normalise(text))]
        if not found:
            return None
        _, _, code, place = min(found)
        return code, place
