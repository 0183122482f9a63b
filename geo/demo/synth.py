"""Made-up but plausible grid polygons for any grid tree (demo data and benchmarks).

Seeds are spread top-down (each node's children evenly over the node's region, by Lloyd
relaxation); the polygons are built bottom-up from one Voronoi diagram of the deepest seeds,
so siblings never overlap and every child lies exactly inside its parent. Edges are
densified and bent by one smooth displacement field: a shared edge is bent once, identically
for both neighbours, and a gentle field cannot make edges cross.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.ops import unary_union

from geo.grids import GridTree

LLOYD_ROUNDS = 3
MICRO_RING = 6  # seeds kept by a grid around its micro-grids, so those stay small
DIGITS = 6  # ~0.1 m: plenty for a grid boundary, and keeps the files small
MIN_PIECES = 4  # even a short edge bends a little


def blob(center: tuple[float, float], radius: float, vertices: int, rng: random.Random) -> Polygon:
    """An irregular star-shaped outline (a district) with a wobbly radius."""
    waves = [(rng.uniform(0.05, 0.12), k, rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5)]
    points = []
    for i in range(vertices):
        angle = 2 * math.pi * i / vertices
        r = radius * (1 + sum(a * math.sin(k * angle + phase) for a, k, phase in waves))
        points.append((center[0] + r * math.cos(angle), center[1] + 0.9 * r * math.sin(angle)))
    return Polygon(points)


def partition(
    tree: GridTree, outline: Polygon, seed: int = 0, vertices_per_leaf: float = 26.0
) -> dict[str, Polygon | MultiPolygon]:
    """A polygon for every code of the tree, the root(s) covering `outline`."""
    rng = random.Random(seed)
    owners = _leaf_seeds(tree, outline, rng)
    points = shapely.points([p for p, _ in owners])
    faces = _faces(points, outline)
    size = math.sqrt(outline.area / len(owners))  # typical leaf cell width
    bend = _displacement(size, rng)
    step = 3.7 * size / vertices_per_leaf  # a leaf cell's perimeter is about 3.7 widths
    own: dict[str, list[Polygon]] = defaultdict(list)
    for face, owner in _owned_faces(faces, points, owners):
        own[owner].append(_bent(face, step, bend))
    shapes: dict[str, Polygon | MultiPolygon] = {}
    for code in _bottom_up(tree):
        parts = own.get(code, []) + [shapes[c] for c in tree.children(code)]
        shapes[code] = unary_union(parts)
    return shapes


def _leaf_seeds(
    tree: GridTree, outline: Polygon, rng: random.Random
) -> list[tuple[tuple[float, float], str]]:
    """(seed point, owning code) for the deepest level, spread top-down."""
    seeds: list[tuple[tuple[float, float], str]] = []
    stack: list[tuple[str, Polygon, tuple[float, float]]] = []
    roots = tree.roots
    for code, (point, region) in zip(roots, _spread(outline, len(roots), rng), strict=True):
        stack.append((code, region, point))
    while stack:
        code, region, point = stack.pop()
        children = tree.children(code)
        if not children:
            seeds.append((point, code))
        elif all(tree.level_of(c) == "micro" for c in children):
            seeds += _micro_cluster(code, children, region, point, rng)
        else:
            for child, (p, r) in zip(children, _spread(region, len(children), rng), strict=True):
                stack.append((child, r, p))
    return seeds


def _micro_cluster(code, children, region, center, rng):
    """Micro-grids cover a small patch around the grid's centre; a ring of the grid's own seeds
    around them keeps the rest of the grid with the grid."""
    r = 0.1 * math.sqrt(region.area)
    seeds = []
    for i, child in enumerate(children):
        angle = 2 * math.pi * i / len(children) + rng.uniform(-0.3, 0.3)
        seeds.append(
            ((center[0] + 0.6 * r * math.cos(angle), center[1] + 0.6 * r * math.sin(angle)), child)
        )
    for i in range(MICRO_RING):
        angle = 2 * math.pi * (i + 0.5) / MICRO_RING
        seeds.append(
            ((center[0] + 2 * r * math.cos(angle), center[1] + 2 * r * math.sin(angle)), code)
        )
    return seeds


def _spread(region: Polygon, k: int, rng: random.Random):
    """k evenly spread points in the region with their Voronoi cells (clipped to it)."""
    if k == 1:
        p = region.centroid if region.contains(region.centroid) else region.point_on_surface()
        return [((p.x, p.y), region)]
    x0, y0, x1, y1 = region.bounds
    shapely.prepare(region)
    points: list[Point] = []
    while len(points) < k:
        p = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        if region.contains(p):
            points.append(p)
    for _ in range(LLOYD_ROUNDS):
        cells = _cells(points, region)
        points = [
            c.centroid if region.contains(c.centroid) else c.point_on_surface() for c in cells
        ]
    return [((p.x, p.y), cell) for p, cell in zip(points, _cells(points, region), strict=True)]


def _cells(points: list[Point], region: Polygon) -> list[Polygon]:
    """Voronoi cells in the order of the points (shapely 2.0 returns them unordered)."""
    diagram = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(points), extend_to=region)
    )
    index = shapely.STRtree(points)
    cells: list[Polygon | None] = [None] * len(points)
    for cell_i, point_i in zip(*index.query(diagram, predicate="contains"), strict=True):
        cells[point_i] = diagram[cell_i].intersection(region)
    return [c if c is not None and not c.is_empty else region for c in cells]


def _faces(points: np.ndarray, outline: Polygon) -> list[Polygon]:
    """The Voronoi diagram's edges and the outline, noded together, as faces inside the outline."""
    edges = shapely.voronoi_polygons(
        shapely.multipoints(points), extend_to=outline, only_edges=True
    )
    lines = unary_union([edges, outline.exterior])
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(lines)))
    shapely.prepare(outline)
    return [f for f in faces if outline.contains(f.point_on_surface())]


