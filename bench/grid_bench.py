"""Grid locating benchmark: a synthetic district the size of Wangcheng.

    python bench/grid_bench.py [--points 20000] [--places 20000] [--texts 20000] [--seed 0]

Builds 11 streets / 127 communities / 605 片 / 4,411 grids (+ micro-grids) with made-up
polygons (geo.demo.synth: nested, non-overlapping, 30–100 vertices per grid), writes them as
GeoJSON and times what the service does at start and per case:
- start (in a fresh process): load the gazetteer CSV, load + check the GeoJSON, build
  GridLocator and PlaceMatcher (20,000 place names + every grid's name); seconds, and RSS
  growth after start and at its peak;
- per case: GridLocator.locate for 20,000 random points in the district's bounding box
  (p50/p99/max), checked against a brute-force answer for a sample; PlaceMatcher.match for
  20,000 texts of 50–300 characters (p50/p99/max).
Prints a table and writes bench/results/grid.json. Targets: p99 <= 1 ms for both lookups.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import shapely
from shapely.geometry import mapping

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo import (
    GridLocator,
    GridRecord,
    GridTree,
    PlaceMatcher,
    load_boundaries,
    load_gazetteer,
    write_gazetteer,
)
from geo.demo.synth import blob, partition
from geo.grids import LEVEL_NAMES

RESULTS = ROOT / "bench" / "results" / "grid.json"
COUNTS = {"street": 11, "community": 127, "area": 605, "grid": 4411}
MICRO_GRIDS = 200  # grids that have 2–4 micro-grids each
VERTICES_PER_LEAF = 50  # grids get about 60 vertices (median), most between 30 and 100
TARGET_P99_MS = 1.0
# Common characters for made-up place names and report texts.
CHARS = (
    "东南西北中新老大小上下金银玉石山水河湖江塘桥湾坪岭园林花草竹松柏梅兰桂荷莲星月阳光明华"
    "安康宁和平福寿兴旺隆昌盛丰泰祥瑞嘉美锦绣龙凤鹤鹭雁燕春夏秋冬晴雨云霞田坝沙洲港口"
    "家住在这里那边附近旁边门口楼下路上我们你他她有没是的了不在很多少都也还就要说去来看"
    "问题反映投诉希望尽快处理解决已经几天一直没有人管理物业水电路灯垃圾噪音车辆施工"
)
SUFFIXES = (
    "小区",
    "花园",
    "家园",
    "苑",
    "路",
    "街",
    "大道",
    "巷",
    "村",
    "组",
    "市场",
    "小学",
    "中学",
    "幼儿园",
    "广场",
    "公寓",
    "新村",
    "商业街",
)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def district_records(rng: random.Random, n_places: int) -> list[GridRecord]:
    """The synthetic hierarchy (counts per level as in COUNTS, children spread unevenly), with
    n_places made-up place names spread over the grids and micro-grids."""
    records = [GridRecord("WC", "望城区", "district")]
    parents = ["WC"]
    for level, count in COUNTS.items():
        shares = _split(count, len(parents), rng)
        codes = []
        for parent, share in zip(parents, shares, strict=True):
            for i in range(1, share + 1):
                code = f"{parent}-{i:02d}"
                records.append(GridRecord(code, f"{code}{LEVEL_NAMES[level]}", level, parent))
                codes.append(code)
        parents = codes
    for grid in rng.sample(parents, MICRO_GRIDS):
        for letter in "ABCD"[: rng.randint(2, 4)]:
            records.append(GridRecord(f"{grid}-{letter}", f"{grid}微网格{letter}", "micro", grid))
    places: dict[str, list[str]] = {}
    leaves = [r.code for r in records if r.level in ("grid", "micro")]
    for name in place_names(n_places, rng):
        places.setdefault(rng.choice(leaves), []).append(name)
    return [replace(r, places=tuple(places.get(r.code, ()))) for r in records]


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """total split into parts, each at least 1, varying by about ±40%."""
    weights = [rng.uniform(0.6, 1.4) for _ in range(parts)]
    extra = total - parts
    shares = [1 + int(extra * w / sum(weights)) for w in weights]
    for i in rng.sample(range(parts), total - sum(shares)):
        shares[i] += 1
    return shares


def place_names(n: int, rng: random.Random) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        stem = "".join(rng.choice(CHARS) for _ in range(rng.randint(2, 4)))
        names.add(stem + rng.choice(SUFFIXES))
    return sorted(names)


def report_texts(n: int, places: list[str], rng: random.Random) -> list[str]:
    """50–300 characters; most mention one or two known places, some none."""
    texts = []
    for _ in range(n):
        length = rng.randint(50, 300)
        chunks = [rng.choice(places) for _ in range(rng.choice((0, 1, 1, 2)))]
        filler = length - sum(len(c) for c in chunks)
        body = [rng.choice(CHARS) for _ in range(filler)]
        for chunk in chunks:
            body.insert(rng.randint(0, len(body)), chunk)
        texts.append("".join(body))
    return texts


def write_geojson(path: Path, shapes: dict) -> int:
    features = [
        {"type": "Feature", "properties": {"code": code}, "geometry": mapping(geom)}
        for code, geom in sorted(shapes.items())
    ]
    text = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"))
    path.write_text(text, encoding="utf-8")
    return len(text)


def brute_force(tree: GridTree, shapes: dict, lat: float, lon: float) -> str | None:
    """The reference answer: every polygon tested, deepest then lowest code."""
    covering = [c for c, g in shapes.items() if shapely.intersects_xy(g, lon, lat)]
    return min(covering, key=lambda c: (-tree.depth(c), c)) if covering else None


def timed(fn, inputs) -> tuple[list, np.ndarray]:
    results, seconds = [], np.empty(len(inputs))
    for i, args in enumerate(inputs):
        start = time.perf_counter()
        results.append(fn(*args))
        seconds[i] = time.perf_counter() - start
    return results, seconds


def percentiles_ms(seconds: np.ndarray) -> dict:
    ms = seconds * 1000
    return {
        "p50": round(float(np.percentile(ms, 50)), 4),
        "p99": round(float(np.percentile(ms, 99)), 4),
        "max": round(float(ms.max()), 3),
    }


def vertex_stats(tree: GridTree, shapes: dict) -> dict:
    out = {}
    for level in ("street", "community", "area", "grid", "micro"):
        counts = [
            int(shapely.get_num_coordinates(g))
            for c, g in shapes.items()
            if tree.level_of(c) == level
        ]
        out[level] = {
            "polygons": len(counts),
            "min": min(counts),
            "median": int(np.median(counts)),
            "max": max(counts),
        }
    return out


def startup(directory: Path) -> dict:
    """What the service does at start, in a fresh process so its memory can be measured."""
    rss = psutil.Process().memory_info
    base = rss().rss
    t0 = time.perf_counter()
    tree = GridTree(load_gazetteer(directory / "grids.csv"))
    t1 = time.perf_counter()
    boundaries = load_boundaries(directory / "boundaries.geojson", tree)
    t2 = time.perf_counter()
    locator = GridLocator(tree, boundaries.shapes)
    t3 = time.perf_counter()
    matcher = PlaceMatcher.from_tree(tree)
    t4 = time.perf_counter()
    gc.collect()
    after_start = rss().rss
    # GEOS builds a prepared polygon's index on its first lookup: touch them all.
    x0, y0, x1, y1 = boundaries.shapes[tree.roots[0]].bounds
    rng = random.Random(1)
    for _ in range(20_000):
        locator.locate(rng.uniform(y0, y1), rng.uniform(x0, x1))
    return {
        "gazetteer_seconds": round(t1 - t0, 3),
        "load_check_seconds": round(t2 - t1, 2),
        "problems": len(boundaries.problems),
        "locator_build_seconds": round(t3 - t2, 3),
        "locator_parts": len(locator),
        "matcher_build_seconds": round(t4 - t3, 3),
        "places": len(matcher),
        "rss_mb": round((after_start - base) / 1e6, 1),
        "rss_in_use_mb": round((rss().rss - base) / 1e6, 1),
        "peak_rss_mb": round(
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / 1e6, 1
        ),
    }


def startup_in_subprocess(directory: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--startup", str(directory)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def run(args) -> dict:
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    tree = GridTree(district_records(rng, args.places))
    shapes = partition(
        tree,
        blob((112.80, 28.375), 0.17, 64, rng),
        seed=args.seed,
        vertices_per_leaf=VERTICES_PER_LEAF,
    )
    say(f"generated {len(tree)} grids in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_gazetteer(directory / "grids.csv", tree)
        geojson_bytes = write_geojson(directory / "boundaries.geojson", shapes)
        start = startup_in_subprocess(directory)
    say(f"start-up: {start}")

    locator = GridLocator(tree, shapes)
    x0, y0, x1, y1 = shapes["WC"].bounds
    points = [(rng.uniform(y0, y1), rng.uniform(x0, x1)) for _ in range(args.points)]
    located, locate_s = timed(locator.locate, points)
    sample = rng.sample(range(len(points)), min(args.check, len(points)))
    wrong = sum(located[i] != brute_force(tree, shapes, *points[i]) for i in sample)

    matcher = PlaceMatcher.from_tree(tree)
    names = [place for r in tree for place in r.places]
    texts = [(t,) for t in report_texts(args.texts, names, rng)]
    matched, match_s = timed(matcher.match, texts)

    levels = {}
    for r in tree:
        levels[r.level] = levels.get(r.level, 0) + 1
    return {
        "machine": f"{platform.machine()} {psutil.cpu_count()} cores, Python "
        f"{platform.python_version()}, shapely {shapely.__version__} "
        f"(GEOS {'.'.join(map(str, shapely.geos_version))})",
        "grids": levels,
        "vertices": vertex_stats(tree, shapes),
        "geojson_mb": round(geojson_bytes / 1e6, 1),
        "startup": start,
        "points": len(points),
        "located_share": round(sum(c is not None for c in located) / len(points), 3),
        "brute_force_checked": len(sample),
        "brute_force_mismatches": wrong,
        "locate_ms": percentiles_ms(locate_s),
        "texts": len(texts),
        "matched_share": round(sum(m is not None for m in matched) / len(texts), 3),
        "match_ms": percentiles_ms(match_s),
        "targets": {"locate_p99_ms": TARGET_P99_MS, "match_p99_ms": TARGET_P99_MS},
    }


def print_table(r: dict) -> None:
    loc, mat, start = r["locate_ms"], r["match_ms"], r["startup"]
    grids = " / ".join(f"{r['grids'].get(k, 0):,} {k}" for k in (*COUNTS, "micro"))
    verts = ", ".join(
        f"{k} {v['min']}–{v['max']} (median {v['median']})" for k, v in r["vertices"].items()
    )
    rows = [
        ("grids", grids),
        ("vertices per polygon", verts),
        ("gazetteer CSV load", f"{start['gazetteer_seconds']} s"),
        (
            "GeoJSON load + check",
            (
                f"{start['load_check_seconds']} s for {r['geojson_mb']} MB, "
                f"{start['problems']} problems"
            ),
        ),
        (
            "GridLocator build",
            (f"{start['locator_build_seconds']} s, {start['locator_parts']:,} polygon parts"),
        ),
        ("PlaceMatcher build", f"{start['matcher_build_seconds']} s, {start['places']:,} places"),
        (
            "memory (RSS growth)",
            (
                f"+{start['rss_mb']} MB after start, +{start['peak_rss_mb']} MB "
                f"peak, +{start['rss_in_use_mb']} MB after 20,000 lookups"
            ),
        ),
        (
            "locate p50 / p99 / max",
            (f"{loc['p50']} / {loc['p99']} / {loc['max']} ms (target p99 ≤ {TARGET_P99_MS} ms)"),
        ),
        (
            "locate: inside a grid",
            (
                f"{r['located_share']:.1%} of {r['points']:,} points, "
                f"{r['brute_force_mismatches']} mismatches with brute force "
                f"in {r['brute_force_checked']}"
            ),
        ),
        (
            "match p50 / p99 / max",
            (f"{mat['p50']} / {mat['p99']} / {mat['max']} ms (target p99 ≤ {TARGET_P99_MS} ms)"),
        ),
        ("match: a place found", f"{r['matched_share']:.1%} of {r['texts']:,} texts"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{r['machine']}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--places", type=int, default=20_000)
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--check", type=int, default=500, help="points checked by brute force")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.startup:
        print(json.dumps(startup(args.startup)))
        return
    result = run(args)
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    ok = (
        result["locate_ms"]["p99"] <= TARGET_P99_MS
        and result["match_ms"]["p99"] <= TARGET_P99_MS
        and result["brute_force_mismatches"] == 0
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
