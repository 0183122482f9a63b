"""Open311's XML: the same data as the JSON, each list entry in an element of its own."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

# The element of one entry in a list that is not the top level (discovery's lists).
_ENTRY = {"endpoints": "endpoint", "formats": "format", "attributes": "attribute"}


def _fill(element: Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _fill(SubElement(element, key), inner)
    elif isinstance(value, list):
        for inner in value:
            _fill(SubElement(element, _ENTRY.get(element.tag, "item")), inner)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


def to_xml(data: Any, root: str, item: str | None = None) -> bytes:
    """<root> around `data`; a top-level list puts each entry in an <item> element."""
    top = Element(root)
    if isinstance(data, list):
        for entry in data:
            _fill(SubElement(top, item or "item"), entry)
    else:
        _fill(top, data)
    return tostring(top, encoding="utf-8", xml_declaration=True)
