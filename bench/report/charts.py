"""Charts of the HTML report, drawn by matplotlib as inline SVG (no file, no font, no URL).

Text stays text (`svg.fonttype = "none"`): the page's own sans-serif font draws it, and
matplotlib escapes it, so a label taken from a result file cannot become markup. Projected
figures are drawn hatched and lighter than measured ones, and say so in their labels.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.figure import Figure  # not pyplot: no GUI backend, no global figure state
from matplotlib.patches import Patch

from bench import record, summary
from bench.report.console import duration  # the tables' format, so chart and table agree

TRADITIONAL = "#2f5d8a"   # deep learning from scratch (the paper's baseline)
TRANSFER = "#e07b28"      # transfer learning
INK = "#1f2328"
GRID = "#d0d7de"
_STYLE = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 10,
    "axes.edgecolor": GRID,
    "axes.labelcolor": INK,
    "text.color": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@contextmanager
def _figure(salt: str, font_size: float = _STYLE["font.size"], **kwargs: Any) -> Iterator[Any]:
    with matplotlib.rc_context({**_STYLE, "svg.hashsalt": salt, "font.size": font_size}):
        yield Figure(**kwargs)


def _pale(colour: str, amount: float = 0.72) -> tuple[float, float, float]:
    """The colour mixed with white: the face of a projected bar."""
    r, g, b = matplotlib.colors.to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def to_svg(fig: Any) -> str:
    """The figure as an inline <svg> element: no XML prolog, DOCTYPE or RDF metadata."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    return svg.replace("<svg ", '<svg role="img" ', 1)


def fraction(value: float) -> str:
    """1/N for a relative time below 1 (N rounded to what the figure supports)."""
    if value >= 1:
        return f"{value:.3g}"
    n = 1 / value
    return f"1/{n:,.0f}" if n >= 10 else f"1/{n:.1f}"


