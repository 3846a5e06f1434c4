"""report.html: one self-contained page per run directory, and a page comparing runs.

The page opens with one verdict sentence per method, then the summary table and the figures
(obliviate/report/plots.py, inline SVG): the forget/retain trade-off, the audit heatmap (one
per knowledge measure), what quantization changes, the unlearning loss curves, the forget
truth-ratio distributions against the oracle's (TOFU, Maini et al. 2024), a sortable and
filterable table of the per-item generations, and the run's facts (command, config,
provenance, timings, memory). No network resource, no script library: a few lines of inline
JS sort and filter the item table (`?filter=TEXT&set=SET&sort=COLUMN` in the URL applies on load).

Run directories come from several writers, and their schema grows, so everything is read
defensively: a missing file or field leaves its section out with the reason, never an
invented value. Fields drawn when present: `*_ci` ([lo, hi] 95% intervals next to a metric or
recovery score: error bars and printed intervals), audit rows `{"error": ...}` /
`{"unavailable": ...}` (hatched cells, the reason on hover), planted controls (e.g. `hide_q4`:
their own columns), `unlearn.status == "diverged"`, `unlearn.losses`, and audit.json
`measures` ({NAME: {"models": ..., "verdicts": ...}}: one heatmap per measure).
"""

from __future__ import annotations

import json
import math
import re
from html import escape
from pathlib import Path
from typing import Any

import yaml

from obliviate.data.task import DataError
from obliviate.report import plots
from obliviate.report.results import load_results
from obliviate.report.tables import _fmt, columns

REFERENCE = ("target", "oracle")
SCORE_KEYS = ("recovered_net", "recovered", "recovered_vs_oracle")
EIGHT_BIT = ("rtn8", "bnb_int8")
FOUR_BIT = ("rtn4", "bnb_nf4", "bnb_fp4", "gptq4", "awq4", "rtn4_asym", "rtn4_channel")
KNOWLEDGE = {"acc": "forget accuracy", "rouge": "forget ROUGE-L recall", "ma_el10": "forget MA / EL10"}
MAX_ITEMS = 3000  # rows of the item table; per_item.jsonl keeps them all


# ---------------------------------------------------------------- reading a run directory

