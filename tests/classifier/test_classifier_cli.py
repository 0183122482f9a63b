"""train.py through a real subprocess: fit, evaluate (--json contract), predict, bad input."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "classifier" / "corpus"
JSON_KEYS = {
    "accuracy",
    "macro_f1",
    "n",
    "per_class",
    "latency_ms_p50",
    "latency_ms_p99",
    "ece",
    "auto_dispatch_share",
    "auto_dispatch_precision",
}
TEDDY_MAP = REPO / "classifier" / "teddy2020c_map.toml"
# The line README gives for `fit` (as the lead merges it): it must run on a fresh clone.
README_FIT = (
    "python train.py fit --data classifier/corpus/*.csv --out var/model.npz --report var/report"
)


def make_config(folder: Path, *, model_path: Path, database: Path | None = None) -> Path:
    """A copy of config.toml whose classifier and database paths point into `folder`."""
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    replacements = {
        "model_path": str(model_path),
        "corpus_dir": str(CORPUS),
        "userdict": str(REPO / "classifier" / "userdict.txt"),
    }
    for key, value in replacements.items():
        text = re.sub(rf'(?m)^{key}\s*=\s*"[^"]*"', f'{key} = "{value}"', text)
    db = database or folder / "none" / "whistle.db"
    text = re.sub(r'(?m)^url\s*=\s*"sqlite[^"]*"', f'url = "sqlite+aiosqlite:///{db}"', text)
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(*args: str, config: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["WHISTLE_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """`train.py fit` once for the module: the model file, its report folder and the output."""
    folder = tmp_path_factory.mktemp("cli")
    config = make_config(folder, model_path=folder / "default.npz")
    out, report = folder / "fit.npz", folder / "report"
    data = [arg for f in sorted(CORPUS.glob("*.csv")) for arg in ("--data", str(f))]
    proc = run(
        "fit",
        *data,
        "--out",
        str(out),
        "--report",
        str(report),
        "--cv-folds",
        "3",
        "--jobs",
        "1",
        config=config,
    )
    assert proc.returncode == 0, proc.stderr
    return folder, config, out, report, proc


@pytest.fixture(scope="module")
def labelled_csv(tmp_path_factory) -> Path:
    """Messages written for these tests, with title/text/label columns and one blank row."""
    rows = [
        ["1", "停水", "小区停水两天了，自来水一直没来", "water"],
        ["2", "", "老板拖欠三个月工资不发", "labor"],
        ["3", "油烟", "楼下饭店油烟直排，呛得开不了窗", "environment"],
        ["4", "", "公交车太久不来，司机还甩站", "transport"],
        ["5", "", "   ", "water"],
    ]
    return write_csv(
        tmp_path_factory.mktemp("data") / "eval.csv", ["id", "title", "text", "label"], rows
    )


@pytest.fixture(scope="module")
def categories_csv(tmp_path_factory) -> Path:
    """Messages written for these tests, labelled with the Teddy Cup's seven categories."""
    rows = [
        ["小区停水两天了，自来水一直没来", "城乡建设"],
        ["物业不修电梯，维修基金也不让用", "城乡建设"],
        ["老板拖欠三个月工资不发，也不签劳动合同", "劳动和社会保障"],
        ["楼下饭店油烟直排，呛得开不了窗", "环境保护"],
        ["公交车半小时不来一趟，司机还甩站", "交通运输"],
        ["孩子今年上小学，想问入学划片范围和报名时间", "教育文体"],
        ["医院挂号太难，专家号全被号贩子抢走", "卫生计生"],
        ["超市卖过期牛奶，价格欺诈，投诉没人管", "商贸旅游"],
    ]
    return write_csv(
        tmp_path_factory.mktemp("categories") / "categories.csv", ["text", "label"], rows
    )


def test_fit_shows_progress_report_and_writes_model_and_plots(fitted):
    _, _, out, report, proc = fitted
    assert "分词" in proc.stderr and "交叉验证结果" in proc.stderr
    assert "宏平均 F1" in proc.stderr and "模型已保存" in proc.stderr
    assert "校准误差 ECE" in proc.stderr
    assert out.is_file()
    for name in ("confusion_matrix.png", "calibration.png"):
        png = report / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert 0 < data["ece"] <= 0.05  # measured on held-out folds
    assert data["reliability"]["ece"] == pytest.approx(data["ece"])
    assert sum(row["n"] for row in data["reliability"]["rows"]) == data["n"]


