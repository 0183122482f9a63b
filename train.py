"""Train, evaluate and run the department classifier.

    python train.py fit --data A.csv [--data B.csv …] [--corrections] [--out PATH] [--report DIR]
    python train.py evaluate [--model PATH] FILE.csv [--json] [--report DIR]
    python train.py predict [--model PATH] FILE.csv --out OUT.csv

CSV files are UTF-8 with columns `text` and `label` (optional `title`, joined before `text`;
optional `id` for predict). Without --model the default model of config.toml is used, trained
from the seed corpus first when it does not exist yet. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

NO_STORE_NOTICE = "没有找到案件库，跳过人工更正数据"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- fit -------------------------------------------------------------------------------------

def cmd_fit(args, settings) -> int:
    from classifier.data import corpus_files
    from classifier.metrics import write_plots
    from classifier.training import TrainParams, train_from_files

    paths = [Path(p) for p in args.data] or corpus_files(settings.corpus_dir)
    extra = load_corrections(settings) if args.corrections else []
    params = TrainParams(cv_folds=args.cv_folds, n_jobs=args.jobs)
    say("训练数据: " + ", ".join(str(p) for p in paths)
        + (f" + {len(extra)} 条人工更正" if extra else ""))
    userdict = settings.userdict_path if settings.userdict_path.exists() else None
    result = train_from_files(paths, params, userdict=userdict, extra=extra, progress=say)
    out = Path(args.out) if args.out else settings.model_path
    result.model.save(out)
    if result.report:
        say("交叉验证结果:")
        say(result.report.table())
    if args.report and result.report is not None:
        proba = result.oof_probabilities
        correct = proba.argmax(1) == result.truth
        for p in write_plots(result.report, proba.max(1), correct, Path(args.report),
                             "交叉验证"):
            say(f"图表: {p}")
    say(f"模型已保存: {out}  (版本 {result.model.model_version}, "
        f"标签 {', '.join(result.model.labels)})")
    return 0


def load_corrections(settings) -> list[tuple[str, str]]:
    """Staff corrections from the case store, or [] with a notice when there is no store."""
    try:
        from models.db import make_engine, session_scope
        from models.store import corrections_for_training
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
    from classifier.data import DataError, read_rows
    from classifier.metrics import classification_report, percentile_ms, write_plots

    rows = read_rows(args.file, need_label=True)
    rows = [r for r in rows if r.label]
    if not rows:
        raise DataError(f"{args.file} 没有带 label 的数据行")
    suggester = open_suggester(args, settings)
    suggestions, seconds = timed_suggestions(suggester, [r.text for r in rows])
    report = classification_report([r.label for r in rows], [s.label for s in suggestions],
                                   list(suggester.labels))
    result = report.as_dict() | {
        "latency_ms_p50": round(percentile_ms(seconds, 50), 4),
        "latency_ms_p99": round(percentile_ms(seconds, 99), 4),
        "unsure": sum(1 for s in suggestions if s.label is None),
        "confident_share": round(sum(s.confident for s in suggestions) / len(rows), 4),
        "model_version": suggester.model_version,
    }
    if args.report:
        confidences = np.array([s.probability for s in suggestions])
        correct = np.array([s.label == r.label for s, r in zip(suggestions, rows)])
        for p in write_plots(report, confidences, correct, Path(args.report), "评估"):
            say(f"图表: {p}")
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(report.table())
        print(f"每条耗时: p50 {result['latency_ms_p50']:.3f} ms, "
              f"p99 {result['latency_ms_p99']:.3f} ms；无法判断 {result['unsure']} 条；"
              f"模型 {result['model_version']}")
    return 0


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
    fit.add_argument("--data", action="append", default=[], metavar="CSV",
                     help="训练数据（可重复）；不给则用语料目录中的全部 CSV")
    fit.add_argument("--corrections", action="store_true", help="加入案件库中的人工更正")
    fit.add_argument("--out", help="模型输出路径（默认 config.toml 的 model_path）")
    fit.add_argument("--report", metavar="DIR", help="写出混淆矩阵和校准曲线图")
    fit.add_argument("--cv-folds", type=int, default=5, help="交叉验证折数（默认 5）")
    fit.add_argument("--jobs", type=int, default=2, help="并行进程数（默认 2）")

    ev = sub.add_parser("evaluate", help="在带标签的 CSV 上评估")
    ev.add_argument("file", metavar="FILE.csv")
    ev.add_argument("--model", help="模型路径（默认 config.toml 的 model_path）")
    ev.add_argument("--json", action="store_true", help="以一个 JSON 对象输出到 stdout")
    ev.add_argument("--report", metavar="DIR", help="写出混淆矩阵和校准曲线图")

    pr = sub.add_parser("predict", help="为 CSV 中的每条文本预测标签")
    pr.add_argument("file", metavar="FILE.csv")
    pr.add_argument("--model", help="模型路径（默认 config.toml 的 model_path）")
    pr.add_argument("--out", required=True, metavar="OUT.csv", help="输出 CSV（id,label,confidence）")
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