def load_run(run_dir: Path, results: dict[str, Any] | None = None, command: str | None = None) -> dict[str, Any]:
    """Everything the page shows, read from `run_dir` (results.json unless `results` is given,
    audit.json, per_item.jsonl, report.md's command line when `command` is not given)."""
    run_dir = Path(run_dir)
    results = results if results is not None else load_results(run_dir)
    audit = None
    if (run_dir / "audit.json").is_file():
        try:
            audit = json.loads((run_dir / "audit.json").read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{run_dir / 'audit.json'}:{e.lineno}: not valid JSON ({e.msg})") from e
    elif results.get("audit"):
        audit = {**results["audit"], "models": {n: e["audit"] for n, e in results["models"].items() if "audit" in e}}
    items = []
    if (run_dir / "per_item.jsonl").is_file():
        for i, line in enumerate((run_dir / "per_item.jsonl").read_text().splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{run_dir / 'per_item.jsonl'}:{i}: not valid JSON ({e.msg})") from e
    if command is None and (run_dir / "report.md").is_file():
        # results.json does not keep the command line; report.md (written by the same run) does
        m = re.search(r"^Command: `(.*)`$", (run_dir / "report.md").read_text(), re.M)
        command = m.group(1) if m else None
    return {"name": run_dir.resolve().name, "dir": run_dir, "results": results, "audit": audit, "items": items,
            "command": command}


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _interval(ci: Any) -> list[float] | None:
    return list(ci) if isinstance(ci, list | tuple) and len(ci) == 2 and all(_finite(c) for c in ci) else None


def _ci(d: dict[str, Any], key: str) -> list[float] | None:
    return _interval(d.get(f"{key}_ci"))


def _metric_ci(entry: dict[str, Any], key: str) -> list[float] | None:
    """A metric's 95% interval: results.json keeps them in `metrics_ci` ({metric: [lo, hi]});
    a `METRIC_ci` entry beside the metric is read too."""
    return _interval((entry.get("metrics_ci") or {}).get(key)) or _ci(entry.get("metrics", {}), key)


def _controls(run: dict[str, Any]) -> set[str]:
    """Planted controls (e.g. hide_q4): unlearned on purpose to hide, audited beside the methods."""
    res, audit = run["results"], run["audit"] or {}
    named = set(((res.get("config") or {}).get("audit") or {}).get("controls") or [])
    named |= set(audit.get("controls") or []) | set((res.get("audit") or {}).get("controls") or [])
    named |= {n for n, e in res["models"].items() if e.get("control")}
    # fallback for runs that do not list them: the planted hiders are named hide_*
    return named | {n for n in res["models"] if n.startswith("hide_")}


def role(run: dict[str, Any], name: str) -> str:
    if name in REFERENCE:
        return name
    return "control" if name in _controls(run) else "method"


def _knowledge_keys(results: dict[str, Any]) -> tuple[str | None, str | None]:
    """The trade-off's axes: the summary table's first forget metric that should fall (↓) and
    first retain (or RWKU neighbour) metric that should stay high (↑)."""
    cols = columns(results)

    def first(words: tuple[str, ...], better: str) -> str | None:
        named = [(k, b) for k, label, b in cols if any(w in f"{k} {label}".lower() for w in words)]
        return next((k for k, b in named if b == better), None)

    return first(("forget",), "↓"), first(("retain", "neighbo"), "↑")


def _label_of(results: dict[str, Any], key: str | None) -> str:
    return next((label for k, label, _ in columns(results) if k == key), key or "")


def _audit_tables(run: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(measure name, table) per knowledge measure; a table has "models" {model: {attack: row}}."""
    audit = run["audit"]
    if not audit:
        return []
    measures = audit.get("measures")
    if isinstance(measures, dict) and measures:
        return [(name, {**audit, **t, "verdicts": t.get("verdicts", audit.get("verdicts", {}))})
                for name, t in measures.items() if isinstance(t, dict) and t.get("models")]
    return [(str(audit.get("knowledge") or "forget knowledge"), audit)] if audit.get("models") else []


def _attacks(table: dict[str, Any]) -> list[str]:
    order = list(table.get("attacks") or [])
    for rows in table["models"].values():
        order += [a for a in rows if a not in order]
    return order


def _row_keys(table: dict[str, Any], names: list[str]) -> list[str]:
    keys: list[str] = []
    for n in names:
        for row in table["models"].get(n, {}).values():
            if isinstance(row, dict):
                keys += [k for k in row if k not in keys]
    return keys


def _score_key(table: dict[str, Any]) -> str | None:
    """The recovery score the heatmap shows: the audit's own choice when it names one (the table
    and the verdict use recovered_net), else the first recovery field the rows carry."""
    keys = _row_keys(table, [n for n in table["models"] if n not in REFERENCE])
    if table.get("score") in keys:
        return table["score"]
    return next((k for k in SCORE_KEYS if k in keys), None) or next(
        (k for k in keys if k.startswith("recovered") and not k.endswith(("_raw", "_ci"))), None)


def _k_key(table: dict[str, Any]) -> str | None:
    """The knowledge value of an attacked model (forget accuracy, or e.g. TDEC's forget_ma)."""
    keys = _row_keys(table, list(table["models"]))
    if "forget_acc" in keys:
        return "forget_acc"
    return next((k for k in keys if k.startswith("forget_") and not k.endswith(("_before", "_ci", "_raw"))), None)


def _na_reason(row: Any) -> str | None:
    if row is None:
        return "not run on this model"
    if isinstance(row, str):
        return row
    for k in ("error", "unavailable"):
        if k in row:
            reason = str(row[k])
            return reason if reason.startswith(k) else f"{k}: {reason}"
    return None


def _value_ci(d: dict[str, Any], key: str) -> str:
    ci = _ci(d, key)
    return f"{key} {d[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _pct(v: float) -> str:
    return f"{v:.0%}" if _finite(v) else "–"


def _cell(row: Any, key: str | None, attack: str, model: str) -> dict[str, Any]:
    reason = _na_reason(row)
    if reason is not None or key is None:
        return {"na": reason or "no score in this row"}
    v = row.get(key, float("nan"))
    v = v if _finite(v) else float("nan")
    ci = _ci(row, key)
    text = _pct(v) + (f"\n{ci[0]:.0%}–{ci[1]:.0%}" if ci else "")
    detail = [_value_ci(row, k) for k in row
              if _finite(row.get(k)) and k.startswith(("recovered", "retained", "forget_", "retain_"))]
    why = "" if _finite(v) else " (undefined: nothing was forgotten, so nothing can be recovered)"
    return {"value": v, "text": text, "title": f"{attack} on {model}: {key} {_pct(v)}{why}; " + ", ".join(detail)}


# ---------------------------------------------------------------- page sections

def _models(run: dict[str, Any]) -> list[str]:
    return list(run["results"]["models"])


def _key(runs: list[dict[str, Any]], run: dict[str, Any], model: str) -> str:
    return model if len(runs) == 1 else f"{run['name']}: {model}"


def _colours(runs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """One colour per model on a run's page; one colour per run on a comparison page."""
    out, i = {}, 0
    for r, run in enumerate(runs):
        for m in _models(run):
            if len(runs) > 1:
                out[run["name"], m] = plots.colour(r)
            else:
                out[run["name"], m] = plots.colour(i)
                i += role(run, m) not in REFERENCE
    return out


def _status(run: dict[str, Any], model: str) -> str:
    return ((run["results"]["models"][model].get("unlearn") or {}).get("status")) or ""


def verdict_sentences(run: dict[str, Any]) -> list[str]:
    """One sentence per method (and planted control): what unlearning did to forget and retain
    knowledge, and what the audit concluded."""
    res = run["results"]
    models = res["models"]
    fk, rk = _knowledge_keys(res)
    verdicts = (run["audit"] or {}).get("verdicts") or (res.get("audit") or {}).get("verdicts") or {}
    names = [n for n in models if n not in REFERENCE] or list(models)
    out = []
    for n in names:
        m = models[n].get("metrics", {})
        t = models.get("target", {}).get("metrics", {})
        parts = []
        for key in (fk, rk):
            if key and key in m:
                before = f"{_fmt(t.get(key))} → " if "target" in models and n != "target" else ""
                parts.append(f"{_label_of(res, key)} {before}{_fmt(m.get(key))}")
        if fk and "oracle" in models and n != "oracle":
            parts.append(f"oracle's {_label_of(res, fk)} {_fmt(models['oracle']['metrics'].get(fk))}")
        u = models[n].get("unlearn") or {}
        status = u.get("status", "")
        if status == "diverged":
            head = f"diverged ({u.get('message') or 'the run stopped'}): not an unlearning result"
        elif n in verdicts:
            head = verdicts[n]
        elif n in (run["audit"] or {}).get("models", {}):
            head = "audited, no verdict recorded (see the heatmap)"
        else:
            head = "not audited"
        tail = f" Unlearning {status}{': ' + u['message'] if u.get('message') else ''}." if status not in (
            "", "done", "diverged") else ""
        tag = " (planted control)" if role(run, n) == "control" else ""
        facts = ", ".join(parts)
        facts = f" {facts[:1].upper()}{facts[1:]}." if facts else ""
        out.append(f"<b>{escape(n)}</b>{tag}: {escape(head)}.{escape(facts)}{escape(tail)}")
    return out


def _summary_table(run: dict[str, Any]) -> str:
    res = run["results"]
    cols = columns(res)
    head = "".join(f"<th>{escape(f'{label} {better}'.strip())}</th>" for _, label, better in cols)
    body = []
    for n, e in res["models"].items():
        m = e.get("metrics", {})
        cells = []
        for k, _, _ in cols:
            ci = _metric_ci(e, k)
            cells.append(f"<td>{escape(_fmt(m.get(k)))}"
                         + (f'<span class="ci"> [{_fmt(ci[0])}, {_fmt(ci[1])}]</span>' if ci else "") + "</td>")
        body.append(f"<tr><th>{escape(n)}</th>{''.join(cells)}</tr>")
    return f'<table class="num"><thead><tr><th>model</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _tradeoff(runs: list[dict[str, Any]]) -> str:
    fk, rk = _knowledge_keys(runs[0]["results"])
    if not (fk and rk):
        return _na("the summary table has no forget metric (↓) and retain metric (↑) to plot against each other")
    colours = _colours(runs)
    points = []
    for run in runs:
        for n, e in run["results"]["models"].items():
            m = e.get("metrics", {})
            points.append({"label": _key(runs, run, n), "x": m.get(fk), "y": m.get(rk), "role": role(run, n),
                           "colour": colours[run["name"], n], "xci": _metric_ci(e, fk), "yci": _metric_ci(e, rk),
                           "note": "diverged" if _status(run, n) == "diverged" else ""})
    if not any(_finite(p["x"]) and _finite(p["y"]) for p in points):
        return _na(f"no model has both {fk} and {rk}")
    res = runs[0]["results"]
    return ("<p>Each model's forget knowledge against its retain knowledge. The target (★) is where "
            "unlearning starts and the oracle (◆), never trained on the forget set, is where it should "
            "end; error bars are 95% intervals where the run has them; hollow markers diverged.</p>"
            + plots.tradeoff(points, f"{_label_of(res, fk)} (lower is better)",
                             f"{_label_of(res, rk)} (higher is better)"))


def _audit(runs: list[dict[str, Any]]) -> str:
    measures: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for run in runs:
        for name, table in _audit_tables(run):
            measures.setdefault(name, []).append((run, table))
    if not measures:
        return _na("this run was not audited (no audit.json)")
    parts = ['<p>Rows: attacks. Method columns: the share of the forgetting the attack undoes (colour and '
             "value; the interval below it where the run has one). Planted controls get their own columns; "
             "the target and oracle columns (controls) show forget knowledge under the attack. Hatched: the "
             "attack could not run; hover a cell for its reason or exact values.</p>"]
    for measure, tables in measures.items():
        attacks: list[str] = []
        cols: list[dict[str, Any]] = []
        cells: dict[tuple[int, int], dict[str, Any]] = {}
        pending = []
        for run, table in tables:
            attacks += [a for a in _attacks(table) if a not in attacks]
            score, k = _score_key(table), _k_key(table)
            names = list(table["models"])
            ordered = ([n for n in names if role(run, n) == "method"] + [n for n in names if role(run, n) == "control"]
                       + [n for n in REFERENCE if n in names])
            for n in ordered:
                r = role(run, n)
                group = "reference" if r in REFERENCE else r
                label = _key(runs, run, n) + (" (K)" if r in REFERENCE else " (control)" if r == "control" else "")
                cols.append({"label": label, "group": (run["name"], group)})
                pending.append((len(cols) - 1, table["models"][n], k if r in REFERENCE else score, n))
        for c, rows, key, n in pending:
            for r, a in enumerate(attacks):
                cells[r, c] = _cell(rows.get(a), key, a, n)
        score_names = sorted({_score_key(t) or "?" for _, t in tables})
        label = tables[0][1].get("label") or KNOWLEDGE.get(measure, measure)
        notes = "".join(f'<p class="na">{escape(run["name"] + ": " if len(runs) > 1 else "")}'
                        f'{escape(str(t["oracle_stand_in"]))}</p>' for run, t in tables if t.get("oracle_stand_in"))
        title = f"K = {label}; methods: {', '.join(score_names)}"
        parts.append(f"<h3>{escape(label)}</h3>{notes}" + plots.heatmap(attacks, cols, cells, title))
    return "".join(parts)


def _quantization(runs: list[dict[str, Any]]) -> str:
    labels, fp, q8, q4, changed = [], [], [], [], []
    used: dict[int, set[str]] = {8: set(), 4: set()}  # which attack stands for 8 and 4 bits, per run
    for run in runs:
        tables = _audit_tables(run)
        if not tables:
            continue
        table = tables[0][1]
        k = _k_key(table)
        attacks = _attacks(table)
        a8 = next((a for a in EIGHT_BIT if a in attacks), None)
        a4 = next((a for a in FOUR_BIT if a in attacks), None)
        if not k or not (a8 or a4):
            continue
        used[8] |= {a8} - {None}
        used[4] |= {a4} - {None}
        diag = table.get("diagnostics") or (run["results"].get("audit") or {}).get("diagnostics") or {}
        base = table.get("baseline") or {}
        for n, rows in table["models"].items():
            before = (base.get(n) or {}).get(k)
            if not _finite(before):
                before = next((row.get(f"{k}_before") for row in rows.values()
                               if isinstance(row, dict) and _finite(row.get(f"{k}_before"))), None)
            if not _finite(before):
                before = run["results"]["models"].get(n, {}).get("metrics", {}).get(k)
            labels.append(_key(runs, run, n))
            fp.append(before if _finite(before) else float("nan"))
            for a, out in ((a8, q8), (a4, q4)):
                row = rows.get(a) if a else None
                v = row.get(k) if isinstance(row, dict) and _na_reason(row) is None else None
                out.append(v if _finite(v) else float("nan"))
            c = (diag.get(n) or {}).get("changed_int4_codes")
            changed.append(c if _finite(c) else float("nan"))
    if not labels:
        return _na("the audit ran no 8-bit or 4-bit quantization attack")
    series = [("fp32", fp), (f"8-bit ({'/'.join(sorted(used[8])) or 'not run'})", q8),
              (f"4-bit ({'/'.join(sorted(used[4])) or 'not run'})", q4)]
    side = ("changed int4 codes vs target", changed) if any(_finite(c) for c in changed) else None
    return ("<p>Forget knowledge of every model unquantized and after weight-only 8-bit and 4-bit "
            "quantization (bars rising after quantization: forgetting undone), and the share of the "
            "model's int4 codes that differ from the target's (an update that moves no weight across a "
            "quantization boundary is undone by quantizing).</p>"
            + plots.grouped_bars(labels, series, "forget knowledge", side))


def _losses(runs: list[dict[str, Any]]) -> str:
    colours = _colours(runs)
    curves, without = [], []
    styles = ["-", "--", ":", "-."]
    for run in runs:
        i = 0
        for n, e in run["results"]["models"].items():
            u = e.get("unlearn")
            if not u:
                continue
            losses = [x for x in (u.get("losses") or []) if _finite(x)]
            if not losses:
                without.append(_key(runs, run, n))
                continue
            curves.append({"label": _key(runs, run, n), "losses": losses, "colour": colours[run["name"], n],
                           "status": u.get("status", ""), "style": styles[i % len(styles)] if len(runs) > 1 else "-"})
            i += 1
    note = (f"<p class=\"na\">No per-step losses recorded for {escape(', '.join(without))} "
            "(results.json keeps only their final loss).</p>") if without else ""
    if not curves:
        return note or _na("no unlearning run in this directory")
    return ("<p>The unlearning loss at every optimizer step; the square marks where the run stopped, "
            "labelled with its status.</p>" + plots.loss_curves(curves) + note)


def _truth_ratios(runs: list[dict[str, Any]]) -> str:
    panels = []
    for run in runs:
        models = run["results"]["models"]
        oracle = ((models.get("oracle") or {}).get("per_item") or {}).get("forget", {}).get("truth_ratio")
        if not oracle:
            continue
        for n, e in models.items():
            tr = (e.get("per_item") or {}).get("forget", {}).get("truth_ratio")
            if n != "oracle" and tr:
                panels.append({"label": _key(runs, run, n), "model": tr, "oracle": oracle,
                               "forget_quality": e.get("metrics", {}).get("forget_quality")})
    if not panels:
        return _na("no per-item forget truth ratios for a model and an oracle in this run")
    return ("<p>The distribution of per-item forget truth ratios R (TOFU, Maini et al. 2024) of each model "
            "against the oracle's. Forget quality is the p-value of the two-sample KS test between these "
            "two samples: curves that overlap mean the model is indistinguishable from never having "
            "seen the forget set.</p>" + plots.truth_ratio_ecdfs(panels))


def _score_of(row: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    return next((float(row[k]) for k in keys if _finite(row.get(k))), None)


def _items(run: dict[str, Any]) -> str:
    rows = run["items"]
    if not rows:
        return _na("no per_item.jsonl in this run directory")
    models = list(dict.fromkeys(r.get("model", "?") for r in rows))
    pivot: dict[tuple[str, Any], dict[str, Any]] = {}
    position: dict[tuple[str, str], int] = {}
    for r in rows:
        s, m = str(r.get("set", "")), r.get("model", "?")
        i = r.get("index")
        if i is None:  # rows without an index pair up by their order within (model, set)
            i = position[m, s] = position.get((m, s), -1) + 1
        item = pivot.setdefault((s, i), {"set": s, "index": i, "question": "", "answer": "", "models": {}})
        item["question"] = item["question"] or str(r.get("question") or r.get("prompt") or r.get("text") or "")
        item["answer"] = item["answer"] or str(r.get("answer") or "")
        item["models"][m] = r
    items = list(pivot.values())
    shown = items[:MAX_ITEMS]
    # correctness as the audit measures knowledge: ROUGE-L recall for sentence answers (TOFU),
    # where containing the exact answer says little
    knowledge = (run["audit"] or {}).get("knowledge") or ((run["results"].get("config") or {}).get("eval") or {}).get(
        "knowledge")
    keys = ("rouge", "acc", "correct") if knowledge == "rouge" else ("acc", "correct", "rouge")
    sets = list(dict.fromkeys(it["set"] for it in items))
    came_back = _came_back(run)
    head = "".join(f"<th>{escape(h)}</th>" for h in ("set", "#", "question", "answer", *models))
    body = []
    for it in shown:
        cells = [f"<td>{escape(it['set'])}</td>", f'<td data-v="{it["index"]}">{it["index"]}</td>',
                 f"<td>{escape(_clip(it['question']))}</td>", f"<td>{escape(_clip(it['answer']))}</td>"]
        for m in models:
            r = it["models"].get(m)
            if r is None:
                cells.append('<td data-v="-1" class="na">–</td>')
                continue
            score = _score_of(r, keys)
            cls = "" if score is None else ' class="ok"' if score >= 0.5 else ' class="no"'
            mark = "" if score is None else ("✓ " if score >= 0.5 else "✗ ") if score in (0.0, 1.0) else f"{score:.2f} "
            gen = str(r.get("generation", "")) if "generation" in r else "(no generation)"
            back = ([a for a, k in came_back.get((m, it["index"]), []) if k >= 0.5 and (score is None or score < 0.5)]
                    if it["set"] == "forget" else [])
            note = f'<br /><small class="back">back under: {escape(", ".join(back))}</small>' if back else ""
            cells.append(f'<td data-v="{-1 if score is None else score}"{cls}>{escape(mark + _clip(gen))}{note}</td>')
        body.append(f'<tr data-set="{escape(it["set"])}">{"".join(cells)}</tr>')
    more = (f'<p class="na">The first {MAX_ITEMS} of {len(items)} items; per_item.jsonl has them all.</p>'
            if len(items) > MAX_ITEMS else "")
    options = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in sets)
    return (f"<p>Every probe item with each model's greedy generation (✓/✗: correct; a number: ROUGE-L recall, "
            "highlighted from 0.5); under a forget item a model no longer knows, \"back under\" names the attacks "
            "that bring it back (K ≥ 0.5 under the attack). "
            "Click a column header to sort (by correctness for a model); type to filter.</p>"
            f'<p><input id="item-filter" type="search" placeholder="filter items" /> '
            f'<select id="item-set"><option value="">all sets</option>{options}</select> '
            f'<span id="item-count">{len(shown)} items</span></p>{more}'
            f'<div class="scroll"><table id="item-table" class="items"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _came_back(run: dict[str, Any]) -> dict[tuple[str, Any], list[tuple[str, float]]]:
    """{(model, forget item index): [(attack, K of the item under the attack)]} from the audit's
    per-item rows (`forget_per_item`), so the item table can say which forgotten items an attack
    brings back."""
    out: dict[tuple[str, Any], list[tuple[str, float]]] = {}
    for model, rows in ((run["audit"] or {}).get("models") or {}).items():
        for attack, row in (rows or {}).items():
            per = row.get("forget_per_item") if isinstance(row, dict) else None
            if not per:
                continue
            for i, k in zip(per.get("index", []), per.get("k", []), strict=False):
                if _finite(k):
                    out.setdefault((model, i), []).append((attack, float(k)))
    return out


def _clip(text: str, n: int = 400) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _facts(runs: list[dict[str, Any]]) -> str:
    parts = []
    for run in runs:
        res = run["results"]
        rows = [("run directory", str(run["dir"])), ("command", run["command"] or "not recorded"),
                ("benchmark", res.get("benchmark")), ("status", res.get("status")), ("seed", res.get("seed"))]
        audit = run["audit"] or {}
        if _finite(audit.get("seconds")):
            rows.append(("audit wall time", f"{audit['seconds']:.1f} s"))
        rows += [(k, v) for k, v in (res.get("provenance") or {}).items()]
        facts = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
        runs_rows = []
        for n, e in res["models"].items():
            u = e.get("unlearn")
            if not u:
                continue
            secs, tokens = u.get("seconds"), u.get("tokens")
            tps = tokens / secs if _finite(secs) and secs and _finite(tokens) else float("nan")
            mem = u.get("peak_memory_mb")
            mem_cell = "–" if not _finite(mem) else f"{mem:.0f} MiB ({u.get('peak_memory_device', 'cpu')})"
            cells = [n, u.get("status", ""), u.get("steps", ""), u.get("lr", ""), _fmt(secs), _fmt(tps), mem_cell,
                     u.get("message", "")]
            runs_rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        timing = ("<table><thead><tr><th>method</th><th>status</th><th>steps</th><th>lr</th><th>seconds</th>"
                  "<th>tokens/s</th><th>peak memory</th><th>message</th></tr></thead><tbody>"
                  + "".join(runs_rows) + "</tbody></table>") if runs_rows else ""
        config = yaml.safe_dump(res.get("config") or {}, sort_keys=False)
        head = f"<h3>{escape(run['name'])}</h3>" if len(runs) > 1 else ""
        parts.append(f"{head}<table class=\"facts\">{facts}</table>{timing}"
                     f"<details><summary>resolved configuration</summary><pre>{escape(config)}</pre></details>")
    return "".join(parts)


def _na(reason: str) -> str:
    return f'<p class="na">Not shown: {escape(reason)}.</p>'


# ---------------------------------------------------------------- comparison-only sections

def _metric_comparison(runs: list[dict[str, Any]]) -> str:
    """Every scalar metric of every model side by side, with each run's difference to the first."""
    models = list(dict.fromkeys(m for run in runs for m in _models(run)))
    head = "".join(f"<th>{escape(run['name'])}</th>" for run in runs)
    head += "".join(f"<th>Δ {escape(run['name'])} − {escape(runs[0]['name'])}</th>" for run in runs[1:])
    body = []
    for m in models:
        metrics = list(dict.fromkeys(k for run in runs for k, v in
                                     run["results"]["models"].get(m, {}).get("metrics", {}).items()
                                     if isinstance(v, int | float) and not isinstance(v, bool)))
        for k in metrics:
            vals = [run["results"]["models"].get(m, {}).get("metrics", {}).get(k) for run in runs]
            cells = [f"<td>{escape(_fmt(v)) if _finite(v) else '–'}</td>" for v in vals]
            for v in vals[1:]:
                d = v - vals[0] if _finite(v) and _finite(vals[0]) else None
                cells.append(f"<td>{'–' if d is None else f'{d:+.3g}'}</td>")
            body.append(f'<tr><th>{escape(m)}</th><td class="k">{escape(k)}</td>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="num"><thead><tr><th>model</th><th>metric</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _verdict_comparison(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        link = Path(run["dir"]).resolve() / "report.html"
        rows.append(f"<h3>{escape(run['name'])}</h3><p>{escape(str(run['results'].get('benchmark', '')))}, "
                    f"{escape(str(run['command'] or 'command not recorded'))} "
                    f'(<a href="{escape(link.as_uri())}">its report</a>)</p><ul>'
                    + "".join(f"<li>{s}</li>" for s in verdict_sentences(run)) + "</ul>")
    return "".join(rows)


# ---------------------------------------------------------------- the page

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1250px;
padding:0 24px 48px;color:#222;line-height:1.45}
h1{font-size:1.5em;margin:20px 0 4px}h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:34px}
nav a{margin-right:12px}table{border-collapse:collapse;margin:8px 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}thead th{background:#f5f5f5}
table.num td{text-align:right}table.num td.k{text-align:left}.ci{color:#777;font-size:.85em}.na{color:#777;font-style:italic}
svg.plot{max-width:100%;height:auto;display:block;margin:6px 0}
ul.verdicts li{margin:3px 0}.scroll{max-height:640px;overflow:auto;border:1px solid #eee}
table.items th{cursor:pointer;position:sticky;top:0;background:#f5f5f5}
table.items th[data-order=asc]::after{content:" ▲"}table.items th[data-order=desc]::after{content:" ▼"}
table.items td.ok{background:#fff4d6}table.items td.no{color:#666}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:.85em}table.facts th{background:#fafafa}
"""

# Sorting and filtering of the item table: plain DOM, no library; the URL's ?filter=, ?set= and
# ?sort= apply on load, so a link can point at "what npo still says about person X".
SCRIPT = """//<![CDATA[
(function () {
  var table = document.getElementById("item-table");
  if (!table) return;
  var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
  var input = document.getElementById("item-filter"), set = document.getElementById("item-set");
  var count = document.getElementById("item-count"), heads = table.tHead.rows[0].cells;
  function apply() {
    var q = input.value.toLowerCase(), s = set.value, shown = 0;
    rows.forEach(function (r) {
      var ok = (!s || r.getAttribute("data-set") === s) && (!q || r.textContent.toLowerCase().indexOf(q) >= 0);
      r.hidden = !ok;
      if (ok) shown++;
    });
    count.textContent = shown + " of " + rows.length + " items shown";
    table.setAttribute("data-shown", shown);
  }
  function key(r, col) {
    var c = r.cells[col], v = c.getAttribute("data-v");
    return v !== null ? parseFloat(v) : c.textContent.toLowerCase();
  }
  function sortBy(col, order) {
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("data-order");
    heads[col].setAttribute("data-order", order);
    var sign = order === "asc" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = key(a, col), y = key(b, col);
      return (x < y ? -1 : x > y ? 1 : 0) * sign;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      sortBy(col, th.getAttribute("data-order") === "asc" ? "desc" : "asc");
    });
  });
  input.addEventListener("input", apply);
  set.addEventListener("change", apply);
  var p = new URLSearchParams(location.search);
  if (p.get("filter")) input.value = p.get("filter");
  if (p.get("set")) set.value = p.get("set");
  if (p.get("sort")) {
    for (var i = 0; i < heads.length; i++)
      if (heads[i].textContent.trim() === p.get("sort")) sortBy(i, p.get("order") || "asc");
  }
  apply();
})();
//]]>"""


def _section(anchor: str, title: str, render, *args: Any) -> tuple[str, str, str]:
    """One section; a section that fails to render says so and the rest of the page still renders
    (run directories from other writers may hold shapes this code has not seen)."""
    try:
        body = render(*args)
    except Exception as e:  # noqa: BLE001 — reported in the page, not swallowed
        body = _na(f"this section could not be rendered ({type(e).__name__}: {e})")
    return anchor, title, body


def render(runs: list[dict[str, Any]]) -> str:
    """The page for one run, or the comparison page for several."""
    compare = len(runs) > 1
    if compare:
        title = "obliviate — comparison of " + ", ".join(run["name"] for run in runs)
        sections = [_section("verdicts", "Verdicts", _verdict_comparison, runs),
                    _section("metrics", "Every metric side by side", _metric_comparison, runs)]
    else:
        run = runs[0]
        title = f"obliviate run — {run['results'].get('benchmark', '')} ({run['name']})"
        sections = [_section("verdicts", "Verdicts",
                             lambda: '<ul class="verdicts">' + "".join(
                                 f"<li>{s}</li>" for s in verdict_sentences(run)) + "</ul>"),
                    _section("table", "Summary", _summary_table, run)]
    sections += [_section("tradeoff", "Trade-off: forget vs retain", _tradeoff, runs),
                 _section("audit", "Audit: does the knowledge come back?", _audit, runs),
                 _section("quantization", "What quantization changes", _quantization, runs),
                 _section("losses", "Loss curves", _losses, runs),
                 _section("truth-ratio", "Truth-ratio distributions", _truth_ratios, runs)]
    if not compare:
        sections.append(_section("items", "Items", _items, runs[0]))
    sections.append(_section("facts", "Run facts", _facts, runs))
    nav = " ".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in sections)
    content = "".join(f'<section id="{a}"><h2>{escape(t)}</h2>{b}</section>' for a, t, b in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8" />'
            f'<meta name="viewport" content="width=device-width, initial-scale=1" />'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><nav>{nav}</nav>{content}<script>{SCRIPT}</script></body></html>\n")


def write_html_report(out: Path, results: dict[str, Any] | None = None, command: str | None = None) -> Path:
    """Write `out/report.html` for the run directory `out` (results.json unless `results` is given)."""
    out = Path(out)
    path = out / "report.html"
    path.write_text(render([load_run(out, results, command)]))
    return path


def write_comparison(run_dirs: list[Path], out: Path) -> Path:
    """Write `out/report.html` comparing the runs (same plots, one colour per run)."""
    runs = [load_run(d) for d in run_dirs]
    seen: dict[str, int] = {}
    for run in runs:  # two runs with the same directory name still get distinct labels
        seen[run["name"]] = seen.get(run["name"], 0) + 1
        if seen[run["name"]] > 1:
            run["name"] = f"{run['name']}#{seen[run['name']]}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(render(runs))
    return path
