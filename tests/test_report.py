"""The HTML report and `tlbench report`, from fixture result files (no benchmark is run).

The page is checked as a browser sees it, too: headless Chromium (Debian's package, installed by
`make test` when missing) opens it offline, screenshots it, and its network log must show no
request made by the page.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench import cli, results, summary
from bench.report import charts, console, html

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = "<script>alert(1)</script>"
_EXTERNAL_CSS_URL = re.compile(r"url\(\s*['\"]?(?!#|data:)")  # url(#id) is the page's own


def fixture(name: str) -> dict[str, Any]:
    return results.load(FIXTURES / name)


URL_ATTRS = frozenset({"src", "href", "xlink:href", "srcset", "action", "poster", "data",
                       "formaction"})


class _Refs(HTMLParser):
    """Every URL-bearing attribute, every tag, and the text of <style> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self._in_style = tag == "style"
        self.urls += [v or "" for k, v in attrs if k in URL_ATTRS]
        self.styles += [v or "" for k, v in attrs if k == "style"]

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def external_references(page: str) -> list[str]:
    refs = _Refs()
    refs.feed(page)
    bad = [u for u in refs.urls if not u.startswith(("#", "data:"))]
    bad += [s for s in refs.styles if "@import" in s or _EXTERNAL_CSS_URL.search(s)]
    bad += [f"<{t}>" for t in refs.tags & {"script", "link", "iframe", "object", "embed"}]
    return bad


def test_the_report_has_figure3_the_paper_comparison_and_every_section() -> None:
    doc = fixture("default_vm.json")
    page = html.render(doc, "results/vm/20261126T112938Z_default.json")
    assert '<div class="chart" id="figure3"><svg' in page
    for heading in ("Figure 3, reproduced", "Beside the white paper", "Speed-up of each backend",
                    "Full training", "Transfer learning", "Inference", "failed or were skipped",
                    "Machine and software"):
        assert heading in page, heading
    assert "~20 h" in page and "~15 min" in page and "~80x" in page
    # this box's figures, as summary computes them, not re-derived
    for row in summary.speedups(doc):
        assert f"{row['paper_scale']['speedup']:,.0f}x" in page
    assert page.count("1/80") >= 1 and "projected" in page


def test_figure3_is_a_pair_a_backend_at_the_paper_s_scale_largest_speedup_first() -> None:
    doc = fixture("default_vm.json")
    doc["runs"] = doc["runs"][::-1]  # tf-onednn's speed-up, the smaller, now comes first
    scale = {r["backend"]: r["paper_scale"] for r in summary.speedups(doc)}
    pairs = charts.figure3_pairs(doc)
    assert [p["kind"] for p in pairs] == ["reported", "projected", "projected"]
    assert [p["label"] for p in pairs[1:]] == ["tf-stock", "tf-onednn"]
    assert scale["tf-stock"]["speedup"] > scale["tf-onednn"]["speedup"]
    for p in pairs[1:]:  # bench.record's figures, as they are
        s = scale[p["label"]]
        assert (p["full_s"], p["transfer_s"], p["speedup"]) == (
            s["full_training_s"], s["transfer_s"], s["speedup"])
    svg = charts.figure3(doc)
    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    assert 'id="h' in svg or "pattern" in svg  # hatches are SVG patterns
    assert svg.count("projected") >= 4 and "reported" in svg and "1/80" in svg
    assert "as run" not in svg  # those figures are in the table beside it


def test_the_table_beside_figure3_gives_each_backend_at_the_paper_s_scale_and_as_run() -> None:
    doc = fixture("default_vm.json")
    rows = html.paper_rows(doc)
    assert [r["who"] for r in rows] == ["white paper", "tf-stock", "tf-onednn"]
    assert rows[0]["speedup"] == "~80x" and rows[0]["as_run"] is None
    for row, figures in zip(rows[1:], summary.speedups(doc), strict=True):
        assert row["speedup"] == f"{figures['paper_scale']['speedup']:,.0f}x"
        assert row["as_run"]["speedup"] == f"{figures['speedup']:,.0f}x"
        assert row["as_run"]["kind"] == figures["full_training_kind"] == "projected"


