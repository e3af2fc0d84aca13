"""The HTML pages as a reader sees them at 100% zoom in a 1400-pixel window (headless Chromium):
Figure 3's text no smaller than the page's small text, no two of its labels on top of each other,
and no table wider than the page's column — on a run's report and on the fleet page.

Measured by the page's own layout: a copy of the page gets a script that, once the page is laid
out, writes what it measures as JSON into a <pre>, read back from Chromium's `--dump-dom`.
"""

from __future__ import annotations

import itertools
import json
import re
from html import unescape
from pathlib import Path
from typing import Any

from bench import backends, compare, fleet, results, summary
from bench.report import html
from tests.test_report import FIXTURES, _as_backend, _documents, _faster, fixture, open_in_chromium

WINDOW = "--window-size=1400,1600"

# Every table's right edge, and that of everything in it, against the right edge of the page's
# content column; every <text> of Figure 3 at the size it is drawn (its font size through the
# SVG's scaling and transforms: the screen matrix's area factor) and its box, against the font
# size of the caption beneath the figure, the page's small text.
_MEASURE = """<pre id="layout"></pre><script>
window.addEventListener("load", () => {
  const main = document.querySelector("main"), padding = getComputedStyle(main).paddingRight;
  const column = main.getBoundingClientRect().right - parseFloat(padding);
  const tables = [...document.querySelectorAll("table")].map(table => ({
    heading: (table.closest(".grid2") || table).previousElementSibling?.textContent,
    right: Math.max(...[table, ...table.querySelectorAll("*")]
                    .map(e => e.getBoundingClientRect().right))}));
  const figure = document.querySelector("#figure3");
  const texts = [...(figure ? figure.querySelectorAll("svg text") : [])].map(t => {
    const m = t.getScreenCTM(), box = t.getBoundingClientRect();
    const scale = Math.sqrt(Math.abs(m.a * m.d - m.b * m.c));
    return {text: t.textContent, box: [box.left, box.top, box.right, box.bottom],
            px: parseFloat(getComputedStyle(t).fontSize) * scale};
  });
  const caption = figure && figure.nextElementSibling;
  document.getElementById("layout").textContent = JSON.stringify({
    window: document.documentElement.clientWidth, column, tables, texts,
    small: caption ? parseFloat(getComputedStyle(caption).fontSize) : null});
});
</script>"""


def measure(page: str, tmp_path: Path, name: str) -> dict[str, Any]:
    """The page's layout in a 1400-pixel window; its screenshot is left in tmp_path."""
    path = html.write(page.replace("</body>", _MEASURE + "</body>", 1), tmp_path / f"{name}.html")
    shot = tmp_path / f"{name}.png"
    run = open_in_chromium(path, tmp_path, WINDOW, f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 0, run.stderr[-2000:]
    dom = open_in_chromium(path, tmp_path, WINDOW, "--virtual-time-budget=5000", "--dump-dom")
    found = re.search(r'<pre id="layout">(.+?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    layout = json.loads(unescape(found.group(1)))
    assert layout["window"] == 1400 and layout["tables"]
    return layout


def too_wide(layout: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in layout["tables"] if t["right"] > layout["column"] + 0.5]


def overlapping(texts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of labels whose boxes overlap by more than a pixel each way."""
    return [(a["text"], b["text"]) for a, b in itertools.combinations(texts, 2)
            if min(a["box"][2], b["box"][2]) - max(a["box"][0], b["box"][0]) > 1
            and min(a["box"][3], b["box"][3]) - max(a["box"][1], b["box"][1]) > 1]


def most_stacks() -> tuple[dict[str, Any], dict[str, Any]]:
    """The result with the most stacks in Figure 3, as it is (the baseline), and with every
    stack of the harness in it: each one without a training and transfer pair given copies of
    the last pair's runs, a little slower each."""
    path = max(_documents(), key=lambda p: len(summary.speedups(results.load(p))))
    base = fixture(path.name) if path.parent == FIXTURES else results.load(path)
    paired = [r["backend"] for r in summary.speedups(base)]
    donor = [r for r in base["runs"]
             if r["backend"] == paired[-1] and r["scenario"] in ("full_training", "transfer")]
    missing = [name for name in backends.names() if name not in paired]
    doc = {**base, "runs": [r for r in base["runs"] if not (
        r["backend"] in missing and r["scenario"] in ("full_training", "transfer"))]}
    doc["runs"] += [_as_backend(run, name, time_scale=1 + 0.1 * n)
                    for n, name in enumerate(missing, 1) for run in donor]
    assert len(summary.speedups(doc)) == len(backends.names()) == 14
    return base, doc


def test_figure3_of_14_stacks_is_legible_and_no_table_of_the_report_is_wider_than_the_page(
        tmp_path: Path) -> None:
    base, doc = most_stacks()
    page = html.render(doc, "/home/user/tlbench/results/vm/new.json", baseline=base,
                       baseline_source="/home/user/tlbench/results/vm/base.json",
                       rows=compare.compare(base, doc))
    layout = measure(page, tmp_path, "report")
    texts, small = layout["texts"], layout["small"]
    assert small and len(texts) > 2 * 14  # a label at each bar
    assert [t for t in texts if t["px"] < small - 0.01] == [], f"small text: {small} px"
    assert overlapping(texts) == []
    assert too_wide(layout) == [], f"the column ends at {layout['column']} px"


def test_no_table_of_the_fleet_page_of_three_machines_is_wider_than_the_page(
        tmp_path: Path) -> None:
    paths = [FIXTURES / "default_vm.json"]
    paths += [p for p in _documents() if p.name.startswith("epyc")
              and p.name.endswith("_default.json")] or [FIXTURES / "contract_vm.json"]
    docs = [(results.load(p), str(p.resolve())) for p in paths]
    if len(docs) < 3:  # without the shared reference results: a faster copy of the first
        docs.append((_faster(docs[0][0], 1.25), str(FIXTURES.resolve() / "faster.json")))
    page = html.render_fleet(fleet.fleet(docs[:3]))
    layout = measure(page, tmp_path, "fleet")
    assert too_wide(layout) == [], f"the column ends at {layout['column']} px"
    for _, source in docs[:3]:  # the result file by its name, its whole path on hover
        assert f'title="{source}">{Path(source).name}<' in page
