"""Classification and calibration metrics, their text table, and the report plots
(matplotlib, Agg)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ECE_BINS = 15  # equal-width bins of the top label's probability


@dataclass
class Report:
    accuracy: float
    macro_f1: float
    n: int
    labels: list[str]
    per_class: dict[str, dict[str, float]]  # label → precision, recall, f1, support
    confusion: list[list[int]]  # rows: true label, columns: predicted label (order: labels)
    ece: float | None = None  # top-label expected calibration error, where measured

    def as_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "n": self.n,
            "ece": self.ece,
            "per_class": self.per_class,
            "confusion": {"labels": self.labels, "matrix": self.confusion},
        }

    def table(self) -> str:
        """Human-readable per-class table, confusion matrix and totals, in columns that stay
        aligned in a terminal whatever the labels' script (a Chinese character is two wide)."""
        names = max(display_width(lab) for lab in [*self.labels, "标签"]) + 2
        lines = [
            pad("标签", names)
            + "".join(pad(h, 8, right=True) for h in ("精确率", "召回率", "F1", "样本"))
        ]
        for lab in self.labels:
            m = self.per_class[lab]
            lines.append(
                pad(lab, names) + f"{m['precision']:>8.3f}{m['recall']:>8.3f}"
                f"{m['f1']:>8.3f}{m['support']:>8d}"
            )
        totals = f"准确率 {self.accuracy:.4f}   宏平均 F1 {self.macro_f1:.4f}   样本数 {self.n}"
        if self.ece is not None:
            totals += f"   校准误差 ECE {self.ece:.4f}"
        lines += [totals, "混淆矩阵（行=真实，列=预测）:"]
        number = len(str(max(len(self.labels) - 1, 0)))
        cell = max(len(str(max((v for row in self.confusion for v in row), default=0))), number) + 2
        lead = number + 1 + names
        lines.append(" " * lead + "".join(f"{i:>{cell}d}" for i in range(len(self.labels))))
        for i, (lab, row) in enumerate(zip(self.labels, self.confusion)):
            lines.append(
                f"{i:>{number}d} " + pad(lab, names) + "".join(f"{v:>{cell}d}" for v in row)
            )
        return "\n".join(lines)


def display_width(text: str) -> int:
    """Terminal columns of text: East Asian wide and full-width characters take two,
    combining marks none."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def pad(text: str, width: int, *, right: bool = False) -> str:
    """text padded with spaces to `width` terminal columns (left-aligned unless right)."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def classification_report(
    y_true: list[str], y_pred: list[str | None], labels: list[str] | None = None
) -> Report:
    """Accuracy, macro-F1 (over every label seen as truth or prediction), per-class scores."""
    y_pred = ["（不确定）" if p is None else p for p in y_pred]
    seen = set(y_true) | set(y_pred)
    labels = list(labels or []) + sorted(seen - set(labels or []))
    labels = [lab for lab in labels if lab in seen]
    index = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        cm[index[t], index[p]] += 1
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    n = int(cm.sum())
    per_class = {
        lab: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(support[i]),
        }
        for i, lab in enumerate(labels)
    }
    return Report(
        accuracy=float(tp.sum() / n) if n else 0.0,
        macro_f1=float(f1.mean()) if len(labels) else 0.0,
        n=n,
        labels=labels,
        per_class=per_class,
        confusion=cm.tolist(),
    )


@dataclass(frozen=True)
class Reliability:
    """Top-label reliability per bin: mean probability, accuracy and count (empty bins out)."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    lower: np.ndarray  # each bin's lower edge

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy − probability|."""
        n = self.count.sum()
        return float(np.sum(self.count * np.abs(self.accuracy - self.confidence)) / n) if n else 0.0

    def as_dict(self) -> dict:
        return {
            "bins": len(self.edges) - 1,
            "ece": self.ece,
            "rows": [
                {
                    "from": round(float(lo), 4),
                    "confidence": round(float(c), 4),
                    "accuracy": round(float(a), 4),
                    "n": int(k),
                }
                for lo, c, a, k in zip(self.lower, self.confidence, self.accuracy, self.count)
            ],
        }