def test_the_report_is_self_contained() -> None:
    page = html.render(fixture("mixed_vm.json"), "mixed_vm.json",
                       baseline=fixture("quick_vm.json"), baseline_source="quick_vm.json")
    assert external_references(page) == []


def test_the_external_reference_check_catches_what_it_should() -> None:
    page = ('<link rel="stylesheet" href="https://cdn.example/x.css"><img src="//x/y.png">'
            '<style>@font-face { src: url(https://f.example/a.woff) }</style>'
            '<svg><use xlink:href="http://x.example/s.svg#a"/></svg><a href="#ok">ok</a>')
    assert len(external_references(page)) == 5


def test_every_string_from_a_result_file_is_escaped() -> None:
    doc = fixture("mixed_vm.json")
    doc["machine"]["hostname"] = HOSTILE
    doc["machine"]["cpu_model"] = '"><img src=x onerror=alert(2)>'
    doc["suite"]["description"] = "<b>bold</b> & more"
    runs = [dict(run) for run in doc["runs"]]  # a loaded run is read-only: new ones
    for run in runs:
        if run["status"] == "failed":
            run["error"] = f"boom {HOSTILE}"
            run["log_tail"] = "</pre><script>alert(3)</script>"
        if run["backend"] == "tf-onednn":
            run["backend"] = "<i>tf-onednn</i>"
    doc["runs"] = runs
    page = html.render(doc, f"results/{HOSTILE}.json")
    assert "<script" not in page.lower()
    assert "<img" not in page.lower() and "<i>" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in page
    assert "&lt;i&gt;tf-onednn&lt;/i&gt;" in page  # in the tables and in the chart's labels


def test_failed_and_skipped_runs_are_listed_with_their_reason() -> None:
    page = html.render(fixture("mixed_vm.json"), "mixed_vm.json")
    text = re.sub(r"<[^>]+>", "", page)  # a run id may break after its scenario (<wbr>)
    assert "inference/tf-onednn" in text and "timed out after 600 s" in page
    failures = page[page.index("Runs that failed or were skipped"):]
    assert failures.count("Intel Extension for TensorFlow is not installed") == 3
    assert failures.count('<span class="badge skipped">skipped</span>') == 3
    assert "log tail" in page


def test_the_speedup_matrix_is_relative_to_tf_stock() -> None:
    matrix = html.speedup_matrix(fixture("mixed_vm.json"))
    assert matrix["baseline"] == "tf-stock"
    assert [h["scenario"] for h in matrix["headers"]] == ["full_training", "transfer",
                                                          "inference"]
    rows = {r["backend"]: r["cells"] for r in matrix["rows"]}
    assert [c["text"] for c in rows["tf-stock"]] == ["1.00x", "1.00x", "1.00x"]
    onednn = rows["tf-onednn"]
    ratios = {r["scenario"]: r["ratio"] for r in summary.backend_ratios(fixture("mixed_vm.json"))}
    assert onednn[0]["ratio"] == pytest.approx(ratios["full_training"])
    assert onednn[2]["text"] == "failed" and "timed out" in onednn[2]["title"]
    assert [c["text"] for c in rows["itex"]] == ["skipped"] * 3


def test_a_result_without_a_full_pair_still_renders_and_says_why() -> None:
    doc = fixture("mixed_vm.json")
    doc["runs"] = [r for r in doc["runs"] if r["scenario"] == "inference"]
    page = html.render(doc, "x.json")
    assert "nothing to put beside the paper" in page and "<svg" not in page


def test_cli_report_prints_tables_and_writes_the_page_under_reports(tmp_path: Path, capsys,
                                                                   monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "results/vm/20261126T112938Z_default.json"
    source.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "default_vm.json", source)
    assert cli.main(["report", str(source)]) == 0
    out = capsys.readouterr().out
    assert "Full training" in out and "beside the white paper" in out
    page = tmp_path / "reports/20261126T112938Z_default.html"
    assert page.is_file() and f"HTML report: {Path('reports') / page.name}" in out
    assert '<div class="chart" id="figure3"><svg' in page.read_text()


