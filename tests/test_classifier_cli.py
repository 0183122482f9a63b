"""train.py through a real subprocess: fit, evaluate (--json contract), predict, bad input."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "classifier" / "corpus"
JSON_KEYS = {"accuracy", "macro_f1", "n", "per_class", "latency_ms_p50", "latency_ms_p99"}


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
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


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
    proc = run("fit", *data, "--out", str(out), "--report", str(report), "--cv-folds", "3",
               "--jobs", "1", config=config)
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
    return write_csv(tmp_path_factory.mktemp("data") / "eval.csv",
                     ["id", "title", "text", "label"], rows)


def test_fit_shows_progress_report_and_writes_model_and_plots(fitted):
    _, _, out, report, proc = fitted
    assert "分词" in proc.stderr and "交叉验证结果" in proc.stderr
    assert "宏平均 F1" in proc.stderr and "模型已保存" in proc.stderr
    assert out.is_file()
    for name in ("confusion_matrix.png", "calibration.png"):
        png = report / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


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
    assert result["per_class"]["labor"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                            "support": 1}
    assert 0 < result["latency_ms_p50"] <= result["latency_ms_p99"]


def test_evaluate_table_and_report(fitted, labelled_csv, tmp_path):
    _, config, out, _, _ = fitted
    proc = run("evaluate", "--model", str(out), str(labelled_csv), "--report",
               str(tmp_path), config=config)
    assert proc.returncode == 0, proc.stderr
    assert "准确率" in proc.stdout and "混淆矩阵" in proc.stdout and "p99" in proc.stdout
    assert (tmp_path / "confusion_matrix.png").is_file()
    assert (tmp_path / "calibration.png").is_file()


def test_predict_writes_id_label_confidence(fitted, tmp_path):
    _, config, out, _, _ = fitted
    huge = "孩子入学划片咨询，" + "请问" * 50_000  # 100 KB+ in one CSV field
    src = write_csv(tmp_path / "in.csv", ["text"],
                    [["电梯坏了一个月物业不修"], ["😀😀"], [huge]])
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
    assert_clean_failure(run("fit", "--data", str(bad), "--out", str(tmp_path / "m.npz"),
                             config=config), "cols.csv", "缺少列")
    assert not (tmp_path / "m.npz").exists()
    assert_clean_failure(run("evaluate", "--model", str(out), str(bad), config=config),
                         "缺少列")


def test_non_utf8_csv_is_a_clear_error(fitted, tmp_path):
    _, config, out, _, _ = fitted
    bad = tmp_path / "gbk.csv"
    bad.write_bytes("text,label\n小区停水三天了,water\n".encode("gbk"))
    assert_clean_failure(run("predict", "--model", str(out), str(bad), "--out",
                             str(tmp_path / "p.csv"), config=config), "gbk.csv", "UTF-8")
    assert not (tmp_path / "p.csv").exists()


def test_broken_model_is_refused_naming_the_file(fitted, labelled_csv, tmp_path):
    _, config, _, _, _ = fitted
    bad = tmp_path / "broken.skops"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert_clean_failure(run("evaluate", "--model", str(bad), str(labelled_csv),
                             config=config), "broken.skops")


def test_single_example_label_is_skipped_with_a_warning(fitted, tmp_path):
    _, config, _, _, _ = fitted
    extra = write_csv(tmp_path / "extra.csv", ["text", "label"], [["菜市场的秤不准", "孤例"]])
    proc = run("fit", "--data", str(CORPUS / "water.csv"), "--data", str(CORPUS / "labor.csv"),
               "--data", str(extra), "--out", str(tmp_path / "m.npz"), "--cv-folds", "3",
               "--jobs", "1", config=config)
    assert proc.returncode == 0, proc.stderr
    assert "孤例" in proc.stderr and "只有 1 条" in proc.stderr
    assert "标签 labor, water" in proc.stderr


def test_corrections_without_a_store_print_a_notice(fitted, tmp_path):
    _, config, _, _, _ = fitted
    proc = run("fit", "--data", str(CORPUS / "water.csv"), "--data", str(CORPUS / "labor.csv"),
               "--corrections", "--out", str(tmp_path / "m.npz"), "--cv-folds", "3",
               "--jobs", "1", config=config)
    assert proc.returncode == 0, proc.stderr
    assert "没有找到案件库，跳过人工更正数据" in proc.stderr
    assert (tmp_path / "m.npz").is_file()


async def _store_with_one_correction(db: Path, settings) -> str:
    """A real SQLite case store where staff sent a 'water' suggestion to labor instead."""
    from models import store
    from models.db import create_all, make_engine, session_scope

    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    text = "工地老板拖欠农民工工资，说等开发商拨款"
    try:
        await create_all(engine)
        async with session_scope(engine) as session:
            await store.sync_reference_data(session, settings)
        now = datetime(2026, 3, 2, 10, 0)
        async with session_scope(engine) as session:
            case = await store.create_case(session, reporter_telegram_id=555, text=text,
                                           now=now, suggestions=[("water", 0.4)],
                                           model_version="test")
            await store.dispatch(session, case.id, "labor", store.Actor.staff(9001), now,
                                 rules=store.Rules.from_settings(settings))
    finally:
        await engine.dispose()
    return text


def test_corrections_from_the_case_store_are_used(tmp_path):
    from whistle.config import load_settings

    db = tmp_path / "store.db"
    config = make_config(tmp_path, model_path=tmp_path / "m.npz", database=db)
    asyncio.run(_store_with_one_correction(db, load_settings(config)))
    proc = run("fit", "--data", str(CORPUS / "water.csv"), "--data", str(CORPUS / "labor.csv"),
               "--corrections", "--out", str(tmp_path / "m.npz"), "--cv-folds", "3",
               "--jobs", "1", config=config)
    assert proc.returncode == 0, proc.stderr
    assert "人工更正数据: 1 条" in proc.stderr
    from classifier import load_model

    counts = load_model(tmp_path / "m.npz").meta["label_counts"]
    water_rows = sum(1 for _ in csv.DictReader((CORPUS / "water.csv").open(encoding="utf-8")))
    labor_rows = sum(1 for _ in csv.DictReader((CORPUS / "labor.csv").open(encoding="utf-8")))
    assert counts == {"labor": labor_rows + 1, "water": water_rows}
