"""The PNG plots of a run directory: learning curves, ROC/PR curves per scenario, confusion matrix.

Figures are built with matplotlib's object-oriented ``Figure`` API and the Agg renderer, never
pyplot, so plotting works on headless cluster nodes and leaves no global state behind. Each file is
written to a temporary name and renamed into place, so a killed job never leaves half a PNG.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from kdgat.evaluation.thresholds import check_labels_scores

# "train_loss", "val/loss", "validation.loss" share the "loss" panel.
_SPLIT_PREFIX = re.compile(r"^(train|val|valid|validation|test)[/_.\-]", re.IGNORECASE)


def plot_learning_curves(history: dict[str, list[float]], path) -> Path:
    """One panel per metric, training and validation series of that metric drawn together.

    Args:
        history (dict): Metric name -> one value per epoch, e.g. ``{"train_loss": [...],
            "val_loss": [...], "val_f1": [...]}``; ``None`` values are left as gaps.
        path: The PNG to write.
    """
    series = {name: values for name, values in history.items() if len(values)}
    if not series:
        raise ValueError("plot_learning_curves needs at least one non-empty metric history")
    panels: dict[str, list[str]] = {}
    for name in series:
        panels.setdefault(_SPLIT_PREFIX.sub("", name), []).append(name)

    from matplotlib.ticker import MaxNLocator

    figure = _figure(figsize=(4.5 * len(panels), 3.5))
    all_axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (panel, names) in zip(all_axes, panels.items()):
        for name in names:
            values = np.array([np.nan if v is None else v for v in series[name]], dtype=np.float64)
            epochs = np.arange(1, len(values) + 1)
            axes.plot(epochs, values, marker="." if len(values) < 30 else None, label=name)
        axes.set(title=panel, xlabel="epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    return _save(figure, path)


def split_drawable(scores_by_scenario: dict[str, tuple]) -> tuple[dict[str, tuple], list[str]]:
    """Separate scenarios with both classes (drawable curves) from one-class ones (skipped).

    A scenario without attack windows has no ROC or PR curve; drawing one would show a meaningless
    line (UPSTREAM.md, mistake 4).
    """
    drawable, skipped = {}, []
    for scenario, (labels, scores) in scores_by_scenario.items():
        labels, scores = check_labels_scores(labels, scores, what=f"scenario {scenario!r}")
        if labels.any() and not labels.all():
            drawable[scenario] = (labels, scores)
        else:
            skipped.append(scenario)
    return drawable, skipped


def plot_roc_pr(scores_by_scenario: dict[str, tuple], path) -> Path:
    """ROC (left) and precision-recall (right) curves, one line per scenario, in one PNG.

    Scenarios with only one class are named as skipped in the title, not drawn.

    Args:
        scores_by_scenario (dict): Scenario name -> ``(labels, scores)``.
        path: The PNG to write.
    """
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    drawable, skipped = split_drawable(scores_by_scenario)
    figure = _figure(figsize=(10, 4.5))
    roc_axes, pr_axes = figure.subplots(1, 2)
    roc_axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for scenario, (labels, scores) in drawable.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        roc_axes.plot(fpr, tpr, label=f"{scenario} (AUROC {roc_auc_score(labels, scores):.3f})")
        precision, recall, _ = precision_recall_curve(labels, scores)
        pr_axes.step(recall, precision, where="post",
                     label=f"{scenario} (AP {average_precision_score(labels, scores):.3f})")
    limits = {"xlim": (0, 1), "ylim": (0, 1.02)}
    roc_axes.set(title="ROC", xlabel="false-positive rate", ylabel="true-positive rate", **limits)
    pr_axes.set(title="precision-recall", xlabel="recall", ylabel="precision", **limits)
    for axes in (roc_axes, pr_axes):
        axes.grid(alpha=0.3)
        if drawable:
            axes.legend(fontsize="small", loc="lower right" if axes is roc_axes else "lower left")
    if not drawable:
        roc_axes.text(0.5, 0.5, "no scenario has both classes", ha="center", va="center")
    if skipped:
        names = ", ".join(skipped)
        figure.suptitle(f"skipped (one class only, curves undefined): {names}", fontsize="small")
    return _save(figure, path)


def plot_confusion_matrix(
    tn: int, fp: int, fn: int, tp: int, path, title: str = "confusion matrix"
) -> Path:
    """A 2 x 2 confusion matrix: rows are true classes, columns predicted; counts and row shares.

    Args:
        tn, fp, fn, tp (int): The confusion-matrix counts.
        path: The PNG to write.
        title (str, optional): Figure title. (default: ``"confusion matrix"``)
    """
    counts = np.array([[tn, fp], [fn, tp]], dtype=np.int64)
    row_totals = counts.sum(axis=1, keepdims=True)
    # Row shares make a rare class readable; an empty row (no windows of that class) stays blank.
    shares = np.divide(counts, row_totals, out=np.full(counts.shape, np.nan), where=row_totals > 0)

    figure = _figure(figsize=(4.5, 4))
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of true class")
    for (row, column), count in np.ndenumerate(counts):
        share = "" if np.isnan(shares[row, column]) else f"\n{shares[row, column]:.1%}"
        dark = not np.isnan(shares[row, column]) and shares[row, column] > 0.5
        color = "white" if dark else "black"
        axes.text(column, row, f"{count}{share}", ha="center", va="center", color=color)
    classes = ["benign", "attack"]
    axes.set(xticks=[0, 1], yticks=[0, 1], xticklabels=classes, yticklabels=classes,
             xlabel="predicted", ylabel="true", title=title)
    return _save(figure, path)


def plot_estimates(panels: dict[str, list[tuple]], path, *, xlabel: str, title: str,
                   colors: list[str] | None = None, centre: float | None = None,
                   xlim: tuple[float, float] | None = None, legend: dict[str, str] | None = None) -> Path:
    """Means with their 95 % confidence intervals as error bars, one panel per column.

    Each panel (a test scenario, or ``pooled``) draws one row per label: a horizontal bar from 0
    to the mean, or, with ``centre``, a point with a vertical reference line at ``centre`` (a
    forest plot of differences). The interval is drawn where one exists (``n >= 2``); the value
    and ``n`` are written beside it. A row whose mean is undefined is named ``n/a``.

    Args:
        panels (dict): Panel title -> ``[(label, mean, ci_low, ci_high, n), ...]``, the same
            labels in the same order in every panel; ``None`` where undefined.
        path: The PNG to write.
        xlabel (str): What the values are (e.g. ``"test f1"``).
        title (str): Figure title.
        colors (list[str], optional): One colour per row. (default: all ``"tab:blue"``)
        centre (float, optional): Draw points around a reference line here instead of bars.
        xlim (tuple, optional): Common x range. (default: matplotlib's choice)
        legend (dict, optional): Name -> colour, drawn as a legend (what the colours mean).
    """
    if not panels or not any(panels.values()):
        raise ValueError("plot_estimates needs at least one panel with one row")
    labels = [row[0] for row in next(iter(panels.values()))]
    colors = colors or ["tab:blue"] * len(labels)
    columns = min(4, len(panels))
    lines = -(-len(panels) // columns)
    figure = _figure(figsize=(1.0 + 2.8 * columns + 0.06 * max(map(len, labels)),
                              0.6 + lines * (0.9 + 0.32 * len(labels))))
    grid = figure.subplots(lines, columns, squeeze=False, sharey=True)
    positions = np.arange(len(labels))
    for axes, (panel, rows) in zip(grid.flat, panels.items()):
        means = np.array([np.nan if row[1] is None else row[1] for row in rows], dtype=np.float64)
        lows = np.array([np.nan if row[2] is None else row[2] for row in rows], dtype=np.float64)
        highs = np.array([np.nan if row[3] is None else row[3] for row in rows], dtype=np.float64)
        # Error bars are distances from the mean; a single run (no interval) gets none.
        errors = np.nan_to_num(np.vstack([means - lows, highs - means]), nan=0.0)
        if centre is None:
            axes.barh(positions, np.nan_to_num(means), xerr=errors, color=colors, capsize=3,
                      error_kw={"elinewidth": 1})
        else:
            axes.axvline(centre, color="grey", linewidth=1, linestyle=":")
            axes.errorbar(means, positions, xerr=errors, fmt="none", ecolor="black", capsize=3,
                          elinewidth=1)
            axes.scatter(means, positions, c=colors, zorder=3)
        if xlim is not None:
            axes.set_xlim(*xlim)
        # Values are written at the mean, inside the panel (an interval may run past its edge).
        low_edge, high_edge = axes.get_xlim()
        for position, mean, row in zip(positions, means, rows):
            where = 0.0 if np.isnan(mean) else float(np.clip(mean, low_edge, high_edge))
            text = " n/a" if np.isnan(mean) else f" {mean:.3f} (n={row[4]})"
            axes.text(where, position - 0.3, text, va="center", fontsize="x-small", clip_on=True)
        axes.set(title=panel, xlabel=xlabel)
        axes.grid(axis="x", alpha=0.3)
    for axes in list(grid.flat)[len(panels):]:
        axes.set_visible(False)
    grid[0, 0].set_yticks(list(positions), labels)
    grid[0, 0].set_ylim(len(labels) - 0.5, -0.75)  # first row on top, room above it for its value
    if legend:
        from matplotlib.patches import Patch

        figure.legend(handles=[Patch(color=color, label=name) for name, color in legend.items()],
                      fontsize="small", loc="outside right upper")
    for axes in grid[:, 0]:
        axes.tick_params(axis="y", labelsize="small")
    figure.suptitle(title)
    return _save(figure, path)


def _figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _save(figure, path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)  # attach the Agg renderer explicitly: no backend selection, no display
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates mode 0600; give the file the permissions a plain open() would have.
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(descriptor, "wb") as handle:
            figure.savefig(handle, format="png", dpi=120)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