def test_readme_fit_example_runs_as_written_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    (clone / "classifier").mkdir(parents=True)
    (clone / "train.py").symlink_to(REPO / "train.py")
    (clone / "classifier" / "corpus").symlink_to(CORPUS)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WHISTLE_CONFIG")}
    command = README_FIT.replace("python ", shlex.quote(sys.executable) + " ", 1)
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(load_model_labels(clone / "var" / "model.npz")) == len(list(CORPUS.glob("*.csv")))
    assert (clone / "var" / "report" / "calibration.png").is_file()
    assert (clone / "var" / "report" / "report.json").is_file()


def load_model_labels(path: Path) -> tuple[str, ...]:
    from classifier import load_model

    return load_model(path).labels


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        # README's earlier line: water.csv as given, more.csv does not exist.
        (["--data", "classifier/corpus/water.csv", "--data", "more.csv"], "文件不存在: more.csv"),
        (["--data", "classifier/corpus"], "是目录"),
        (["--out", "{tmp}"], "--out"),
        (["--report", "{tmp}/file.txt"], "--report"),
    ],
)
def test_fit_input_mistakes_are_one_line_errors_before_training(fitted, tmp_path, args, fragment):
    _, config, _, _, _ = fitted
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--data" not in args:
        args = ["--data", str(CORPUS / "water.csv"), "--data", str(CORPUS / "labor.csv"), *args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "m.npz")]
    proc = run("fit", *args, config=config)
    assert_clean_failure(proc, fragment)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("错误")]
    assert len(errors) == 1 and fragment in errors[0]
    assert "分词" not in proc.stderr  # refused before any training
    assert not (tmp_path / "m.npz").exists()


def test_csv_with_an_unclosed_quote_is_a_clear_error(fitted, tmp_path):
    _, config, _, _, _ = fitted
    bad = tmp_path / "quote.csv"
    bad.write_text(
        'text,label\n小区停水,water\n"电梯坏了，物业不修,housing\n拖欠工资,labor\n',
        encoding="utf-8",
    )
    assert_clean_failure(
        run(
            "fit",
            "--data",
            str(bad),
            "--data",
            str(CORPUS / "labor.csv"),
            "--out",
            str(tmp_path / "m.npz"),
            config=config,
        ),
        "quote.csv 第",
        "引号",
    )


def test_evaluate_json_contract(fitted, labelled_csv):
    _, config, out, _, _ = fitted
    proc = run("evaluate", "--model", str(out), str(labelled_csv), "--json", config=config)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert JSON_KEYS <= set(result)
    assert result["n"] == 5
    assert result["unsure"] == 1  # the blank message
    assert result["accuracy"] == pytest.approx(0.8)
    assert set(result["per_class"]) >= {"water", "labor", "environment", "transport"}
    assert result["per_class"]["labor"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 1,
    }
    assert 0 < result["latency_ms_p50"] <= result["latency_ms_p99"]


def test_evaluate_table_and_report(fitted, labelled_csv, tmp_path):
    _, config, out, _, _ = fitted
    proc = run(
        "evaluate", "--model", str(out), str(labelled_csv), "--report", str(tmp_path), config=config
    )
    assert proc.returncode == 0, proc.stderr
    assert "准确率" in proc.stdout and "混淆矩阵" in proc.stdout and "p99" in proc.stdout
    assert (tmp_path / "confusion_matrix.png").is_file()
    assert (tmp_path / "calibration.png").is_file()


def test_evaluate_labels_the_model_never_gives_is_a_clear_error(fitted, categories_csv):
    _, config, out, _, _ = fitted
    proc = run("evaluate", "--model", str(out), str(categories_csv), config=config)
    assert_clean_failure(
        proc,
        "没有一个相同",
        "文件中的标签: 交通运输, 劳动和社会保障, 卫生计生",
        "模型的标签: commerce, education",
        "--map",
        "teddy2020c_map.toml",
    )
    assert "城乡建设" in proc.stderr and "water" in proc.stderr
    assert proc.stdout == ""  # no table of zeros


