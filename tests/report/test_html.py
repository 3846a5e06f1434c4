"""report.html and `obliviate report`: well-formed, self-contained, one SVG per plot, every
method and attack named, optional fields drawn, missing pieces explained, runs compared."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from report_run_dir import ATTACKS, MODELS
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.report import plots
from obliviate.report.html import write_html_report

runner = CliRunner()
VOID = {"meta", "input", "br", "img", "hr", "link"}


class _Balance(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def _parse(html: str) -> ET.Element:
    p = _Balance()
    p.feed(html)
    p.close()
    assert p.stack == [], p.stack
    return ET.fromstring(html.split("\n", 1)[1])  # XML-well-formed too (after the doctype)


def _section(html: str, anchor: str) -> str:
    return re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S).group(1)


def test_report_is_well_formed_self_contained_and_names_everything(run_dir):
    html = write_html_report(run_dir).read_text()
    root = _parse(html)
    assert root.tag == "html"
    assert "http://" not in html and "https://" not in html  # no resource (nor namespace URL) at all
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)
    # one <svg> per plot: trade-off, 2 audit measures, quantization, losses, truth ratios
    assert html.count("<svg") == 6
    for anchor, n in (("tradeoff", 1), ("audit", 2), ("quantization", 1), ("losses", 1), ("truth-ratio", 1)):
        assert _section(html, anchor).count("<svg") == n, anchor
    audit = _section(html, "audit")
    for name in [*ATTACKS, "ga", "npo", "hide_q4 (control)", "target (K)", "oracle (K)"]:
        assert f">{name}<" in audit, name  # SVG text stays text (svg.fonttype none)
    assert "could not be rendered" not in html and "Not shown" not in html
    assert "<h3>forget accuracy</h3>" in audit and "<h3>forget ROUGE-L recall</h3>" in audit  # measure labels
    assert "no oracle model: chance K = 0.25 stands in" in audit
    # one verdict sentence per method and planted control, with the before -> after numbers
    verdicts = _section(html, "verdicts")
    assert "<b>ga</b>: hides: rtt recovers 60%. Forget acc 1.000 → 0.300" in verdicts
    assert "<b>hide_q4</b> (planted control): hides: rtn4 recovers 80%" in verdicts
    assert "<b>npo</b>: diverged (retain loss 9.1 &gt; 3 x its start at step 5): not an unlearning result" in verdicts


def test_na_cells_are_hatched_with_the_reason_on_hover(run_dir):
    audit = _section(write_html_report(run_dir).read_text(), "audit")
    titles = re.findall(r"<title>(.*?)</title>", audit)
    assert any("bnb_nf4 on ga: n/a — unavailable: bitsandbytes nf4 needs in-features divisible by 64" in t
               for t in titles)
    assert any("gptq4 on npo: n/a — error: RuntimeError: Hessian is not positive definite" in t for t in titles)
    assert "<pattern" in audit  # matplotlib's hatch
    # valued cells: the score, its interval printed in the cell and the exact values on hover
    assert any(t.startswith("rtt on ga: recovered_net 60%") and "recovered_net_ci" not in t for t in titles)
    assert ">60%<" in audit and ">40%–70%<" in audit
    # the interval of a NaN score is not invented: the target's own column shows forget_acc
    assert any(t.startswith("rtn4 on target: forget_acc 100%") for t in titles)


def test_intervals_become_error_bars_and_table_intervals(run_dir):
    html = write_html_report(run_dir).read_text()
    assert '<span class="ci"> [0.200, 0.400]</span>' in _section(html, "table")  # ga's forget_acc_ci
    point = {"label": "ga", "x": 0.3, "y": 0.9, "role": "method", "colour": "#1f77b4"}
    bare = plots.tradeoff([point], "forget acc", "retain acc")
    with_ci = plots.tradeoff([{**point, "xci": [0.2, 0.4], "yci": [0.85, 0.95]}], "forget acc", "retain acc")
    assert with_ci.count("<path") >= bare.count("<path") + 2  # the two error bars


def test_diverged_run_and_loss_curves(run_dir):
    html = write_html_report(run_dir).read_text()
    assert ">npo (diverged)<" in _section(html, "tradeoff")
    losses = _section(html, "losses")
    assert ">diverged<" in losses and ">done<" in losses  # the stopping point's status


def test_one_heatmap_without_measures_and_missing_pieces_say_why(make_run_dir):
    html = write_html_report(make_run_dir("single", measures=False)).read_text()
    assert _section(html, "audit").count("<svg") == 1 and "<h3>forget accuracy</h3>" in html
    bare = write_html_report(make_run_dir("bare", audit=False, items=False, losses=False)).read_text()
    _parse(bare)
    assert "Not shown: this run was not audited (no audit.json)" in bare
    assert "Not shown: no per_item.jsonl in this run directory" in bare
    assert "No per-step losses recorded for ga, npo, hide_q4" in bare
    assert "<b>ga</b>: not audited." in bare
    assert "could not be rendered" not in bare


def test_item_table_pivots_models_and_marks_correctness(run_dir):
    items = _section(write_html_report(run_dir).read_text(), "items")
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", items).group(1)
    assert re.findall(r"<th>(.*?)</th>", head) == ["set", "#", "question", "answer", *MODELS]
    first = re.search(r'<tr data-set="forget">(.*?)</tr>', items).group(1)
    assert "Where was Ana Vel born?" in first and '<td data-v="1.0" class="ok">✓ Ana Vel was born in Oskar.' in first
    assert '<td data-v="0.0" class="no">✗ I am not sure.</td>' in first  # the oracle
    assert items.count("<tr data-set=") == 4


def test_cli_report_rerenders_and_compares(make_run_dir, tmp_path):
    a = make_run_dir("run_a")
    b = make_run_dir("run_b", shift=0.1)
    res = runner.invoke(app, ["report", str(a)])
    assert res.exit_code == 0, res.output
    assert "Command: " not in (a / "report.html").read_text() and "obliviate demo --quick" in (a / "report.html").read_text()
    res = runner.invoke(app, ["report", str(a), str(b), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "cmp" / "report.html").read_text()
    _parse(html)
    assert "http://" not in html and "https://" not in html
    assert html.count("<svg") == 6  # the same plots; the audit heatmap has both runs' columns
    assert ">run_a: ga<" in html and ">run_b: ga<" in html
    metrics = _section(html, "metrics")
    assert "<th>Δ run_b − run_a</th>" in metrics
    row = re.search(r'<tr><th>ga</th><td class="k">forget_acc</td>(.*?)</tr>', metrics).group(1)
    assert re.findall(r"<td>(.*?)</td>", row) == ["0.300", "0.400", "+0.1"]
    # several runs without --out: one-line error, exit 2
    res = runner.invoke(app, ["report", str(a), str(b)])
    assert res.exit_code == 2 and "needs --out" in res.output


def test_cli_report_bad_run_dir_is_one_line(tmp_path):
    (tmp_path / "results.json").write_text("{\n  bad")
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "results.json:2: not valid JSON" in res.output and "Traceback" not in res.output


def test_other_audit_shapes_pick_their_own_scores(make_run_dir):
    """TDEC's audit: MA instead of accuracy, `recovered_ma`, no verdicts; rows given as strings."""
    import json

    run = make_run_dir("tdec", measures=False)
    doc = json.loads((run / "audit.json").read_text())
    doc["models"] = {m: {"rtn4": {"forget_ma": 0.5, "recovered_ma": 0.25}, "rtt": "unavailable: text only"}
                     for m in doc["models"]}
    doc["knowledge"] = "ma_el10"
    del doc["verdicts"]
    (run / "audit.json").write_text(json.dumps(doc))
    results = json.loads((run / "results.json").read_text())
    results["audit"].pop("verdicts")
    (run / "results.json").write_text(json.dumps(results))
    html = write_html_report(run).read_text()
    audit = _section(html, "audit")
    assert "<h3>forget MA / EL10</h3>" in audit and "methods: recovered_ma" in audit
    assert ">target (K)<" in audit and ">25%<" in audit and ">50%<" in audit
    assert "rtt on ga: n/a — unavailable: text only" in audit
    assert "<b>ga</b>: audited, no verdict recorded (see the heatmap)." in html
    assert "could not be rendered" not in html


def test_items_use_rouge_when_the_audit_measures_knowledge_by_rouge(make_run_dir):
    """TOFU-style runs: sentence answers are judged by ROUGE-L recall, as the audit's K."""
    import json

    run = make_run_dir("tofu_like", measures=False)
    doc = json.loads((run / "audit.json").read_text())
    (run / "audit.json").write_text(json.dumps({**doc, "knowledge": "rouge"}))
    items = _section(write_html_report(run).read_text(), "items")
    assert '<td data-v="0.8" class="ok">0.80 Ana Vel was born in Oskar.' in items
    assert '<td data-v="0.1" class="no">0.10 I am not sure.</td>' in items and "✓" not in items.split("</p>", 1)[1]
