"""Classification metrics, their text table, and the report plots (matplotlib, Agg)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Report:
    accuracy: float
    macro_f1: float
    n: int
    labels: list[str]
    per_class: dict[str, dict[str, float]]  # label → precision, recall, f1, support
    confusion: list[list[int]]  # rows: true label, columns: predicted label (order: labels)

    def as_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "n": self.n,
            "per_class": self.per_class,
            "confusion": {"labels": self.labels, "matrix": self.confusion},
        }

    def table(self) -> str:
        """Human-readable per-class table, confusion matrix and totals."""
        width = max([len(lab) for lab in self.labels] + [6]) + 2
        lines = [f"{'标签':<{width}}{'精确率':>8}{'召回率':>8}{'F1':>8}{'样本':>8}"]
        for lab in self.labels:
            m = self.per_class[lab]
            lines.append(f"{lab:<{width}}{m['precision']:>10.3f}{m['recall']:>10.3f}"
                         f"{m['f1']:>10.3f}{m['support']:>10d}")
        lines.append(f"准确率 {self.accuracy:.4f}   宏平均 F1 {self.macro_f1:.4f}   样本数 {self.n}")
        lines.append("混淆矩阵（行=真实，列=预测）:")
        lines.append(" " * width + "".join(f"{i:>6d}" for i in range(len(self.labels))))
        for i, (lab, row) in enumerate(zip(self.labels, self.confusion)):
            lines.append(f"{i:>2d} {lab:<{width - 3}}" + "".join(f"{v:>6d}" for v in row))
        return "\n".join(lines)


def classification_report(y_true: list[str], y_pred: list[str | None],
                          labels: list[str] | None = None) -> Report:
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
    per_class = {lab: {"precision": round(float(precision[i]), 4),
                       "recall": round(float(recall[i]), 4),
                       "f1": round(float(f1[i]), 4), "support": int(support[i])}
                 for i, lab in enumerate(labels)}
    return Report(accuracy=float(tp.sum() / n) if n else 0.0,
                  macro_f1=float(f1.mean()) if len(labels) else 0.0, n=n, labels=labels,
                  per_class=per_class, confusion=cm.tolist())


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.array(seconds) * 1000.0, q)) if seconds else 0.0


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    # Labels and titles are Chinese: use a CJK font when the system has one.
    cjk = [f.name for f in font_manager.fontManager.ttflist
           if any(k in f.name for k in ("CJK", "WenQuanYi", "Hei", "Song", "Noto Sans SC"))]
    if cjk:
        plt.rcParams["font.sans-serif"] = [cjk[0], *plt.rcParams["font.sans-serif"]]
    plt.rcParams["axes.unicode_minus"] = False
    return plt


def write_plots(report: Report, confidences: np.ndarray, correct: np.ndarray,
                out_dir: Path, title: str) -> list[Path]:
    """confusion_matrix.png and calibration.png (top-1 confidence against accuracy)."""
    import warnings

    out_dir.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # missing glyphs on font-poor systems
        cm = np.array(report.confusion)
        size = max(5, 0.7 * len(report.labels) + 2)
        fig, ax = plt.subplots(figsize=(size + 1, size))
        im = ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(report.labels)), report.labels, rotation=45, ha="right")
        ax.set_yticks(range(len(report.labels)), report.labels)
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > cm.max() / 2 else "black", fontsize=8)
        ax.set_xlabel("预测")
        ax.set_ylabel("真实")
        ax.set_title(f"{title}  准确率 {report.accuracy:.3f}  宏F1 {report.macro_f1:.3f}")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        paths.append(out_dir / "confusion_matrix.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=[3, 1], sharex=True)
        bins = np.linspace(0, 1, 11)
        which = np.clip(np.digitize(confidences, bins) - 1, 0, 9)
        centers, accs, counts = [], [], []
        for b in range(10):
            mask = which == b
            if mask.any():
                centers.append(float(confidences[mask].mean()))
                accs.append(float(correct[mask].mean()))
                counts.append(int(mask.sum()))
        ax1.plot([0, 1], [0, 1], "--", color="gray", label="完全校准")
        ax1.plot(centers, accs, "o-", label="模型")
        ax1.set_ylabel("实际准确率")
        ax1.set_title(f"{title}  校准曲线（最高概率）")
        ax1.legend()
        ax2.hist(confidences, bins=bins, color="tab:blue")
        ax2.set_xlabel("最高概率")
        ax2.set_ylabel("条数")
        fig.tight_layout()
        paths.append(out_dir / "calibration.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
