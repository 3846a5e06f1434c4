"""Progress bars for long work (training, unlearning, evaluation), quiet when not on a terminal."""

from __future__ import annotations

import os
import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress() -> Progress:
    disable = bool(os.environ.get("OBLIVIATE_NO_PROGRESS")) or not sys.stderr.isatty()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True, disable=disable)
