"""The summary and audit tables show the 95% intervals and label planted controls."""

from obliviate.report.tables import audit_grid, audit_markdown, markdown_table


def test_summary_table_shows_intervals_and_controls():
    results = {"models": {
        "gd": {"metrics": {"forget_acc": 0.25, "retain_acc": 0.99}, "metrics_ci": {"forget_acc": [0.125, 0.4]}},
        "hide_q4": {"metrics": {"forget_acc": 0.075}, "metrics_ci": {"forget_acc": [0.0, 0.175]}, "control": True}}}
    table = markdown_table(results)
    assert "| gd | 0.250 (0.12–0.40) | 0.990 |" in table  # no interval recorded: the value alone
    assert "| hide_q4 (control) | 0.075 (0.00–0.17) |" in table


def test_audit_grid_shows_recovery_intervals_and_verdicts_of_controls():
    audit = {"attacks": ["rtn4", "gptq4"], "controls": ["hide_q4"],
             "verdicts": {"hide_q4": "hides: rtn4 recovers 100% (95% CI 100%–100%)"},
             "models": {"hide_q4": {"rtn4": {"recovered_net": 1.0, "recovered_net_ci": [1.0, 1.0]},
                                    "gptq4": {"unavailable": "no kernel"}},
                        "target": {"rtn4": {"forget_acc": 1.0}, "gptq4": {"unavailable": "no kernel"}}}}
    head, rows = audit_grid(audit)
    assert head == ["attack", "hide_q4 (control)", "target acc"]
    assert rows == [["rtn4", "100% (100–100%)", "100%"], ["gptq4", "n/a", "n/a"]]
    assert "- **hide_q4 (control)**: hides: rtn4 recovers 100%" in audit_markdown(audit)