def test_cli_report_with_a_baseline_adds_the_comparison(tmp_path: Path, capsys) -> None:
    out_html = tmp_path / "r.html"
    assert cli.main(["report", str(FIXTURES / "mixed_vm.json"), "--baseline",
                     str(FIXTURES / "quick_vm.json"), "--html", str(out_html)]) == 0
    assert "New vs baseline" in capsys.readouterr().out
    page = out_html.read_text()
    assert "Against the baseline" in page and "missing in base" in page


def test_cli_report_refuses_unusable_input(tmp_path: Path, capsys) -> None:
    assert cli.main(["report", str(tmp_path / "nope.json")]) == 2
    assert "no such result file" in capsys.readouterr().err
    assert cli.main(["report"]) == 2
    assert "give a RESULT file" in capsys.readouterr().err
    assert cli.main(["report", "--history", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_history_orders_files_by_date_and_charts_the_trend(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "results/vm"
    folder.mkdir(parents=True)
    for name in ("mixed_vm.json", "default_vm.json", "quick_vm.json"):
        shutil.copy(FIXTURES / name, folder / name)
    (folder / "broken.json").write_text('{"schema_version": 1, "runs": [')
    out_html = tmp_path / "history.html"
    assert cli.main(["report", "--history", str(folder), "--html", str(out_html)]) == 0
    out = capsys.readouterr().out
    assert out.index("c9b095b") < out.index("1c89e33+") < out.index("2bff093")
    assert "broken.json: not valid JSON" in out
    page = out_html.read_text()
    assert '<div class="chart" id="history"><svg' in page and "projected" in page
    assert external_references(page) == []


def test_history_default_page_is_named_after_the_folder(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "results/box"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "quick_vm.json", folder / "a.json")
    assert cli.main(["report", "--history", "results/box"]) == 0
    assert (tmp_path / "reports/history-box.html").is_file()


# --- in a real browser ------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  # nothing can leave the machine, whatever the page or the browser asks for
                  "--host-resolver-rules=MAP * ~NOTFOUND"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("chromium is not installed (Debian package `chromium`; `make test` installs it "
                "when it runs as root with apt) — the screenshot test needs it")


def page_requests(net_log: Path) -> list[str]:
    """URLs the page itself asked for (the browser's own service requests are not the page's)."""
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short at exit lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [e.get("params", {}) for e in log["events"] if e["type"] == start_job]
    return [p["url"] for p in starts if "url" in p and p.get("initiator") != "not an origin"]


def open_in_chromium(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{page.stem}"
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)


def test_chromium_opens_the_page_offline_and_screenshots_it(tmp_path: Path) -> None:
    page = html.write(html.render(fixture("mixed_vm.json"), "results/vm/mixed_vm.json",
                                  baseline=fixture("quick_vm.json"),
                                  baseline_source="results/vm/quick_vm.json",
                                  rows=None), tmp_path / "report.html")
    shot, net_log = tmp_path / "report.png", tmp_path / "net.json"
    run = open_in_chromium(page, tmp_path, "--window-size=1280,3200", f"--screenshot={shot}",
                           f"--log-net-log={net_log}")
    assert shot.is_file() and shot.stat().st_size > 50_000, run.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 3200)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 200  # text, tables and a chart, not blank
    assert page_requests(net_log) == []

    dom = open_in_chromium(page, tmp_path, "--dump-dom").stdout
    assert "Figure 3, reproduced" in dom and 'id="figure3"' in dom and "<svg" in dom


def test_the_network_check_sees_a_page_that_fetches(tmp_path: Path) -> None:
    page = tmp_path / "fetching.html"
    page.write_text('<html><body><img src="https://example.invalid/x.png"></body></html>')
    net_log = tmp_path / "net.json"
    open_in_chromium(page, tmp_path, "--screenshot=" + str(tmp_path / "f.png"),
                     f"--log-net-log={net_log}")
    assert page_requests(net_log) == ["https://example.invalid/x.png"]


def test_fixture_documents_are_not_modified_by_rendering() -> None:
    doc = fixture("mixed_vm.json")
    before = copy.deepcopy(doc)
    html.render(doc, "x.json", baseline=fixture("quick_vm.json"), baseline_source="q.json")
    assert doc == before


# --- one definition of every figure ----------------------------------------------------------

def _documents() -> list[Path]:
    shared = Path(__file__).resolve().parents[2] / "shared/reference-results"
    return sorted(FIXTURES.glob("*.json")) + sorted(shared.glob("*.json"))


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_report_compare_and_history_give_the_same_number_for_every_figure(
        path: Path, capsys) -> None:
    """`report --json`, `compare R R --json` and the history all read bench.record: for every
    ok run, every judged figure is the same number under the same run id and name, compare
    judges every ok run, and the history's training and transfer figures are those too."""
    from bench import compare, history

    assert cli.main(["report", str(path), "--json"]) == 0
    reported = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert cli.main(["compare", str(path), str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    doc = fixture(path.name) if path.parent == FIXTURES else results.load(path)
    ok = [r["run_id"] for r in doc["runs"] if r["status"] == "ok"]
    judged = {r["run_id"] for r in rows if r["status"] != compare.NOT_COMPARABLE}
    for run_id in ok:
        assert run_id in judged or reported[run_id]["figures"], run_id
    for row in rows:
        if row["status"] == compare.NOT_COMPARABLE:
            assert row["run_id"] not in ok or "schema 1" in row["note"], row
            continue
        assert reported[row["run_id"]]["figures"][row["metric"]]["value"] == row["base"]
    for entry in history.entries_of(doc, path.name):
        for name, key, scenario in (("train img/s", "train_img_s", "full_training"),
                                    ("extract img/s", "extract_img_s", "transfer")):
            run_id = f"{scenario}/{entry['backend']}"
            if entry[key] is not None:
                assert reported[run_id]["figures"][name]["value"] == entry[key]
        if entry["train_total_h"] is not None:
            total = reported[f"full_training/{entry['backend']}"]["figures"]["train total s"]
            assert total["value"] / 3600 == entry["train_total_h"]
            assert total["kind"] == entry["train_kind"]


def test_history_over_mixed_hardware_exits_2_naming_both(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "results/vm"  # one host name, `vm`, for two machines
    folder.mkdir(parents=True)
    for name in ("quick_vm.json", "contract_vm.json"):
        shutil.copy(FIXTURES / name, folder / name)
    assert cli.main(["report", "--history", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "results of 2 different machines" in err and "--across-machines" in err
    assert "e.g. quick_vm.json" in err and "e.g. contract_vm.json" in err
    assert cli.main(["report", "--history", str(folder), "--across-machines",
                     "--html", str(tmp_path / "h.html")]) == 0


# --- the fleet view ---------------------------------------------------------------------------

def _faster(doc: dict[str, Any], factor: float) -> dict[str, Any]:
    """The same result with every timed sample `factor` times shorter (another, faster box)."""
    doc = copy.deepcopy(doc)
    for run in doc["runs"]:
        for series in run.get("series", {}).values():
            series["samples"] = [x / factor for x in series["samples"]]
    doc["machine"] = {**doc["machine"], "cpu_model": "Faster Xeon", "physical_cores": 2}
    return doc


def test_the_fleet_ratios_like_with_like_to_the_reference_and_takes_geometric_means() -> None:
    from bench import fleet, record

    base = fixture("default_vm.json")
    view = fleet.fleet([(base, "a.json"), (_faster(base, 1.25), "b.json")])
    assert view["machines"][0]["hardware_id"] != view["machines"][1]["hardware_id"]
    for row in view["rows"]:
        ref, other = row["cells"]
        assert ref["ratio"] == 1.0
        run = next(r for r in base["runs"] if r["run_id"] == f"{row['scenario']}/{row['backend']}")
        assert ref["value"] == record.headline(run).value  # the contract's figure, as is
        assert other["ratio"] == pytest.approx(1.25, rel=0.02), row
        assert ref["per_core"] == ref["value"] / 2
    for g in view["geomeans"]:
        assert g["cells"][0] == {"value": 1.0, "scenarios": 3}
        assert g["cells"][1]["value"] == pytest.approx(1.25, rel=0.02)
    assert view["paper"]["kind"] == "reported" and view["paper"]["speedup"] == 80.0
    assert view["paper"]["peak_fp32_gflops"] == 40 * 2.4 * 64


def test_the_fleet_shows_other_configurations_side_by_side_without_a_ratio() -> None:
    from bench import fleet

    view = fleet.fleet([(fixture("default_vm.json"), "d"), (fixture("quick_vm.json"), "q")])
    train = next(r for r in view["rows"] if r["scenario"] == "full_training")
    quick = train["cells"][1]
    assert quick["status"] == "ok" and quick["value"] and quick["ratio"] is None
    assert "model.image_size: 160 → 96" in quick["why"]


def test_cli_fleet_prints_writes_the_page_and_json_with_the_paper_s_row(tmp_path: Path,
                                                                      capsys) -> None:
    files = [str(FIXTURES / "default_vm.json"), str(FIXTURES / "contract_vm.json")]
    page = tmp_path / "fleet.html"
    assert cli.main(["report", *files, "--html", str(page)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "white paper: 2S Intel Xeon Gold 6148 (reported)" in out and "geometric mean" in out
    assert "not ratioed: other configuration" in out and "~80x" in out
    text = page.read_text()
    assert "Machines side by side" in text and external_references(text) == []
    assert cli.main(["report", *files, "--reference", files[1], "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["machines"][0]["source"] == files[1]  # the reference first
    assert cli.main(["report", files[0], "--reference", files[0]]) == 2
    assert "two or more result files" in capsys.readouterr().err


def test_chromium_opens_the_fleet_page_offline_and_screenshots_it(tmp_path: Path) -> None:
    from bench import fleet

    docs = [(fixture("default_vm.json"), "default_vm.json")]
    docs += [(results.load(p), p.name) for p in _documents() if p.name.startswith("epyc")
             and p.name.endswith("_default.json")] or [(fixture("contract_vm.json"), "c.json")]
    page = html.write(html.render_fleet(fleet.fleet(docs)), tmp_path / "fleet.html")
    shot, net_log = tmp_path / "fleet.png", tmp_path / "net.json"
    run = open_in_chromium(page, tmp_path, "--window-size=1280,2400", f"--screenshot={shot}",
                           f"--log-net-log={net_log}")
    assert shot.is_file() and shot.stat().st_size > 50_000, run.stderr[-2000:]
    assert page_requests(net_log) == []
    dom = open_in_chromium(page, tmp_path, "--dump-dom").stdout
    assert "Machines side by side" in dom and 'id="fleet"' in dom and "<svg" in dom


def test_the_fleet_does_not_ratio_extraction_across_schema_versions() -> None:
    from bench import fleet

    v2 = fixture("default_vm.json")
    v2 = {**v2, "schema_version": 2}
    v2.pop("migrated_from")
    view = fleet.fleet([(fixture("default_vm.json"), "v1"), (_faster(v2, 1.25), "v2")])
    transfer = next(r for r in view["rows"] if r["scenario"] == "transfer")["cells"][1]
    assert transfer["ratio"] is None and "schema 1 vs 2" in transfer["why"]
    train = next(r for r in view["rows"] if r["scenario"] == "full_training")["cells"][1]
    assert train["ratio"] == pytest.approx(1.25, rel=0.02)


def test_steal_and_an_injected_slowdown_are_said_on_the_page_and_in_the_terminal() -> None:
    doc = copy.deepcopy(fixture("mixed_vm.json"))
    ok = [r for r in doc["runs"] if r["status"] == "ok"]
    for share, run in zip((0.05, 0.31, 0.12), ok, strict=False):
        run["steal"] = {"share": share, "source": "/proc/stat"}
    training = next(r for r in ok if r["scenario"] == "full_training")
    training["injected_slowdown"] = 0.1
    page = " ".join(html.render(doc, "x.json").split())
    text = " ".join(str(line) for line in console.quality_lines(doc))
    for shown in (page, text):
        assert "CPU steal: median 12%, 5%–31% over 3 worker process(es)" in shown
        assert (f"{training['run_id']}: NOT A MEASUREMENT of the stack — its training steps "
                f"were made 10% slower on purpose") in shown
    plain = fixture("mixed_vm.json")
    assert not any("steal" in line or "NOT A" in line for line in console.quality_lines(plain))


def _as_backend(run: dict[str, Any], backend: str, time_scale: float = 1.0) -> dict[str, Any]:
    out = copy.deepcopy(run)
    out["backend"], out["run_id"] = backend, f"{run['scenario']}/{backend}"
    for series in out["series"].values():
        series["samples"] = [s * time_scale for s in series["samples"]]
    return out


def _precision_doc(int8_share: dict[str, float]) -> dict[str, Any]:
    doc = copy.deepcopy(fixture("quick_vm.json"))
    fp32 = [r for r in doc["runs"] if r["backend"] == "tf-onednn"
            and r["scenario"] in ("transfer", "inference")]
    runs = [_as_backend(r, "openvino") for r in fp32]
    int8 = [_as_backend(r, "openvino-int8", time_scale=0.5) for r in fp32]
    for run in int8:
        run["kernels"] = {"asked": "int8", "source": "OpenVINO PERF_COUNT", "calls": 4,
                          "batch": 8, "precision_s": int8_share,
                          "node_types": {"Convolution": {
                              "brgconv_avx512_amx_I8": {"nodes": 10, "seconds": 0.004},
                              "jit_avx512_FP32": {"nodes": 2, "seconds": 0.001}}}}
        if run["scenario"] == "transfer":
            run["accuracy"] = run["accuracy"] - 0.05
    doc["runs"] += runs + int8
    return doc


def test_the_precision_table_shows_speed_over_the_stacks_fp32_and_accuracy_deltas() -> None:
    doc = _precision_doc({"i8": 0.008, "u8": 0.001, "f32": 0.001})
    (row,) = summary.precision_rows(doc)
    assert row["backend"] == "openvino-int8" and row["fp32"] == "openvino"
    assert row["speed"]["extract img/s"] == pytest.approx(2.0)
    assert row["speed"]["latency bs1 p50 ms"] == pytest.approx(2.0)
    assert row["speed"]["throughput img/s"] == pytest.approx(2.0)
    assert row["accuracy"]["accuracy"] == pytest.approx(-0.05)
    assert row["kernel_share"] == pytest.approx(0.9)
    assert "random weights" in row["note"]
    page = " ".join(html.render(doc, "x.json").split())
    assert "Precision: each stack's bf16 / int8 against its own fp32" in page
    assert "2.00x" in page and "-5.0%*" in page and "Kernels that ran" in page
    assert "brgconv_avx512_amx_I8 80%" in page
    assert "kernels do not match" not in page


def test_a_run_that_asked_int8_but_ran_f32_kernels_is_flagged_in_console_and_html() -> None:
    doc = _precision_doc({"i8": 0.001, "f32": 0.009})
    flagged = [r for r in summary.kernel_rows(doc) if r["mismatch"]]
    assert [r["run_id"] for r in flagged] == ["transfer/openvino-int8", "inference/openvino-int8"]
    assert "asked for int8 but spent 10% of its profiled time in int8 kernels" in (
        flagged[0]["mismatch"])
    page = " ".join(html.render(doc, "x.json").split())
    terminal = Console(record=True, width=250)
    console.show(doc, terminal)
    for shown in (page, " ".join(terminal.export_text().split())):
        assert ("transfer/openvino-int8: kernels do not match the precision asked" in shown
                or "kernels do not match the precision asked: asked for int8" in shown)