def _owned_faces(faces, points, owners):
    """Each face belongs to the seed nearest to any point inside it (that is what Voronoi means)."""
    index = shapely.STRtree(points)
    inside = [f.point_on_surface() for f in faces]
    nearest = index.query_nearest(inside, all_matches=False)[1]
    for face, i in zip(faces, nearest, strict=True):
        yield face, owners[i][1]


def _displacement(size: float, rng: random.Random):
    """A smooth field of gentle waves; its slope stays well below 1, so it keeps the topology."""
    waves = []
    for wavelength, amplitude in ((0.9, 0.06), (0.45, 0.025), (0.23, 0.008)):
        k = 2 * math.pi / (wavelength * size)
        for _axis in range(2):
            angle = rng.uniform(0, 2 * math.pi)
            waves.append(
                (
                    amplitude * size,
                    k * math.cos(angle),
                    k * math.sin(angle),
                    rng.uniform(0, 2 * math.pi),
                )
            )

    def bend(xy: np.ndarray) -> np.ndarray:
        out = xy.copy()
        for axis in range(2):
            for a, kx, ky, phase in waves[axis::2]:
                out[:, axis] += a * np.sin(kx * xy[:, 0] + ky * xy[:, 1] + phase)
        return out

    return bend


def _bent(face: Polygon, step: float, bend) -> Polygon:
    rings = [_bent_ring(np.asarray(face.exterior.coords), step, bend)]
    rings += [_bent_ring(np.asarray(r.coords), step, bend) for r in face.interiors]
    return Polygon(rings[0], rings[1:])


def _bent_ring(coords: np.ndarray, step: float, bend) -> np.ndarray:
    out = [coords[:1]]
    for p, q in itertools.pairwise(coords):
        out.append(_densified(p, q, step)[1:])
    return np.round(bend(np.concatenate(out)), DIGITS)


def _densified(p: np.ndarray, q: np.ndarray, step: float) -> np.ndarray:
    """Points from p to q at most `step` apart; computed from the lower end so that both faces
    sharing an edge get bit-identical points."""
    n = max(MIN_PIECES, math.ceil(float(np.hypot(*(q - p))) / step))
    flip = tuple(q) < tuple(p)
    a, b = (q, p) if flip else (p, q)
    t = np.arange(n + 1)[:, None] / n
    line = a + (b - a) * t
    line[0], line[-1] = a, b
    return line[::-1] if flip else line


def _bottom_up(tree: GridTree) -> list[str]:
    order = [c for root in tree.roots for c in tree.subtree(root)]
    return order[::-1]
