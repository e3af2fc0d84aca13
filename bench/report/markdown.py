"""bench.compare's verdict as Markdown: the body of a pull request's comment (`tlbench compare
--markdown`)."""

from __future__ import annotations

from typing import Any

from bench import compare

_MARK = {compare.WORSE: "🔴 worse", compare.IMPROVED: "🟢 improved", compare.SAME: "same",
         compare.NOT_COMPARABLE: "not comparable"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def verdict(rows: list[compare.Row], notes: list[str], max_slowdown_pct: float,
            alpha: float, title: str) -> str:
    worse = compare.regressions(rows)
    head = (f"**{len(worse)} regression(s)**: " + ", ".join(
        f"`{r.run_id}` {r.metric} {r.time_change_pct:+.1f}%" for r in worse)
        if worse else "**No regression.**")
    lines = [f"### {_cell(title)}", "", head, "",
             f"Worse = slower by more than {max_slowdown_pct:g}% and significant (Holm-adjusted "
             f"p < {alpha:g}); † the primary figure (training time), judged in a family of its "
             f"own.", "",
             "| run | figure | base | new | new/base | time | p | n | status | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        cells: list[Any] = [
            f"`{r.run_id}`", r.metric + (" †" if r.primary else ""),
            "—" if r.base is None else f"{r.base:.4g}", "—" if r.new is None else f"{r.new:.4g}",
            "—" if r.ratio is None else f"{r.ratio:.3f}x",
            "—" if r.time_change_pct is None else f"{r.time_change_pct:+.1f}%",
            "—" if r.p_value is None else f"{r.p_value:.2g}",
            f"{r.n_base}/{r.n_new}" if r.comparable else "—", _MARK[r.status], r.note]
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    lines += ["", *(f"- {_cell(n)}" for n in notes)]
    return "\n".join(lines).rstrip() + "\n"
