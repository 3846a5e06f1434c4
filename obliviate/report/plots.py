"""The report's figures, drawn with matplotlib and returned as inline SVG text.

Each function takes plain values (no run-directory knowledge: obliviate/report/html.py reads
the files) and returns one `<svg>` element ready to paste into HTML: text stays text
(`svg.fonttype: none`, no embedded glyphs), ids are prefixed so several figures can share a
page, and the XML prolog, metadata and namespace URLs are dropped, so a report references no
network resource at all. Hover text (a heatmap cell's exact values, an n/a cell's reason) is an
SVG `<title>` added to the matplotlib artist's group (`gid`), as matplotlib's own
"SVG tooltip" example does.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Sequence
from html import escape
from typing import Any

import numpy as np

# matplotlib's tab10 without its green and grey: green marks the oracle, black the target
PALETTE = ["#1f77b4", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
ROLE_STYLE = {  # (marker, colour or None = the model's/run's colour, size)
    "target": ("*", "#000000", 220),
    "oracle": ("D", "#2ca02c", 90),
    "control": ("X", None, 110),
    "method": ("o", None, 80),
}
_figure_count = itertools.count()


def _plt():
    """pyplot on the Agg backend with SVG text kept as text; imported late (the CLI stays fast)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({
        "svg.fonttype": "none",  # <text> elements, not glyph paths: searchable, small, no font files
        "svg.hashsalt": "obliviate",  # deterministic ids: the same run renders the same bytes
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })
    return plt


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def svg_of(fig, titles: dict[str, str] | None = None) -> str:
    """The figure as an inline `<svg>` element. `titles`: {artist gid: hover text}."""
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    # HTML5 knows the SVG namespace; dropping the declarations keeps every URL out of the page
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    for gid, text in (titles or {}).items():
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{escape(text)}</title>', 1)
    prefix = f"f{next(_figure_count)}-"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', svg)
    return svg.replace("<svg ", '<svg class="plot" ', 1)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _err(value: float, ci: Sequence[float] | None) -> list[list[float]] | None:
    """matplotlib's asymmetric error ([[below], [above]]) of a 95% interval, or None."""
    if not ci or len(ci) != 2 or not all(_finite(c) for c in ci):
        return None
    return [[max(0.0, value - ci[0])], [max(0.0, ci[1] - value)]]


def tradeoff(points: list[dict[str, Any]], xlabel: str, ylabel: str) -> str:
    """Forget knowledge (x) against retain knowledge (y), one marker per model.

    points: {"label", "x", "y", "role" (target|oracle|control|method), "colour", optional
    "xci"/"yci" ([lo, hi] 95% intervals: drawn as error bars) and "note" (e.g. "diverged":
    drawn hollow, the note in the label)}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    labels: dict[tuple[float, float], list[tuple[str, str]]] = {}  # models at one spot share one label
    for p in points:
        if not (_finite(p.get("x")) and _finite(p.get("y"))):
            continue
        marker, fixed, size = ROLE_STYLE.get(p.get("role", "method"), ROLE_STYLE["method"])
        c = fixed or p.get("colour") or "#444444"
        xerr, yerr = _err(p["x"], p.get("xci")), _err(p["y"], p.get("yci"))
        if xerr or yerr:
            ax.errorbar(p["x"], p["y"], xerr=xerr, yerr=yerr, fmt="none", ecolor=c, elinewidth=1, capsize=3,
                        alpha=0.8, zorder=2)
        hollow = bool(p.get("note"))
        ax.scatter([p["x"]], [p["y"]], marker=marker, s=size, zorder=3, linewidths=1.5,
                   facecolors="none" if hollow else c, edgecolors=c)
        label = p["label"] + (f" ({p['note']})" if p.get("note") else "")
        labels.setdefault(_near(labels, p["x"], p["y"], points), []).append((label, c))
    for (x, y), group in labels.items():
        for i, (label, c) in enumerate(group):
            ax.annotate(label, (x, y), xytext=(6, 5 + 10 * i), textcoords="offset points", fontsize=8, color=c)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.margins(0.12)
    return svg_of(fig)


def _near(anchors: dict[tuple[float, float], Any], x: float, y: float, points: list[dict[str, Any]]
          ) -> tuple[float, float]:
    """The label anchor of (x, y): an existing anchor closer than ~a label's size (10% of the
    x range, 5% of the y range), so nearby models stack their labels instead of overprinting."""
    xs = [p["x"] for p in points if _finite(p.get("x"))]
    ys = [p["y"] for p in points if _finite(p.get("y"))]
    dx, dy = 0.1 * (max(xs) - min(xs) or 1.0), 0.05 * (max(ys) - min(ys) or 1.0)
    return next(((ax, ay) for ax, ay in anchors if abs(ax - x) < dx and abs(ay - y) < dy), (x, y))


def heatmap(attacks: list[str], columns: list[dict[str, Any]], cells: dict[tuple[int, int], dict[str, Any]],
            title: str) -> str:
    """Attacks (rows) x models (columns). columns: {"label", "group"}; a new group (methods,
    planted controls, target/oracle) starts after a thick separator. cells[(row, col)]:
    {"value": 0..1 or NaN, "text", "title"} or {"na": reason} (hatched, the reason on hover)."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    n_rows, n_cols = len(attacks), len(columns)
    fig, ax = plt.subplots(figsize=(1.6 + 0.95 * n_cols, 0.9 + 0.34 * n_rows))
    cmap = plt.get_cmap("Reds")
    titles: dict[str, str] = {}
    for (r, c), cell in cells.items():
        gid = f"cell-{r}-{c}"
        if "na" in cell:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor="#f2f2f2", edgecolor="#9a9a9a",
                                   hatch="///", linewidth=0.3, gid=gid))
            ax.text(c, r, "n/a", ha="center", va="center", fontsize=8, color="#555555")
            titles[gid] = f"{attacks[r]} on {columns[c]['label']}: n/a — {cell['na']}"
            continue
        v = cell.get("value", float("nan"))
        face = cmap(0.08 + 0.85 * min(1.0, max(0.0, v))) if _finite(v) else "#ffffff"
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=face, edgecolor="white", linewidth=1, gid=gid))
        dark = _finite(v) and v > 0.55
        ax.text(c, r, cell.get("text", ""), ha="center", va="center", fontsize=7.5,
                color="white" if dark else "#222222")
        titles[gid] = cell.get("title", "")
    groups = [col.get("group") for col in columns]
    for c in range(1, n_cols):
        if groups[c] != groups[c - 1]:
            ax.axvline(c - 0.5, color="#333333", linewidth=2.5)
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_xticks(range(n_cols), [col["label"] for col in columns], rotation=30, ha="right")
    ax.set_yticks(range(n_rows), attacks)
    ax.tick_params(length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=9, loc="left")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, fraction=0.04, pad=0.02, label="share (0 – 1)")
    return svg_of(fig, titles)


