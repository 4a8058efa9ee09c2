"""Data Docs open in a real browser, offline: headless Chromium, with every host but 127.0.0.1 unresolvable,
renders the index and a validation page from the locally cached web assets (gr2.platform.web_assets)."""

import re

import numpy as np
import pytest

from gr2.platform import browser, web_assets
from gr2.platform import quality as qc
from gr2.platform.quality import QualityGateError

pytestmark = [
    pytest.mark.skipif(browser.chromium() is None, reason="no chromium binary (apt-get install chromium)"),
    pytest.mark.skipif(
        bool(web_assets.missing()),
        reason=f"Data Docs web assets are not cached in {web_assets.cache_root()}; "
        "run `python -m gr2.platform.web_assets fetch` (scripts/bootstrap.sh does) with the npm registry reachable",
    ),
]

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
CDNS = ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "bootstrapcdn.com", "unpkg.com", "code.jquery.com", "amazonaws.com")


def rows(dom: str, prefix: str) -> list[tuple[str, str]]:
    """(data-href, row HTML) of each table row bootstrap-table built whose link starts with `prefix`."""
    found = re.findall(r'<tr[^>]*data-href="([^"]+)"[^>]*data-index="\d+"[^>]*>(.*?)</tr>', dom, re.S)
    return [(href, html) for href, html in found if href.startswith(prefix)]


def text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_data_docs_render_offline_in_headless_chromium(spark, lake, tmp_path, monkeypatch):
    good = spark.createDataFrame([(1, "a"), (2, "b")], "item_id int, title string")
    lake.publish_overwrite(spark, good, "silver.items", [qc.unique("item_id"), qc.rows(2)])
    bad = spark.createDataFrame([(1, "a"), (1, "dup")], "item_id int, title string")
    with pytest.raises(QualityGateError):
        lake.publish_overwrite(spark, bad, "silver.items", [qc.unique("item_id")])
    index = qc.build_docs(lake.root)
    site = index.parent

    for page in site.rglob("*.html"):
        html = page.read_text()
        assert not [c for c in CDNS if c in html], f"{page} still loads from a CDN"
    assert web_assets.localize(site)["unresolved"] == [], "every asset URL of the site has a local copy"

    monkeypatch.setattr(browser, "FLAGS", [*browser.FLAGS, OFFLINE])
    with browser.serve(site) as url:
        dom = browser.render(f"{url}/index.html", screenshot=tmp_path / "index.png")
        # The rows exist only when jQuery + bootstrap-table ran: they are built from the page's script data.
        assert 'class="bootstrap-table' in dom, "bootstrap-table did not run"
        runs = rows(dom, "validations/")
        assert len(runs) == 2, "one row per validation run"
        assert all("silver_items" in html and "silver_items_gate" in html for _, html in runs)
        failed = [(href, html) for href, html in runs if "ge-failed-icon" in html]
        passed = [(href, html) for href, html in runs if "ge-success-icon" in html]
        assert len(failed) == 1 and len(passed) == 1, "the refused run is listed as failed, the first as passed"
        assert failed[0][0] > passed[0][0], "the failed run is the later one"
        assert "Showing 1 to 2 of 2 rows" in text(dom) and "Validation Results" in dom
        assert rows(dom, "expectations/silver_items_gate.html"), "the Expectation Suites tab lists the suite"

        page = browser.render(f"{url}/{failed[0][0]}")
        shown = text(page)
        assert 'class="bootstrap-table' in page, "bootstrap-table did not run on the validation page"
        assert "values must be unique" in shown and "Failed" in shown
        assert "2 unexpected values found" in shown

    import matplotlib.image

    img = matplotlib.image.imread(tmp_path / "index.png")
    assert img.shape[0] > 200 and img.shape[1] > 200
    assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 20, "the screenshot shows a rendered page, not a blank"


def test_reports_index_gathers_quality_nightly_and_eval_history(spark, lake, tmp_path, monkeypatch):
    import json

    from gr2.eval import report
    from gr2.pipelines.reports import build_index

    lake.publish_overwrite(spark, spark.createDataFrame([(1, "a")], "item_id int, title string"), "silver.items",
                           [qc.unique("item_id"), qc.rows(1)])
    with pytest.raises(QualityGateError):
        lake.publish_overwrite(spark, spark.createDataFrame([(1, "a"), (1, "b")], "item_id int, title string"),
                               "silver.items", [qc.unique("item_id")])
    # Two eval runs (the history plot needs two) written by the real report writer.
    for n, (run_id, shift) in enumerate((("eval-20260101T000000", 0), ("eval-20260102T000000", 1))):
        positions = [(i + shift) % 5 for i in range(40)]
        run = {"run_id": run_id, "created_at": f"2026-01-0{n + 1}T00:00:00+00:00", "split": "test", "n_slates": 40, "k": 5,
               "rows": [{"model": "incoming order", "metrics": report.metrics_with_ci(positions, n_boot=50)},
                        {"model": "DAPO", "metrics": report.metrics_with_ci([max(0, p - 1 - shift) for p in positions], n_boot=50),
                         "diagnostics": {"valid_rate": 0.25 + 0.75 * shift, "order_copy_rate": 0.0, "mean_displacement": 1.0,
                                         "landing": np.zeros((5, 5)).tolist()}}]}
        report.write_report(lake.root / "reports" / "eval" / run_id, run)
    nightly = lake.root / "reports" / "nightly"
    nightly.mkdir(parents=True)
    (nightly / "2026-01-02.json").write_text(json.dumps({"date": "2026-01-02", "exit_code": 3, "seconds": 12.0, "finished_at": "x",
        "steps": [{"name": "ingest", "status": "ok"}, {"name": "quality", "status": "failed", "error": "QualityGateError: silver.items"}]}))

    index = build_index(lake.root)
    monkeypatch.setattr(browser, "FLAGS", [*browser.FLAGS, OFFLINE])
    with browser.serve(index.parent) as url:
        dom = browser.render(f"{url}/index.html", screenshot=tmp_path / "reports.png")
        shown = text(dom)
        assert "2 quality validations (1 failed)" in shown and "1 nightly runs" in shown and "2 eval runs" in shown
        assert "FAILED" in shown and "silver_items_gate" in shown
        assert "QualityGateError: silver.items" in shown
        assert "<svg" in dom and "<polyline" in dom, "the eval history plot is drawn"
        assert "valid answers" in shown and "25% (invalid: incoming order kept)" in shown and "100%" in shown
        links = re.findall(r'href="(quality/validations/[^"]+)"', dom)
        assert len(links) == 2
        page = browser.render(f"{url}/{links[0]}")  # the newest validation: the refused one
        assert 'class="bootstrap-table' in page and "values must be unique" in text(page)
        report_page = browser.render(f"{url}/eval/eval-20260102T000000/report.html")
        assert "DAPO" in text(report_page)

    import matplotlib.image

    img = matplotlib.image.imread(tmp_path / "reports.png")
    assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 20, "the screenshot shows a rendered page"
