"""Train, evaluate and run the department classifier.

    python train.py fit [--data A.csv B.csv …] [--corrections] [--out PATH] [--report DIR]
    python train.py evaluate [--model PATH] FILE.csv [--map MAP] [--json] [--report DIR]
    python train.py predict [--model PATH] FILE.csv --out OUT.csv

CSV files are UTF-8 with columns `text` and `label` (optional `title`, joined before `text`;
optional `id` for predict). Without --data, fit trains on the seed corpus; without --model the
default model of config.toml is used, trained from the seed corpus first when it does not
exist yet. --report DIR writes the confusion matrix, the reliability diagram (calibration.png)
and report.json with the expected calibration error (ECE), for fit measured on held-out folds.
--map maps the file's labels to the model's (see read_label_map in classifier/data.py and
classifier/teddy2020c_map.toml). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

NO_STORE_NOTICE = "没有找到案件库，跳过人工更正数据"
EXAMPLE_MAP = Path(__file__).resolve().parent / "classifier" / "teddy2020c_map.toml"
LISTED_LABELS = 20  # labels named in a message, the rest counted


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- fit -------------------------------------------------------------------------------------


def cmd_fit(args, settings) -> int:
    from classifier.data import corpus_files
    from classifier.training import TrainParams, train_from_files

    paths = [Path(p) for p in args.data] or corpus_files(settings.corpus_dir)
    out = Path(args.out) if args.out else settings.model_path
    check_fit_paths(paths, out, args.report)
    extra = load_corrections(settings) if args.corrections else []
    params = TrainParams(cv_folds=args.cv_folds, n_jobs=args.jobs)
    say(
        "训练数据: "
        + ", ".join(str(p) for p in paths)
        + (f" + {len(extra)} 条人工更正" if extra else "")
    )
    userdict = settings.userdict_path if settings.userdict_path.exists() else None
    result = train_from_files(paths, params, userdict=userdict, extra=extra, progress=say)
    result.model.save(out)
    if result.report:
        say("交叉验证结果（概率在留出的折上校准和测量）:")
        say(result.report.table())
    if args.report and result.report is not None:
        proba = result.oof_probabilities
        write_report(
            Path(args.report),
            result.report,
            proba.max(1),
            proba.argmax(1) == result.truth,
            "交叉验证",
        )
    say(
        f"模型已保存: {out}  (版本 {result.model.model_version}, "
        f"标签 {', '.join(result.model.labels)})"
    )
    return 0


def check_fit_paths(paths: list[Path], out: Path, report: str | None) -> None:
    """Input files that are there and outputs that can be written, checked before training
    (a mistake costs a second, not a training run)."""
    from classifier.data import DataError

    for path in paths:
        if not path.exists():
            raise DataError(f"文件不存在: {path}")
        if path.is_dir():
            raise DataError(f"{path} 是目录，不是 CSV 文件")
    if out.is_dir():
        raise DataError(f"--out {out} 是目录；请给出模型文件的路径，例如 {out / 'model.npz'}")
    if report and Path(report).exists() and not Path(report).is_dir():
        raise DataError(f"--report {report} 已存在且不是目录；请给出一个目录")


def write_report(
    folder: Path, report, confidences: np.ndarray, correct: np.ndarray, title: str
) -> None:
    """The plots and report.json (the report, ECE and reliability bins) into folder."""
    from classifier.metrics import reliability, write_plots

    for path in write_plots(report, confidences, correct, folder, title):
        say(f"图表: {path}")
    data = report.as_dict() | {"reliability": reliability(confidences, correct).as_dict()}
    path = folder / "report.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    say(f"报告: {path}（校准误差 ECE {report.ece:.4f}）")


def load_corrections(settings) -> list[tuple[str, str]]:
    """Staff corrections from the case store, or [] with a notice when there is no store."""
    try:
        from models.cases import corrections_for_training
        from models.engine import make_engine, session_scope
    except ImportError:
        say(NO_STORE_NOTICE)
        return []
    url = settings.database_url
    if url.startswith("sqlite") and ":memory:" not in url:
        db_file = Path(url.split(":///", 1)[-1])
        if not db_file.is_file():
            say(f"{NO_STORE_NOTICE}（{db_file} 不存在）")
            return []

    async def fetch() -> list[tuple[str, str]]:
        engine = make_engine(url)
        try:
            async with session_scope(engine) as session:
                return await corrections_for_training(session)
        finally:
            await engine.dispose()

    from sqlalchemy.exc import SQLAlchemyError

    try:
        pairs = asyncio.run(fetch())
    except (SQLAlchemyError, OSError) as exc:  # no database or no tables: train without
        say(f"{NO_STORE_NOTICE}（{type(exc).__name__}: {str(exc).splitlines()[0][:200]}）")
        return []
    pairs = [(t, lab) for t, lab in pairs if t and lab]
    say(f"人工更正数据: {len(pairs)} 条")
    return pairs


# ---- evaluate / predict ----------------------------------------------------------------------


def open_suggester(args, settings):
    """The Suggester for --model, or the default model (trained first if missing)."""
    from classifier import Suggester

    if not args.model and not settings.model_path.exists():
        say(f"默认模型不存在，正在用内置语料训练 → {settings.model_path}")
    return Suggester.from_settings(settings, model_path=args.model)


def timed_suggestions(suggester, texts: list[str]) -> tuple[list, list[float]]:
    """suggest() for each text, one at a time, with the seconds each took."""
    suggester.suggest("预热")  # first call pays one-off costs (tokenizer, caches)
    out, seconds = [], []
    for text in texts:
        t0 = time.perf_counter()
        out.append(suggester.suggest(text))
        seconds.append(time.perf_counter() - t0)
    return out, seconds


def cmd_evaluate(args, settings) -> int:
    from classifier.data import DataError, read_label_map, read_rows
    from classifier.metrics import (
        classification_report,
        expected_calibration_error,
        in_file_terms,
        percentile_ms,
    )

    rows = read_rows(args.file, need_label=True)
    rows = [r for r in rows if r.label]
    if not rows:
        raise DataError(f"{args.file} 没有带 label 的数据行")
    to_file = read_label_map(args.map) if args.map else {}
    suggester = open_suggester(args, settings)
    as_file = file_terms(args, {r.label for r in rows}, suggester.labels, to_file)
    suggestions, seconds = timed_suggestions(suggester, [r.text for r in rows])
    mapped = [in_file_terms(s.top, as_file) for s in suggestions]
    predicted = [label for label, _ in mapped]
    confidences = np.array([p for _, p in mapped])
    correct = np.array([label == r.label for label, r in zip(predicted, rows)])
    report = classification_report(
        [r.label for r in rows], predicted, list(dict.fromkeys(as_file.values()))
    )
    report.ece = expected_calibration_error(confidences, correct)
    auto = np.array([s.auto_dispatch for s in suggestions])
    result = report.as_dict() | {
        "latency_ms_p50": round(percentile_ms(seconds, 50), 4),
        "latency_ms_p99": round(percentile_ms(seconds, 99), 4),
        "unsure": sum(1 for s in suggestions if s.label is None),
        "confident_share": round(sum(s.confident for s in suggestions) / len(rows), 4),
        "auto_dispatch_share": round(float(auto.mean()), 4),
        "auto_dispatch_precision": round(float(correct[auto].mean()), 4) if auto.any() else None,
        "model_version": suggester.model_version,
        "label_map": str(args.map) if args.map else None,
    }
    if args.report:
        write_report(Path(args.report), report, confidences, correct, "评估")
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(report.table())
        print(
            f"每条耗时: p50 {result['latency_ms_p50']:.3f} ms, "
            f"p99 {result['latency_ms_p99']:.3f} ms；无法判断 {result['unsure']} 条；"
            f"模型 {result['model_version']}"
        )
        if result["auto_dispatch_precision"] is not None:
            print(
                f"自动派单（概率 ≥ {suggester.auto_dispatch_threshold}）: "
                f"{result['auto_dispatch_share']:.1%} 的留言，其中 "
                f"{result['auto_dispatch_precision']:.1%} 判对"
            )
    return 0


def file_terms(
    args, file_labels: set[str], model_labels: tuple[str, ...], to_file: dict[str, str]
) -> dict[str, str]:
    """Each model label → the label it counts as in the file (itself, or by --map); a clear
    error when no label the model gives is in the file."""
    from classifier.data import DataError

    unknown = sorted(set(to_file) - set(model_labels))
    if unknown:
        raise DataError(
            f"映射文件 {args.map} 中的模型标签 {listing(unknown)} 不在模型中；"
            f"模型的标签: {listing(model_labels)}"
        )
    as_file = {lab: to_file.get(lab, lab) for lab in model_labels}
    shared = file_labels & set(as_file.values())
    if not shared:
        mapped = f"经 {args.map} 映射后，" if args.map else ""
        raise DataError(
            f"{mapped}{args.file} 的标签与模型的标签没有一个相同，无法评估（准确率只会是 0）。"
            f"文件中的标签: {listing(sorted(file_labels))}；"
            f"模型{'映射后' if args.map else ''}的标签: {listing(list(dict.fromkeys(as_file.values())))}。"
            "请用 --map 映射文件把文件的标签对应到模型的标签（CSV 列 label,model_label；"
            '或 TOML："文件标签" = ["模型标签", …]），'
            f"例如 --map {shown_path(EXAMPLE_MAP)}"
        )
    missing = sorted(file_labels - shared)
    if missing:
        say(
            f"警告: {args.file} 中的标签 {listing(missing)} 模型给不出，这些行都会算作判错"
            + ("" if args.map else "（可用 --map 映射标签）")
        )
    return as_file


def listing(labels: list[str] | tuple[str, ...]) -> str:
    """Labels for a message: the first LISTED_LABELS, then how many more."""
    shown = ", ".join(labels[:LISTED_LABELS])
    more = len(labels) - LISTED_LABELS
    return shown + (f" 等共 {len(labels)} 个" if more > 0 else "")


def shown_path(path: Path) -> str:
    """path relative to the working folder when it is inside it, else absolute."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative


