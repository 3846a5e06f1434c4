"""Run directories: results.json, per-item JSON Lines, report.md, the terminal table."""

from obliviate.report.results import load_results, write_results
from obliviate.report.tables import SUMMARY_METRICS, audit_markdown, markdown_table, print_audit, print_table

__all__ = ["SUMMARY_METRICS", "audit_markdown", "load_results", "markdown_table", "print_audit", "print_table",
           "write_results"]