def reliability(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Messages binned by their top label's probability (equal widths, 1.0 in the last bin)."""
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidences, side="right") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    used = count > 0
    conf = np.bincount(which, weights=confidences, minlength=bins)[used] / count[used]
    acc = np.bincount(which, weights=correct, minlength=bins)[used] / count[used]
    return Reliability(
        edges=edges, confidence=conf, accuracy=acc, count=count[used], lower=edges[:-1][used]
    )


def expected_calibration_error(
    confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Top-label ECE: how far, on average over messages, the shown probability of the top
    label is from the share of such answers that are right."""
    return reliability(confidences, correct, bins).ece


def in_file_terms(
    top: tuple[tuple[str, float], ...], as_file: dict[str, str]
) -> tuple[str | None, float]:
    """A suggestion's top labels (best first) in a data file's labels (as_file: model label →
    file label): the best one's file label, and the probability of all of them that count as
    it (several departments may make one category)."""
    if not top:
        return None, 0.0
    label = as_file[top[0][0]]
    return label, sum(p for lab, p in top if as_file[lab] == label)


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.array(seconds) * 1000.0, q)) if seconds else 0.0


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    # Labels and titles are Chinese: use a CJK font when the system has one.
    cjk = [
        f.name
        for f in font_manager.fontManager.ttflist
        if any(k in f.name for k in ("CJK", "WenQuanYi", "Hei", "Song", "Noto Sans SC"))
    ]
    if cjk:
        plt.rcParams["font.sans-serif"] = [cjk[0], *plt.rcParams["font.sans-serif"]]
    plt.rcParams["axes.unicode_minus"] = False
    return plt


def write_plots(
    report: Report, confidences: np.ndarray, correct: np.ndarray, out_dir: Path, title: str
) -> list[Path]:
    """confusion_matrix.png and calibration.png (the reliability diagram of the top label)."""
    import warnings

    out_dir.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # missing glyphs on font-poor systems
        paths = [
            _confusion_plot(plt, report, out_dir / "confusion_matrix.png", title),
            _reliability_plot(
                plt, reliability(confidences, correct), out_dir / "calibration.png", title
            ),
        ]
    return paths


def _confusion_plot(plt, report: Report, path: Path, title: str) -> Path:
    cm = np.array(report.confusion)
    size = max(5, 0.7 * len(report.labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(report.labels)), report.labels, rotation=45, ha="right")
    ax.set_yticks(range(len(report.labels)), report.labels)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            color="white" if v > cm.max() / 2 else "black",
            fontsize=8,
        )
    ax.set_xlabel("预测")
    ax.set_ylabel("真实")
    ax.set_title(f"{title}  准确率 {report.accuracy:.3f}  宏F1 {report.macro_f1:.3f}")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _reliability_plot(plt, rel: Reliability, path: Path, title: str) -> Path:
    """Accuracy per probability bin as bars against the diagonal, the gap to it shaded, and
    below it how many messages fall in each bin."""
    width = rel.edges[1] - rel.edges[0]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=[3, 1], sharex=True)
    ax1.bar(
        rel.lower,
        rel.accuracy,
        width=width,
        align="edge",
        edgecolor="black",
        color="tab:blue",
        label="实际准确率",
    )
    ax1.bar(
        rel.lower,
        rel.confidence - rel.accuracy,
        bottom=rel.accuracy,
        width=width,
        align="edge",
        fill=False,
        edgecolor="tab:red",
        hatch="//",
        label="与概率的差距",
    )
    ax1.plot([0, 1], [0, 1], "--", color="gray", label="完全校准")
    ax1.set_xlim(0, 1)
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("实际准确率")
    ax1.set_title(f"{title}  可靠性图（最高概率）  ECE {rel.ece:.3f}")
    ax1.legend(loc="upper left")
    ax2.bar(rel.lower, rel.count, width=width, align="edge", color="tab:blue", edgecolor="black")
    ax2.set_xlabel("最高概率")
    ax2.set_ylabel("条数")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
