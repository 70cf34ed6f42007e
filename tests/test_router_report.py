"""`slimserve report`: one self-contained HTML file; headless Chromium renders its Pareto plot."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from slimserve.report import report

from .router_helpers import standard

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture
def html_path(tmp_path):
    return report(tmp_path / "report.html", catalog=standard(tmp_path))


def test_report_is_self_contained_and_complete(html_path):
    html = html_path.read_text()
    # nothing is fetched: no external scripts, styles, images or fonts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    plot = re.search(r'<svg id="cost-quality".*?</svg>', html, re.S).group(0)
    assert plot.count("<circle") == 4  # ref, int8, int4-g128, int4-bad have top1; gpt-4o declares no top1
    assert 'class="front"' in plot and "dominated" in plot
    assert '<svg id="latency-quality"' in html and '<svg id="cost-mc-arc-easy"' in html  # gpt-4o on its declared task
    table = re.search(r'<table class="sortable" id="targets">.*?</table>', html, re.S).group(0)
    for tid in ("ref@cpu", "int8@cpu", "int4-g128@cpu", "int4-bad@cpu", "gpt-4o"):
        assert f">{tid}<" in table
    assert "pruned: no benchmark record" in html  # left out, with the reason
    assert "slimserve bench int8 --target cpu" in html and "Test CPU" in html  # commands and fingerprints


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,1400",
    ]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(html_path, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", html_path.as_uri()).stdout
    assert '<svg id="cost-quality"' in dom and dom.count("<circle") >= 4 and 'class="front"' in dom
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "router-report.png"
    shot.unlink(missing_ok=True)
    _chromium(tmp_path, f"--screenshot={shot}", html_path.as_uri())
    blank_html = tmp_path / "blank.html"
    blank_html.write_text("<!DOCTYPE html><html><body></body></html>")
    blank = tmp_path / "blank.png"
    _chromium(tmp_path, f"--screenshot={blank}", blank_html.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a blank page compresses to almost nothing; plots, labels and the table do not
    assert shot.stat().st_size > 10 * blank.stat().st_size, (shot.stat().st_size, blank.stat().st_size)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)")
def test_table_sorts_on_header_click(html_path, tmp_path):
    # click "$/1M in" twice (descending) from a script appended after the page's own, then read the DOM
    page = html_path.read_text().replace(
        "</body>",
        "<script>var th = document.querySelectorAll('#targets th')[5]; th.click(); th.click();</script></body>",
    )
    probe = tmp_path / "probe.html"
    probe.write_text(page)
    dom = _chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout
    body = re.search(r'<table class="sortable" id="targets">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    ids = re.findall(r"<tr[^>]*><td[^>]*>([^<]+)</td>", body)
    assert ids == ["gpt-4o", "ref@cpu", "int8@cpu", "int4-bad@cpu", "int4-g128@cpu"]  # by input price, high to low


def test_long_text_sits_in_its_own_table(html_path):
    html = html_path.read_text()
    targets = re.search(r'<table class="sortable" id="targets">.*?</table>', html, re.S).group(0)
    details = re.search(r'<table class="sortable" id="details">.*?</table>', html, re.S).group(0)
    assert ">method<" not in targets and ">price source<" not in targets
    assert ">method<" in details and "measured: " in details and ">gpt-4o<" in details


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)")
def test_page_fits_a_1400px_window(html_path, tmp_path):
    """No horizontal scrollbar at 1400 px: the page is no wider than the window (the _chromium window is 1400 wide)."""
    probe = tmp_path / "width.html"
    script = (
        "<script>window.addEventListener('load', function(){var d = document.documentElement;"
        "document.body.dataset.widths = d.scrollWidth + ' ' + d.clientWidth;});</script></body>"
    )
    probe.write_text(html_path.read_text().replace("</body>", script))
    dom = _chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout
    scroll, client = map(int, re.search(r'data-widths="(\d+) (\d+)"', dom).groups())
    assert 1300 < client <= 1400 and scroll <= client, (scroll, client)


def test_report_plots_the_stored_route_evals(tmp_path):
    import numpy as np

    from slimserve.gateway import api as gw
    from slimserve.gateway import evaluate as E

    cat = standard(tmp_path)
    rng = np.random.default_rng(1)
    weak, strong = rng.random(200) < 0.4, rng.random(200) < 0.6
    prices = E.Prices(0.05, 0.5, "weak@onnx-cpu", "strong@cpu")
    hard = (~weak).astype(float) + 0.1 * rng.random(200)  # a router that knows where the weak tier fails
    results = [
        E.random_baseline(weak, strong, prices),
        E.summarize("oracle-ish", "threshold", hard, weak, strong, prices),
    ]
    report_ = {"dataset": "arc_easy", "split": "test", "n_test": 200, "n_train": 180, "created": "2026-12-02T00:00:00+00:00",
               "weak": {"tier": "weak", "model": "w", "accuracy": float(weak.mean())},
               "strong": {"tier": "strong", "model": "s", "accuracy": float(strong.mean())},
               "oracle_accuracy": float((weak | strong).mean()), "routers": [r.to_dict() for r in results],
               "command": "slimserve route eval r.yaml --data arc_easy", "config": "/x/r.yaml"}  # fmt: skip
    gw.save_eval(cat, report_)
    html = report(tmp_path / "r.html", catalog=cat).read_text()
    plot = re.search(r'<svg id="route-curve-0".*?</svg>', html, re.S).group(0)
    assert plot.count('class="series"') == 4  # random, the router, the two tiers alone, the oracle
    assert "oracle-ish" in plot and "slimserve route eval r.yaml --data arc_easy" in html
    apgr = re.search(r"<td>oracle-ish</td><td>threshold</td><td>([0-9.]+)</td>", html).group(1)
    assert float(apgr) == pytest.approx(results[1].apgr, abs=1e-3) and float(apgr) > 0.6
