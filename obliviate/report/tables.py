"""The summary table: rich in the terminal, Markdown in report.md."""

from __future__ import annotations

import math
from typing import Any

SUMMARY_METRICS = [
    ("forget_acc", "forget acc", "↓"),
    ("retain_acc", "retain acc", "↑"),
    ("forget_prob", "forget prob", "↓"),
    ("forget_rouge", "forget ROUGE", "↓"),
    ("forget_truth_ratio", "forget TR", ""),
    ("forget_quality", "forget quality", "↑"),
    ("model_utility", "model utility", "↑"),
    ("privleak", "privleak", "→0"),
    ("mia_min_k_auc", "MinK AUC", "→oracle"),
]


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e-2 and x != 0 else f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


def columns(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric key, label, better) of the summary table: a benchmark with its own metrics lists
    them in results["columns"]; the TOFU-style suite is the default."""
    return [tuple(c) for c in results.get("columns") or SUMMARY_METRICS]


def _ci(ci: Any, percent: bool = False) -> str:
    """" (lo–hi)" of a 95% interval, "" when there is none (or it is not finite)."""
    if not ci or any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in ci):
        return ""
    return f" ({ci[0]:.0%}–{ci[1]:.0%})".replace("%–", "–") if percent else f" ({ci[0]:.2f}–{ci[1]:.2f})"


def model_label(name: str, entry: dict[str, Any] | None = None, controls: list[str] | None = None) -> str:
    """A planted positive control (e.g. hide_q4) is labelled as such wherever models are listed."""
    is_control = (entry or {}).get("control") or name in (controls or [])
    return f"{name} (control)" if is_control else name


def rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per model; a multi-seed run (`--seeds`) shows mean ± std over the seeds; a metric
    aggregated over items shows its 95% bootstrap interval; a metric a model records as not
    measured (`not_measured`) reads "n/a"."""
    from obliviate.seeds import format_mean_std

    def cell(entry: dict[str, Any], k: str) -> str:
        if k in entry.get("not_measured", {}):
            return "n/a"
        if "metrics_std" in entry and isinstance(entry["metrics"].get(k), float):
            return format_mean_std(entry["metrics"][k], entry["metrics_std"].get(k))
        return _fmt(entry["metrics"].get(k)) + _ci(entry.get("metrics_ci", {}).get(k))

    return [[model_label(name, entry)] + [cell(entry, k) for k, _, _ in columns(results)]
            for name, entry in results["models"].items()]


def not_measured_notes(results: dict[str, Any]) -> list[str]:
    """One line per (table metric, reason) of the "n/a" cells, naming the models."""
    labels = {k: label for k, label, _ in columns(results)}
    found: dict[tuple[str, str], list[str]] = {}
    for name, entry in results["models"].items():
        for key, reason in entry.get("not_measured", {}).items():
            if key in labels:
                found.setdefault((labels[key], reason), []).append(name)
    return [f"n/a: {label} of {', '.join(names)}: {reason}" for (label, reason), names in found.items()]


def markdown_table(results: dict[str, Any]) -> str:
    head = ["model"] + [f"{label} {better}".strip() for _, label, better in columns(results)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    notes = not_measured_notes(results)
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))


def print_table(results: dict[str, Any], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)
    table = Table(title=f"{results.get('benchmark', '')} — seed {results.get('seed', '')}")
    table.add_column("model", style="bold")
    for _, label, better in columns(results):
        table.add_column(f"{label} {better}".strip(), justify="right", overflow="fold")
    for r in rows(results):
        table.add_row(*r)
    console.print(table)
    for note in not_measured_notes(results):
        console.print(note, highlight=False)


def _pct(row: dict[str, Any] | None, key: str, ci: bool = False) -> str:
    from obliviate.audit import ERROR, MIN_CI_ITEMS

    if row and str(row.get("unavailable", "")).startswith(ERROR):
        return "error"  # the attack raised: audit.json has the message
    if not row or "unavailable" in row:
        return "n/a"
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    n = row.get("n_probed")
    if ci and n is not None and n < MIN_CI_ITEMS:  # too few items for an interval: say how few
        return f"{v:.0%} (n={n})"
    return f"{v:.0%}" + (_ci(row.get(f"{key}_ci"), percent=True) if ci else "")


def audit_grid(audit: dict[str, Any], key: str = "recovered_net") -> tuple[list[str], list[list[str]]]:
    """One row per attack. Method columns (planted controls such as hide_q4 among them, labelled)
    show the recovery score `key` and its 95% interval; the target and oracle columns (controls)
    show their forget accuracy under the attack."""
    methods = [n for n in audit["models"] if n not in ("target", "oracle")]
    controls = [n for n in ("target", "oracle") if n in audit["models"]]
    k = audit.get("knowledge")
    measure = "ROUGE" if k == "rouge" else "acc" if k in (None, "acc") else "K"
    head = ["attack", *(model_label(m, controls=audit.get("controls")) for m in methods),
            *(f"{c} {measure}" for c in controls)]
    rows = []
    for attack in audit["attacks"]:
        cells = [_pct(audit["models"][m].get(attack), key, ci=True) for m in methods]
        cells += [_pct(audit["models"][c].get(attack), "forget_acc") for c in controls]
        rows.append([attack, *cells])
    return head, rows


def audit_markdown(audit: dict[str, Any]) -> str:
    head, rows = audit_grid(audit)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", *(f"- **{model_label(m, controls=audit.get('controls'))}**: {v}"
                    for m, v in audit.get("verdicts", {}).items())]
    lines += [f"- {e}" for e in _errors(audit)]
    return "\n".join(lines)


def _errors(audit: dict[str, Any]) -> list[str]:
    from obliviate.audit import attack_errors

    return [f"attack failed: {e}" for e in attack_errors(audit["models"])]


def print_audit(audit: dict[str, Any], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)
    head, rows = audit_grid(audit)
    k = audit.get("knowledge")
    measure = ("forget ROUGE-L recall" if k == "rouge" else "forget accuracy" if k in (None, "acc")
               else f"forget {audit.get('knowledge_label', k)}")
    table = Table(title="audit: share of the forgetting each attack undoes, beyond what it gives the oracle; "
                        f"controls: {measure} under attack")
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    for m, v in audit.get("verdicts", {}).items():
        console.print(f"  [bold]{model_label(m, controls=audit.get('controls'))}[/]: {v}", highlight=False)
    for e in _errors(audit):
        console.print(f"  [red]{e}[/]", highlight=False, soft_wrap=True)