@pytest.mark.parametrize("kind", ["toml", "csv"])
def test_evaluate_with_a_map_reports_in_the_files_labels(fitted, categories_csv, tmp_path, kind):
    _, config, out, _, _ = fitted
    label_map = TEDDY_MAP
    if kind == "csv":
        from classifier.data import read_label_map

        label_map = write_csv(
            tmp_path / "map.csv",
            ["label", "model_label"],
            [[f, m] for m, f in read_label_map(TEDDY_MAP).items()],
        )
    proc = run(
        "evaluate",
        "--model",
        str(out),
        str(categories_csv),
        "--map",
        str(label_map),
        "--json",
        config=config,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["per_class"]) == {
        "城乡建设",
        "劳动和社会保障",
        "环境保护",
        "交通运输",
        "教育文体",
        "卫生计生",
        "商贸旅游",
    }
    assert result["n"] == 8 and result["accuracy"] >= 0.75
    assert 0.0 <= result["ece"] <= 1.0 and result["label_map"] == str(label_map)


def test_evaluate_table_with_chinese_labels(fitted, categories_csv):
    _, config, out, _, _ = fitted
    proc = run(
        "evaluate", "--model", str(out), str(categories_csv), "--map", str(TEDDY_MAP), config=config
    )
    assert proc.returncode == 0, proc.stderr
    assert "校准误差 ECE" in proc.stdout and "自动派单" in proc.stdout
    from classifier.metrics import display_width

    matrix = proc.stdout.split("混淆矩阵（行=真实，列=预测）:\n")[1].splitlines()[:8]
    assert "劳动和社会保障" in proc.stdout
    assert len({display_width(line) for line in matrix}) == 1


def test_partly_overlapping_labels_are_warned_about(fitted, tmp_path):
    _, config, out, _, _ = fitted
    mixed = write_csv(
        tmp_path / "mixed.csv",
        ["text", "label"],
        [["小区停水两天了", "water"], ["老板拖欠工资", "劳动和社会保障"]],
    )
    proc = run("evaluate", "--model", str(out), str(mixed), "--json", config=config)
    assert proc.returncode == 0, proc.stderr
    assert "警告" in proc.stderr and "劳动和社会保障" in proc.stderr and "--map" in proc.stderr
    assert json.loads(proc.stdout)["n"] == 2


def test_map_naming_labels_the_model_lacks_is_a_clear_error(fitted, categories_csv, tmp_path):
    _, config, out, _, _ = fitted
    bad = tmp_path / "map.toml"
    bad.write_text('"城乡建设" = ["water", "roads"]\n', encoding="utf-8")
    assert_clean_failure(
        run("evaluate", "--model", str(out), str(categories_csv), "--map", str(bad), config=config),
        "map.toml",
        "roads",
        "不在模型中",
    )


def test_predict_writes_id_label_confidence(fitted, tmp_path):
    _, config, out, _, _ = fitted
    huge = "孩子入学划片咨询，" + "请问" * 50_000  # 100 KB+ in one CSV field
    src = write_csv(tmp_path / "in.csv", ["text"], [["电梯坏了一个月物业不修"], ["😀😀"], [huge]])
    dst = tmp_path / "out" / "pred.csv"
    proc = run("predict", "--model", str(out), str(src), "--out", str(dst), config=config)
    assert proc.returncode == 0, proc.stderr
    with dst.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert [r["label"] for r in rows] == ["housing", "unsure", "education"]
    assert float(rows[1]["confidence"]) == 0.0
    assert 0.0 < float(rows[0]["confidence"]) <= 1.0
    assert list(rows[0]) == ["id", "label", "confidence"]


def test_without_model_the_default_is_built_then_reused(fitted, labelled_csv):
    folder, config, _, _, _ = fitted
    default = folder / "default.npz"
    first = run("evaluate", str(labelled_csv), "--json", config=config)
    assert first.returncode == 0, first.stderr
    assert "默认模型不存在" in first.stderr and default.is_file()
    second = run("evaluate", str(labelled_csv), "--json", config=config)
    assert second.returncode == 0 and "默认模型不存在" not in second.stderr
    assert json.loads(second.stdout)["model_version"] == json.loads(first.stdout)["model_version"]


def test_missing_columns_is_a_clear_error(fitted, tmp_path):
    _, config, out, _, _ = fitted
    bad = write_csv(tmp_path / "cols.csv", ["content", "category"], [["停水", "water"]])
    assert_clean_failure(
        run("fit", "--data", str(bad), "--out", str(tmp_path / "m.npz"), config=config),
        "cols.csv",
        "缺少列",
    )
    assert not (tmp_path / "m.npz").exists()
    assert_clean_failure(run("evaluate", "--model", str(out), str(bad), config=config), "缺少列")