def by_speedup(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The backends' speed-ups (bench.summary), largest at the paper's scale first: the order
    of Figure 3 and of the table beside it."""
    return sorted(summary.speedups(doc), key=lambda row: row["paper_scale"]["speedup"],
                  reverse=True)


def figure3_pairs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The bar pairs of Figure 3: the paper's, then each backend's at the paper's scale.

    Each pair: label, the two absolute times, the speed-up N (transfer = 1/N) and its kind —
    the paper's reported, every backend's projected from this run's rates.
    """
    p = record.PAPER
    pairs = [{"label": f"white paper\n{p['machine']}", "kind": "reported",
              "full_s": p["full_training_s"], "transfer_s": p["transfer_s"],
              "speedup": p["speedup"]}]
    for row in by_speedup(doc):
        ps = row["paper_scale"]
        pairs.append({"label": row["backend"], "kind": "projected",
                      "full_s": ps["full_training_s"], "transfer_s": ps["transfer_s"],
                      "speedup": ps["speedup"]})
    return pairs


# The page shows Figure 3 at its natural size, where a point is 4/3 of a CSS pixel: 11 pt is
# 14.7 px, not below the page's small text (13.5 px) nor its tables' (14 px). 10.5 inches wide
# (about 1,020 px once trimmed), it fits the page's 1,056-pixel column, so it is not scaled
# down; rows are added downwards, one a backend. tests/test_layout.py measures it in a browser.
FIGURE3_FONT_PT = 11
FIGURE3_WIDTH_IN = 10.5


def figure3(doc: dict[str, Any]) -> str | None:
    """Relative time to train: full training = 1, transfer = 1/N, one pair of bars a row
    (log scale). Horizontal, so that any number of backends keeps its labels at full size."""
    pairs = figure3_pairs(doc)
    if len(pairs) == 1:
        return None
    height = 0.4  # of each bar; a pair's row is 1
    with _figure("figure3", font_size=FIGURE3_FONT_PT,
                 figsize=(FIGURE3_WIDTH_IN, 1.3 + 0.62 * len(pairs)), layout="constrained") as fig:
        ax = fig.add_subplot()
        lowest = min(1 / p["speedup"] for p in pairs)
        for y, p in enumerate(pairs):
            projected = p["kind"] == "projected"
            # The paper gives ~20 h and ~15 min: no more precision than it states.
            full, transfer = (("~20 h", "~15 min") if p["kind"] == "reported"
                              else (duration(p["full_s"]), duration(p["transfer_s"])))
            for dy, value, colour, said in ((-height / 2, 1.0, TRADITIONAL, full),
                                            (height / 2, 1 / p["speedup"], TRANSFER, transfer)):
                # Projected: a pale face with the colour's hatch; reported: solid.
                ax.barh(y + dy, value, height * 0.9, color=_pale(colour) if projected else colour,
                        hatch="////" if projected else None, edgecolor=colour, linewidth=1.0)
                ax.annotate(f"{fraction(value)} · {said} · {p['kind']}", (value, y + dy),
                            xytext=(5, 0), textcoords="offset points", ha="left", va="center",
                            annotation_clip=False, fontweight="bold" if value < 1 else "normal")
        ax.axhline(0.5, color=GRID, linewidth=1.0, linestyle=":")
        ax.set_xscale("log")
        ax.set_xlim(lowest / 4, 1)
        ax.set_ylim(len(pairs) - 0.5, -0.5)  # the paper's pair on top
        ax.set_yticks(range(len(pairs)), [p["label"] for p in pairs])
        ax.tick_params(axis="y", length=0)
        ax.set_xlabel("relative time to train (full training = 1, log scale)")
        ax.xaxis.grid(True, color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
        ticks = [10.0 ** -k for k in range(8) if 10.0 ** -k >= lowest / 4]
        ax.set_xticks(ticks, [fraction(t) for t in ticks])
        ax.minorticks_off()
        ax.legend(handles=[
            Patch(color=TRADITIONAL, label="full training, from scratch (= 1)"),
            Patch(color=TRANSFER, label="transfer learning (1/N)"),
            Patch(facecolor=_pale(INK), edgecolor=INK, hatch="////",
                  label="hatched, pale: projected"),
        ], loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, frameon=False)
        return to_svg(fig)


def history(entries: list[dict[str, Any]]) -> str | None:
    """Trend over result files: training img/s, full-training total, transfer total."""
    if not entries:
        return None
    files = list(dict.fromkeys(e["file"] for e in entries))
    ticks = {e["file"]: f"{e['created'][5:16].replace('T', ' ')}\n{e['commit_short']}"
             for e in entries}
    series: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        series.setdefault(f"{e['suite']} · {e['backend']}", []).append(e)
    panels = [("training img/s", "train_img_s", None),
              ("full training total (h)", "train_total_h", "train_kind"),
              ("transfer total (s)", "transfer_total_s", None)]
    with _figure("history", figsize=(max(7.0, 1.1 * len(files) + 3), 7.2)) as fig:
        axes = fig.subplots(len(panels), 1, sharex=True)
        colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, (title, key, kind_key) in zip(axes, panels, strict=True):
            for n, (name, points) in enumerate(series.items()):
                pts = [p for p in points if p.get(key) is not None]
                if not pts:
                    continue
                xs = [files.index(p["file"]) for p in pts]
                colour = colours[n % len(colours)]
                ax.plot(xs, [p[key] for p in pts], color=colour, linewidth=1.2, label=name)
                for x, p in zip(xs, pts, strict=True):
                    projected = kind_key and p.get(kind_key) == "projected"
                    ax.plot(x, p[key], marker="o", markersize=6, color=colour,
                            markerfacecolor="white" if projected else colour)
            ax.set_ylabel(title, fontsize=9)
            ax.yaxis.grid(True, color=GRID, linewidth=0.6)
            ax.margins(y=0.18)
            ax.set_ylim(bottom=0)
        axes[1].text(0.01, 0.95, "hollow markers: projected totals", transform=axes[1].transAxes,
                     fontsize=8, va="top", color="#57606a")
        axes[-1].set_xticks(range(len(files)), [ticks[f] for f in files], fontsize=8)
        axes[0].legend(fontsize=8, frameon=False, loc="upper left",
                       bbox_to_anchor=(1.0, 1.0))
        return to_svg(fig)


def fleet(view: dict[str, Any]) -> str | None:
    """Machines x backends: each machine's geometric mean over scenarios, relative to the
    reference machine (= 1), where one could be formed."""
    names = [f"{m['hostname']} · {m['hardware_id']}" for m in view["machines"]]
    groups = [g for g in view["geomeans"] if any(c["value"] for c in g["cells"])]
    if not groups:
        return None
    width = 0.8 / len(names)
    with _figure("fleet", figsize=(2.0 + 1.2 * len(groups) * len(names) ** 0.5, 4.2)) as fig:
        ax = fig.add_subplot()
        colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, name in enumerate(names):
            xs = [g_i + (i - (len(names) - 1) / 2) * width for g_i in range(len(groups))]
            values = [g["cells"][i]["value"] or 0 for g in groups]
            ax.bar(xs, values, width * 0.92, color=colours[i % len(colours)], label=name)
            for x, v in zip(xs, values, strict=True):
                ax.text(x, v, f"{v:.2f}x" if v else "—", ha="center", va="bottom", fontsize=7.5)
        ax.axhline(1.0, color=INK, linewidth=0.8)
        ax.set_xticks(range(len(groups)), [g["backend"] for g in groups], fontsize=9)
        ax.set_ylabel("relative to the reference machine (geometric mean)", fontsize=9)
        ax.yaxis.grid(True, color=GRID, linewidth=0.6)
        ax.legend(fontsize=8, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  ncol=min(3, len(names)))
        return to_svg(fig)


def serving(doc: dict[str, Any]) -> str | None:
    """Latency against load: each stack's Server runs, p99 ms against the offered queries/s
    (filled: valid, hollow: invalid by LoadGen), its latency bound dashed in its colour."""
    runs = [r for r in doc["runs"] if r.get("status") == "ok" and r["scenario"] == "serving"]
    if not runs:
        return None
    with _figure("serving", figsize=(7.5, 4.2)) as fig:
        ax = fig.add_subplot()
        colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, r in enumerate(runs):
            colour, serving_ = colours[i % len(colours)], r["serving"]
            server = sorted((o for o in serving_["runs"] if o["scenario"] == "Server"
                             and o["p99_ms"] is not None), key=lambda o: o["target_qps"])
            ax.plot([o["target_qps"] for o in server], [o["p99_ms"] for o in server],
                    color=colour, linewidth=1, label=r["backend"])
            for o in server:
                ax.plot(o["target_qps"], o["p99_ms"], "o", color=colour,
                        markerfacecolor=colour if o["valid"] else "white")
            ax.axhline(serving_["bound_ms"], color=colour, linestyle="--", linewidth=0.8)
        ax.set_xlabel("offered load, queries/s (Poisson arrivals)", fontsize=9)
        ax.set_ylabel("p99 latency, ms (dashed: the bound)", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.yaxis.grid(True, color=GRID, linewidth=0.6)
        ax.legend(fontsize=8, frameon=False, title="filled: valid, hollow: invalid",
                  title_fontsize=8)
        return to_svg(fig)


def trade_off(points: list[dict[str, Any]], default: dict[str, Any], figure: str) -> str | None:
    """A tune's inference trials: throughput against batch-1 p50 latency (filled: the suite's
    full window, hollow: a shorter rung), the Pareto front joined, the default ringed."""
    if not points:
        return None
    with _figure("trade-off", figsize=(7.0, 4.0)) as fig:
        ax = fig.add_subplot()
        for p in points:
            full = p["rung"] == max(q["rung"] for q in points)
            ax.plot(p["latency_ms"], p["value"], "o", color=TRANSFER if p["front"] else TRADITIONAL,
                    markerfacecolor=(TRANSFER if p["front"] else TRADITIONAL) if full else "white",
                    markersize=6)
            if p["config"] == default:
                ax.plot(p["latency_ms"], p["value"], "o", markersize=13, markerfacecolor="none",
                        color=INK, linewidth=1)
        front = sorted((p for p in points if p["front"]), key=lambda p: p["latency_ms"])
        ax.plot([p["latency_ms"] for p in front], [p["value"] for p in front], color=TRANSFER,
                linewidth=1, label="Pareto front")
        ax.set_xlabel("batch-1 latency p50, ms (lower is better)", fontsize=9)
        ax.set_ylabel(f"{figure} (higher is better)", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.yaxis.grid(True, color=GRID, linewidth=0.6)
        ax.legend(fontsize=8, frameon=False, title="ringed: the default; hollow: a short window",
                  title_fontsize=8)
        return to_svg(fig)