def cmd_predict(args, settings) -> int:
    from classifier.data import read_rows

    rows = read_rows(args.file, need_label=False)
    suggester = open_suggester(args, settings)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "label", "confidence"])
        for row in rows:
            s = suggester.suggest(row.text)
            writer.writerow([row.id, s.label or "unsure", f"{s.probability:.4f}"])
    tmp.replace(out)  # never leave half a file under the requested name
    say(f"已写入 {len(rows)} 行: {out}")
    return 0


# ---- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py", description="训练和评估部门分类模型")
    parser.add_argument("--config", help="config.toml 路径（默认 WHISTLE_CONFIG 或仓库自带）")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="训练模型")
    fit.add_argument(
        "--data",
        action="extend",
        nargs="+",
        default=[],
        metavar="CSV",
        help="训练数据（可给多个、可重复）；不给则用语料目录中的全部 CSV",
    )
    fit.add_argument("--corrections", action="store_true", help="加入案件库中的人工更正")
    fit.add_argument("--out", help="模型输出路径（默认 config.toml 的 model_path）")
    fit.add_argument(
        "--report", metavar="DIR", help="写出混淆矩阵、可靠性图和 report.json（含校准误差 ECE）"
    )
    fit.add_argument("--cv-folds", type=int, default=5, help="交叉验证折数（默认 5）")
    fit.add_argument("--jobs", type=int, default=2, help="并行进程数（默认 2）")

    ev = sub.add_parser("evaluate", help="在带标签的 CSV 上评估")
    ev.add_argument("file", metavar="FILE.csv")
    ev.add_argument("--model", help="模型路径（默认 config.toml 的 model_path）")
    ev.add_argument("--json", action="store_true", help="以一个 JSON 对象输出到 stdout")
    ev.add_argument(
        "--map",
        metavar="MAP",
        help="标签映射文件（CSV 列 label,model_label，或 TOML），把文件的标签对应到模型的标签",
    )
    ev.add_argument(
        "--report", metavar="DIR", help="写出混淆矩阵、可靠性图和 report.json（含校准误差 ECE）"
    )

    pr = sub.add_parser("predict", help="为 CSV 中的每条文本预测标签")
    pr.add_argument("file", metavar="FILE.csv")
    pr.add_argument("--model", help="模型路径（默认 config.toml 的 model_path）")
    pr.add_argument(
        "--out", required=True, metavar="OUT.csv", help="输出 CSV（id,label,confidence）"
    )
    return parser


COMMANDS = {"fit": cmd_fit, "evaluate": cmd_evaluate, "predict": cmd_predict}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from classifier import DataError, ModelError
    from whistle.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config)
        return COMMANDS[args.command](args, settings)
    except (DataError, ModelError, ConfigError, ValueError, OSError) as exc:
        say(f"错误: {exc}")
        return 2
    except KeyboardInterrupt:
        say("已中断")
        return 130


if __name__ == "__main__":
    sys.exit(main())
