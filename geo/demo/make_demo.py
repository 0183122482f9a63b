"""Generate the demo district's gazetteer and boundaries (made-up names and polygons).

    python geo/demo/make_demo.py [OUT_DIR]   # default: rewrites geo/demo/grids.csv and
                                             # geo/demo/boundaries.geojson

Deterministic (fixed seed): running it again gives the same files. Every name and place below
is invented for the demo.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from shapely.geometry import mapping

from geo.demo.synth import blob, partition
from geo.grids import GridRecord, GridTree, write_gazetteer

SEED = 13
CENTER = (112.80, 28.375)  # middle of config.toml's bbox [112.55, 28.15, 113.05, 28.60]
RADIUS = 0.17
NUMBERS = "一二三四五六七八九十"

DISTRICT = ("WC", "望城区")
STREETS = [("WC-YLD", "月亮岛街道"), ("WC-GTL", "高塘岭街道"), ("WC-BLH", "白鹭湖街道")]
# (code, name, grids per community or per 片)
COMMUNITIES = {
    "WC-YLD": [
        ("WC-YLD-YX", "银星村", 5),
        ("WC-YLD-YT", "月塘社区", 5),
        ("WC-YLD-LS", "柳沙村", 4),
    ],
    "WC-GTL": [
        ("WC-GTL-XC", "新城社区", 6),
        ("WC-GTL-MY", "梅园社区", 5),
        ("WC-GTL-GH", "桂花坪村", 4),
    ],
    "WC-BLH": [("WC-BLH-BL", "白鹭社区", 5), ("WC-BLH-HT", "荷塘村", 0)],
}
AREAS = {"WC-BLH-HT": [("WC-BLH-HT-P1", "荷塘北片", 3), ("WC-BLH-HT-P2", "荷塘南片", 3)]}
MICROS = {
    "WC-YLD-YX-01": [
        ("A", "汉王陵片区微网格", ["汉王陵公园"]),
        ("B", "银星新苑微网格", ["银星新苑"]),
    ],
    "WC-GTL-XC-01": [
        ("A", "新城花园一期微网格", ["新城花园一期"]),
        ("B", "新城花园二期微网格", ["新城花园二期"]),
        ("C", "新城商业街微网格", ["新城商业街"]),
    ],
    "WC-GTL-MY-02": [("A", "梅园新村微网格", ["梅园新村"]), ("B", "梅园菜场微网格", ["梅园菜场"])],
    "WC-BLH-BL-03": [("A", "白鹭湾微网格", ["白鹭湾小区"]), ("B", "鹭鸣苑微网格", ["鹭鸣苑"])],
}
# Places the README and tests refer to.
FIXED_PLACES = {"WC-YLD-YX-01": ["森林海小区"], "WC-GTL-MY-01": ["梅园路"]}

STEMS = (
    "翠湖",
    "金桂",
    "锦绣",
    "丰泽",
    "和园",
    "枫林",
    "清溪",
    "云栖",
    "桃源",
    "玉兰",
    "东篱",
    "荷风",
    "书香",
    "瑞祥",
    "紫薇",
    "樟树",
    "文华",
    "滨江",
    "泰和",
    "康宁",
    "福临",
    "兴隆",
    "银杏",
    "竹溪",
    "映月",
    "长岭",
    "沙湾",
    "石桥",
    "杨柳",
    "青竹",
    "白果",
    "望湖",
    "晓园",
    "新桥",
    "汇景",
    "丹桂",
    "春晖",
    "秋实",
    "嘉禾",
    "润泽",
    "龙湾",
    "凤栖",
    "明珠",
    "金湾",
    "朝阳",
    "晴川",
    "芳草",
    "松涛",
    "柏林",
    "梧桐",
    "杏坛",
    "月湖",
    "星港",
    "安澜",
    "永丰",
    "广福",
    "三汊",
    "双塘",
    "莲花",
    "石门",
)
HOMES = ("小区", "花园", "家园", "苑", "雅居", "公寓")
ROADS = ("路", "街", "大道", "巷")
SHOPS = ("农贸市场", "菜市场", "建材市场")
SCHOOLS = ("小学", "中学", "幼儿园")


def records(rng: random.Random) -> list[GridRecord]:
    names = _place_names(rng)
    out = [GridRecord(DISTRICT[0], DISTRICT[1], "district")]
    for street, street_name in STREETS:
        out.append(GridRecord(street, street_name, "street", DISTRICT[0]))
        for community, name, count in COMMUNITIES[street]:
            out.append(
                GridRecord(
                    community,
                    name,
                    "community",
                    street,
                    (f"{name}服务中心" if name.endswith("社区") else f"{name}村部",),
                )
            )
            village = name if name.endswith("村") else None
            groups = itertools.count()  # 村组 are numbered across the whole village
            out += _grids(community, name, count, names, rng, village, groups)
            for area, area_name, area_count in AREAS.get(community, []):
                out.append(GridRecord(area, area_name, "area", community))
                out += _grids(area, area_name, area_count, names, rng, village, groups)
    return out


def _grids(parent, parent_name, count, names, rng, village, groups):
    out = []
    for i in range(1, count + 1):
        code = f"{parent}-{i:02d}"
        places = list(FIXED_PLACES.get(code, []))
        places += [next(names) for _ in range(rng.randint(2, 3))]
        if village:
            places.append(f"{village}{NUMBERS[next(groups) % 10]}组")
        out.append(
            GridRecord(code, f"{parent_name}第{NUMBERS[i - 1]}网格", "grid", parent, tuple(places))
        )
        for letter, micro_name, micro_places in MICROS.get(code, []):
            out.append(
                GridRecord(f"{code}-{letter}", micro_name, "micro", code, tuple(micro_places))
            )
    return out


def _place_names(rng: random.Random):
    """An endless supply of distinct invented place names: homes, roads, markets, schools."""
    names = [stem + kind for stem in STEMS for kind in HOMES + ROADS + SHOPS + SCHOOLS]
    rng.shuffle(names)
    yield from names


def feature_collection(tree: GridTree, shapes: dict) -> dict:
    features = []
    for r in sorted(tree, key=lambda r: r.code):
        features.append(
            {
                "type": "Feature",
                "properties": {"code": r.code, "name": r.name, "level": r.level},
                "geometry": mapping(shapes[r.code]),
            }
        )
    return {"type": "FeatureCollection", "name": "望城区演示网格（虚构）", "features": features}


def main(out_dir: Path = HERE) -> None:
    rng = random.Random(SEED)
    tree = GridTree(records(rng))
    outline = blob(CENTER, RADIUS, 64, rng)
    shapes = partition(tree, outline, seed=SEED)
    write_gazetteer(out_dir / "grids.csv", tree)
    text = json.dumps(feature_collection(tree, shapes), ensure_ascii=False, separators=(",", ":"))
    (out_dir / "boundaries.geojson").write_text(text + "\n", encoding="utf-8")
    levels = {}
    for r in tree:
        levels[r.level] = levels.get(r.level, 0) + 1
    print(f"{len(tree)} grids {levels}; boundaries {len(text) / 1024:.0f} KiB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
