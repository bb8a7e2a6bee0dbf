"""The report as a reader sees it: order, colours, marks, figures that fit, and the page in Chromium.

Studies are written through raylab.results.StudyWriter (`write_study` of
test_analysis). The browser test renders report.html in headless Chromium
(Debian's `chromium`, which scripts/system_deps.sh installs) and reads back what the
page really loaded; with no Chromium on PATH it skips with the line that says how to
install it, and fails under CI.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # tests only: the library never picks a backend

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from conftest import require_packages  # noqa: E402
from test_analysis import write_study  # noqa: E402

from analysis import load_study, plots, summarize, to_markdown  # noqa: E402
from analysis.order import natural_key, variant_order  # noqa: E402
from analysis.report import write_report  # noqa: E402

WD = [0.0, 1e-5, 1e-4, 1e-3, 1e-2]  # the L2 sweep the issue saw sorted as strings


def l2_spec() -> dict:
    # written in the job's order (largest first), not the sorted one
    return {f"wd={wd:g}": {"config": {"weight_decay": wd}, "best": [0.6 + i / 100, 0.62 + i / 100]}
            for i, wd in enumerate(reversed(WD))}


# ------------------------------------------------------------------ order and colours
def test_swept_values_sort_as_numbers_in_table_legend_and_axis(tmp_path):
    s = load_study(write_study(tmp_path, "l2", l2_spec(), meta={
        "name": "l2", "swept": ["weight_decay"], "variants": list(l2_spec())}))
    expected = ["wd=0", "wd=1e-05", "wd=0.0001", "wd=0.001", "wd=0.01"]
    assert sorted(expected, key=str) != expected  # as strings they would not be in this order
    assert sorted(reversed(expected), key=natural_key) == expected
    assert variant_order(s.trials) == expected
    assert list(summarize(s)["variant"]) == expected
    legend = [t.get_text() for t in plots.learning_curves(s.metrics, trials=s.trials).legends[0].get_texts()]
    assert legend == expected
    weights = [t.get_text().split(":")[0]
               for t in plots.weight_histograms(s.weights).legends[0].get_texts()]
    assert weights == expected
    ax = plots.sweep_scatter(s.trials, "weight_decay").axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["0", "1e-05", "0.0001", "0.001", "0.01"] and list(ax.get_xticks()) == sorted(ax.get_xticks())
    rows = [line.split(" | ")[0].lstrip("| ") for line in to_markdown(summarize(s)).splitlines()[2:]]
    assert rows == expected


def test_two_swept_fields_order_the_same_in_table_and_legend(tmp_path):
    s = load_study(write_study(tmp_path, "l1_vs_l2", {
        "l2": {"best": [0.66, 0.67]}, "l1": {"config": {"l1": 1e-5, "weight_decay": 0.0}, "best": [0.6, 0.61]},
        "none": {"config": {"weight_decay": 0.0}, "best": [0.62, 0.63]}},
        meta={"name": "l1_vs_l2", "swept": ["l1", "weight_decay"], "variants": ["l2", "l1", "none"]}))
    table = list(summarize(s)["variant"])
    legend = [t.get_text() for t in plots.learning_curves(s.metrics, trials=s.trials).legends[0].get_texts()]
    assert table == legend == variant_order(s.trials) == ["none", "l2", "l1"]  # by (l1, weight_decay)


def test_one_config_keeps_one_colour_across_studies(tmp_path):
    base = {"best": [0.66, 0.67]}  # lr 0.01, wd 1e-4: the Lab 1 baseline
    lab1 = load_study(write_study(tmp_path, "lab1", {
        "baseline": base, "step-decay": {"config": {"schedule": "step"}, "best": [0.65, 0.66]}}))
    lr = load_study(write_study(tmp_path, "lr", {
        "lr=0.1": {"config": {"lr": 0.1}, "best": [0.5, 0.52]}, "lr=0.01": base,
        "lr=0.001": {"config": {"lr": 0.001}, "best": [0.6, 0.61]}}))
    aug = load_study(write_study(tmp_path, "aug", {
        "baseline": base, "augment": {"config": {"augment": True}, "best": [0.7, 0.71]}}))
    first = plots.config_colors([lab1, lr, aug])
    assert first == plots.config_colors([lab1, lr, aug])  # deterministic
    c1, c2, c3 = first
    assert c1["baseline"] == c2["lr=0.01"] == c3["baseline"]  # the same runs, the same colour
    for per_study in first:
        assert len(set(per_study.values())) == len(per_study)  # distinct within a study
        assert plots.DIVERGED_COLOR not in per_study.values()
    assert c3["augment"] not in (c1["baseline"], c1["step-decay"])  # a new config, a new colour
    fig = plots.learning_curves(lr.metrics, trials=lr.trials, colors=c2)
    drawn = {ln.get_label(): ln.get_color() for ln in fig.axes[0].lines}
    assert matplotlib.colors.same_color(drawn["lr=0.01"], c1["baseline"])


# ------------------------------------------------------------------ did not learn
def test_a_trial_that_ends_at_chance_is_marked_did_not_learn(tmp_path):
    s = load_study(write_study(tmp_path, "lr", {
        "lr=1": {"config": {"lr": 1.0}, "best": [0.11, 0.10], "final": [0.10, 0.10]},
        "lr=0.1": {"config": {"lr": 0.1}, "best": [0.70, 0.72]}}))
    table = summarize(s).set_index("variant")
    assert table.loc["lr=1", "did_not_learn"] == 2 and table.loc["lr=1", "diverged"] == 0
    assert table.loc["lr=0.1", "did_not_learn"] == 0
    md = to_markdown(summarize(s))
    assert "| 2 did not learn |" in md and "| learned |" in md
    legend = [t.get_text() for t in plots.learning_curves(s.metrics, trials=s.trials).legends[0].get_texts()]
    assert "did not learn (ended at chance): lr=1 ×2" in legend
    assert any(t.startswith("chance (0.1") for t in legend)
    scatter = [t.get_text() for t in plots.sweep_scatter(s.trials, "lr").legends[0].get_texts()]
    assert "did not learn (ended at chance): lr=1 ×2" in scatter
    # without a trials table, the last epoch decides
    fig = plots.learning_curves(s.metrics)
    assert "did not learn (ended at chance): lr=1 ×2" in [t.get_text() for t in fig.legends[0].get_texts()]


# ------------------------------------------------------------------ figures that fit
def _many(tmp_path, n: int = 25):
    spec = {f"lr={0.001 * (k + 1):g}": {"config": {"lr": 0.001 * (k + 1)},
                                         "best": [0.5 + k / 100, 0.51 + k / 100], "wscale": 0.05 + k / 200}
            for k in range(n)}
    spec["lr=0.001"]["diverge"] = True
    spec["a variant name far longer than any legend column could hold, " * 3] = {
        "config": {"lr": 0.5}, "best": [0.4, 0.41]}
    return load_study(write_study(tmp_path, "crowded_sweep_with_a_long_study_name", spec))


def test_every_figure_fits_at_26_variants_one_with_a_very_long_name(tmp_path):
    s = _many(tmp_path)
    names = variant_order(s.trials)
    figs = [plots.learning_curves(s.metrics, trials=s.trials),
            plots.sweep_curves(s.metrics, trials=s.trials),
            plots.sweep_scatter(s.trials, "lr"),
            plots.weight_histograms(s.weights),
            plots.pairwise(s.trials, s.metrics, names[3], names[-1])]
    for fig in figs:
        plots.check_fits(fig)  # raises FigureError when a title or legend is cut or covers data
        assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    assert len(figs[0].legends[0].get_texts()) == 27  # 26 variants + the diverged mark


def test_check_fits_catches_a_cut_title_and_a_legend_over_data():
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_title("a title far too long for a four inch wide figure, so its ends are cut off " * 2)
    with pytest.raises(plots.FigureError, match="cut off"):
        plots.check_fits(fig)
    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a line")
    ax.legend(loc="upper left")
    with pytest.raises(plots.FigureError, match="legend covers"):
        plots.check_fits(fig)
    with pytest.raises(plots.FigureError):
        plots.save(fig, "/nonexistent/never-written")  # checked before anything is written
    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xticks([1.0, 1.01, 1.02], ["0.001", "0.002", "0.003"])
    with pytest.raises(plots.FigureError, match="tick labels overlap"):
        plots.check_fits(fig)


# ------------------------------------------------------------------ the page in a browser
PROBE = """<script>
window.addEventListener('load', () => {
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  const out = {
    images: [...document.images].map(i => ({src: i.getAttribute('src'), width: i.naturalWidth})),
    links: [...document.querySelectorAll('a[href]')].map(a => {
      const href = a.getAttribute('href');
      return {href, ok: href.startsWith('#') && !!document.getElementById(decodeURIComponent(href.slice(1)))};
    }),
    duplicate_ids: ids.filter((x, k) => ids.indexOf(x) !== k),
    scroll_width: document.documentElement.scrollWidth, inner_width: window.innerWidth,
    viewport: document.querySelector('meta[name=viewport]')?.content || '',
    toc: [...document.querySelectorAll('nav.toc a')].map(a => a.getAttribute('href')),
    headings_without_id: [...document.querySelectorAll('h2, h3')].filter(h => !h.id).length,
  };
  const pre = document.createElement('pre');
  pre.id = 'raylab-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    require_packages("chromium")  # skips, or fails under CI, naming the install command
    raise AssertionError("scripts/system_deps.sh --check chromium passed, yet no chromium on PATH")


def render(page: Path, tmp_path: Path, width: int) -> dict:
    """Load `page` (plus the probe script) in headless Chromium; what the page really had."""
    probe = page.with_name("_probe_" + page.name)
    probe.write_text(page.read_text("utf-8").replace("</body>", PROBE + "</body>"), "utf-8")
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / f'chromium-{width}'}", f"--window-size={width},900",
           "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    probe.unlink()
    start = proc.stdout.find('<pre id="raylab-probe">')
    assert start >= 0, f"Chromium gave no probe output (rc {proc.returncode}): {proc.stderr[-2000:]}"
    text = proc.stdout[start:].split(">", 1)[1].split("</pre>", 1)[0]
    return json.loads(text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&amp;", "&"))


@pytest.mark.browser
def test_report_html_in_headless_chromium(tmp_path):
    chromium()
    base = {"best": [0.66, 0.67]}
    write_study(tmp_path, "assignment", {"baseline": base, "step-decay": {
        "config": {"schedule": "step"}, "best": [0.65, 0.66]}}, study="lab1_simplenn")
    combined = write_study(tmp_path, "assignment", {
        "lr=1": {"config": {"lr": 1.0}, "best": [0.11, 0.10], "final": [0.10, 0.10]},
        "lr=0.1": {"config": {"lr": 0.1}, "best": [0.70, 0.72]}, "lr=0.01": base}, study="lr_sweep")
    l2 = write_study(tmp_path, "l2_sweep", l2_spec())
    out = tmp_path / "report"
    write_report([str(combined), str(l2)], str(out), "html")
    html = (out / "report.html").read_text("utf-8")
    for width in (1200, 400):  # a desktop and a phone
        page = render(out / "report.html", tmp_path, width)
        assert page["images"] and all(img["width"] > 0 for img in page["images"]), page["images"]
        assert len(page["images"]) == html.count("<img ")
        assert page["links"] and all(link["ok"] for link in page["links"]), page["links"]
        assert page["duplicate_ids"] == [] and page["headings_without_id"] == 0
        assert "width=device-width" in page["viewport"]
        assert {"#summary", "#lab1_simplenn", "#lr_sweep", "#l2_sweep"} <= set(page["toc"])
        # nothing makes the page itself scroll sideways: wide tables scroll in their own box
        assert page["scroll_width"] <= page["inner_width"], (width, page["scroll_width"])
