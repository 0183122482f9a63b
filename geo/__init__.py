"""Locating cases in grids (网格): the grid tree, boundaries, point and place-name lookup.

Pure computation on plain data: nothing here reads the configuration or the database.
"""

from geo.boundaries import ERROR, WARNING, Boundaries, Problem, load_boundaries, parse_boundaries
from geo.grids import (
    LEVELS,
    GridError,
    GridRecord,
    GridTree,
    load_gazetteer,
    records_from_config,
    write_gazetteer,
)
from geo.locate import GridLocator
from geo.places import PlaceMatcher, normalise

__all__ = [
    "ERROR",
    "LEVELS",
    "WARNING",
    "Boundaries",
    "GridError",
    "GridLocator",
    "GridRecord",
    "GridTree",
    "PlaceMatcher",
    "Problem",
    "load_boundaries",
    "load_gazetteer",
    "normalise",
    "parse_boundaries",
    "records_from_config",
    "write_gazetteer",
]