def test_non_utf8_csv_is_a_clear_error(fitted, tmp_path):
    _, config, out, _, _ = fitted
    bad = tmp_path / "gbk.csv"
    bad.write_bytes("text,label\n小区停水三天了,water\n".encode("gbk"))
    assert_clean_failure(
        run(
            "predict",
            "--model",
            str(out),
            str(bad),
            "--out",
            str(tmp_path / "p.csv"),
            config=config,
        ),
        "gbk.csv",
        "UTF-8",
    )
    assert not (tmp_path / "p.csv").exists()


def test_broken_model_is_refused_naming_the_file(fitted, labelled_csv, tmp_path):
    _, config, _, _, _ = fitted
    bad = tmp_path / "broken.skops"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert_clean_failure(
        run("evaluate", "--model", str(bad), str(labelled_csv), config=config), "broken.skops"
    )


def test_single_example_label_is_skipped_with_a_warning(fitted, tmp_path):
    _, config, _, _, _ = fitted
    extra = write_csv(tmp_path / "extra.csv", ["text", "label"], [["菜市场的秤不准", "孤例"]])
    proc = run(
        "fit",
        "--data",
        str(CORPUS / "water.csv"),
        "--data",
        str(CORPUS / "labor.csv"),
        "--data",
        str(extra),
        "--out",
        str(tmp_path / "m.npz"),
        "--cv-folds",
        "3",
        "--jobs",
        "1",
        config=config,
    )
    assert proc.returncode == 0, proc.stderr
    assert "孤例" in proc.stderr and "只有 1 条" in proc.stderr
    assert "标签 labor, water" in proc.stderr


def test_corrections_without_a_store_print_a_notice(fitted, tmp_path):
    _, config, _, _, _ = fitted
    proc = run(
        "fit",
        "--data",
        str(CORPUS / "water.csv"),
        "--data",
        str(CORPUS / "labor.csv"),
        "--corrections",
        "--out",
        str(tmp_path / "m.npz"),
        "--cv-folds",
        "3",
        "--jobs",
        "1",
        config=config,
    )
    assert proc.returncode == 0, proc.stderr
    assert "没有找到案件库，跳过人工更正数据" in proc.stderr
    assert (tmp_path / "m.npz").is_file()


async def _store_with_one_correction(db: Path, settings) -> str:
    """A real SQLite case store where staff sent a 'water' suggestion to labor instead."""
    from models import cases, deadlines, reference
    from models.engine import create_all, make_engine, session_scope

    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    text = "工地老板拖欠农民工工资，说等开发商拨款"
    try:
        await create_all(engine)
        async with session_scope(engine) as session:
            await reference.sync_reference_data(session, settings)
        now = datetime(2026, 3, 2, 10, 0)
        async with session_scope(engine) as session:
            case = await cases.create_case(
                session,
                reporter_telegram_id=555,
                text=text,
                now=now,
                suggestions=[("water", 0.4)],
                model_version="test",
            )
            await cases.dispatch(
                session,
                case.id,
                "labor",
                cases.Actor.staff(9001),
                now,
                rules=deadlines.Rules.from_settings(settings),
            )
    finally:
        await engine.dispose()
    return text


def test_corrections_from_the_case_store_are_used(tmp_path):
    from whistle.config import load_settings

    db = tmp_path / "store.db"
    config = make_config(tmp_path, model_path=tmp_path / "m.npz", database=db)
    asyncio.run(_store_with_one_correction(db, load_settings(config)))
    proc = run(
        "fit",
        "--data",
        str(CORPUS / "water.csv"),
        "--data",
        str(CORPUS / "labor.csv"),
        "--corrections",
        "--out",
        str(tmp_path / "m.npz"),
        "--cv-folds",
        "3",
        "--jobs",
        "1",
        config=config,
    )
    assert proc.returncode == 0, proc.stderr
    assert "人工更正数据: 1 条" in proc.stderr
    from classifier import load_model

    counts = load_model(tmp_path / "m.npz").meta["label_counts"]
    water_rows = sum(1 for _ in csv.DictReader((CORPUS / "water.csv").open(encoding="utf-8")))
    labor_rows = sum(1 for _ in csv.DictReader((CORPUS / "labor.csv").open(encoding="utf-8")))
    assert counts == {"labor": labor_rows + 1, "water": water_rows}
