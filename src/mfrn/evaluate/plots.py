"""PNG plots of results (matplotlib with the Agg backend, imported only when a plot is made)."""

from __future__ import annotations

import os
from pathlib import Path

from mfrn.evaluate.tables import ALL, EvalSummary


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(
    summaries: EvalSummary | dict[str, EvalSummary], path: str | os.PathLike, level: str = "video"
) -> Path:
    """ROC curves: every method of one summary, or the overall curve of each summary in a dict."""
    if level not in ("video", "frame"):
        raise ValueError(f"level must be 'video' or 'frame', got {level!r}")
    if isinstance(summaries, EvalSummary):
        curves = [(m.method, getattr(m, level)) for m in summaries.methods]
        title, protocol = f"ROC ({summaries.dataset}, {level} level)", summaries.protocol
    else:
        curves = [(name, getattr(s.overall, level)) for name, s in summaries.items()]
        title = f"ROC ({level} level)"
        protocol = "; ".join(sorted({s.protocol for s in summaries.values()}))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    try:
        drawn = 0
        for name, metrics in curves:
            if metrics is None or metrics.curve is None:
                continue
            style = "-" if name == ALL else "--"
            ax.plot(metrics.curve.fpr, metrics.curve.tpr, style, label=f"{name} (AUC {100 * metrics.auc:.2f})")
            drawn += 1
        if not drawn:
            raise ValueError(f"no {level}-level ROC curve to plot (single-class or missing scores)")
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01), title=title)
        ax.legend(loc="lower right", fontsize=8)
        fig.text(0.01, 0.005, protocol, fontsize=5, wrap=True)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_auc_vs_level(
    results: dict[str, list[float]], path: str | os.PathLike, clean_auc: float | None = None, title: str = "",
    x_values: list[float] | None = None, x_label: str | None = None,
) -> Path:
    """AUC (in [0, 1]) against perturbation level 1..n for each family; ``clean_auc`` as level 0.

    ``x_values``: the levels' parameter values (e.g. CRFs) to plot against instead of 1..n, with
    ``x_label``; the clean point then sits one step left of the first value, marked "clean"."""
    if not results:
        raise ValueError("no robustness results to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        ticks = None
        for family, aucs in results.items():
            levels = list(x_values) if x_values is not None else list(range(1, len(aucs) + 1))
            if len(levels) != len(aucs):
                raise ValueError(f"{family}: {len(aucs)} AUCs for {len(levels)} x values")
            values = [100 * a for a in aucs]
            if clean_auc is not None:
                step = (levels[-1] - levels[0]) / max(len(levels) - 1, 1) if len(levels) > 1 else 1.0
                clean_x = levels[0] - (step if x_values is not None else 1)
                levels, values = [clean_x] + levels, [100 * clean_auc] + values
                ticks = levels
            ax.plot(levels, values, "o-", label=family)
        default_label = "perturbation level (0 = clean)" if x_values is None else "level"
        ax.set(xlabel=x_label or default_label, ylabel="video AUC (%)", title=title or "AUC vs perturbation")
        if x_values is not None and ticks is not None:
            ax.set_xticks(ticks, ["clean"] + [f"{v:g}" for v in x_values])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