def grouped_bars(models: list[str], series: list[tuple[str, list[float]]], ylabel: str,
                 side: tuple[str, list[float]] | None = None) -> str:
    """Grouped bars (one group per model, one bar per series), and an optional second panel of
    one value per model (`side`: (label, values), e.g. the share of changed int4 codes). NaN bars
    are left out and marked "n/a" at the axis."""
    plt = _plt()
    ncols = 2 if side else 1
    n = len(models)
    # wide enough for the labels, capped at the page's width (a comparison has many models)
    width = min(12.5, 2.5 + 0.75 * n + (1.0 + 0.35 * n if side else 0))
    fig, axes = plt.subplots(1, ncols, figsize=(width, 3.8), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1][:ncols]})
    ax = axes[0][0]
    x = np.arange(len(models))
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series):
        xs = x - 0.4 + width * (i + 0.5)
        ax.bar([a for a, v in zip(xs, values, strict=True) if _finite(v)], [v for v in values if _finite(v)],
               width, label=label, color=colour(i))
        for a, v in zip(xs, values, strict=True):
            if not _finite(v):
                ax.text(a, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="#777777")
    ax.set_xticks(x, models, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, frameon=False, ncols=min(4, len(series)), loc="upper center", bbox_to_anchor=(0.5, 1.15))
    ax.grid(axis="y", alpha=0.3)
    if side:
        label, values = side
        ax2 = axes[0][1]
        ax2.bar([a for a, v in zip(x, values, strict=True) if _finite(v)], [v for v in values if _finite(v)],
                0.6, color="#7f7f7f")
        for a, v in zip(x, values, strict=True):
            ax2.text(a, v if _finite(v) else 0, f"{v:.1%}" if _finite(v) else "n/a", ha="center", va="bottom",
                     fontsize=7)
        ax2.set_xticks(x, models, rotation=40, ha="right")
        ax2.set_title(label, fontsize=9)
        ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return svg_of(fig)


def loss_curves(curves: list[dict[str, Any]]) -> str:
    """One line per unlearning run: {"label", "losses", "colour", "status", optional "style"};
    the last step (where the run stopped) is marked and labelled with the status."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for cv in curves:
        y = np.asarray(cv["losses"], dtype=float)
        steps = np.arange(1, len(y) + 1)
        ax.plot(steps, y, color=cv["colour"], linestyle=cv.get("style", "-"), linewidth=1.4, label=cv["label"])
        ax.scatter([steps[-1]], [y[-1]], color=cv["colour"], marker="s", s=28, zorder=3)
        ax.annotate(cv.get("status", ""), (steps[-1], y[-1]), xytext=(4, 3), textcoords="offset points",
                    fontsize=7, color=cv["colour"])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("unlearning loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return svg_of(fig)


def truth_ratio_ecdfs(panels: list[dict[str, Any]]) -> str:
    """Per model, the empirical CDFs of its per-item forget truth ratios R and the oracle's: the
    two samples TOFU's forget quality compares with a two-sample KS test (Maini et al. 2024),
    whose statistic is the largest vertical gap between the curves. panels: {"label", "model",
    "oracle" (arrays of R), "forget_quality"}."""
    plt = _plt()
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.5 * nrows), squeeze=False, sharex=True,
                             sharey=True)
    for ax, p in zip(axes.flat, panels, strict=False):
        for values, label, c in ((p["oracle"], "oracle", "#2ca02c"), (p["model"], p["label"], "#d62728")):
            v = np.sort(np.asarray([x for x in values if _finite(x) and x > 0], dtype=float))
            if len(v):
                ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", color=c, label=label, linewidth=1.4)
        ax.set_xscale("log")
        fq = p.get("forget_quality")
        ax.set_title(f"{p['label']}: forget quality {fq:.2g}" if _finite(fq) else p["label"], fontsize=8.5)
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("truth ratio R (log)")
    for row in axes:
        row[0].set_ylabel("share of items ≤ R")
    fig.tight_layout()
    return svg_of(fig)
