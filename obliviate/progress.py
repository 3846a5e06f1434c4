"""Progress for long work (training, unlearning, evaluation, each attack).

On a terminal: a rich progress bar. Elsewhere (a log file, nohup, CI) a bar draws nothing, so a
job of an hour would look dead: there, a plain line per task with the progress, the elapsed time
and an ETA goes to stderr when the task starts, at least every 30 s while it runs
(`OBLIVIATE_PROGRESS_EVERY` seconds; printed from a timer thread, so a long step in the middle
still shows a line), and when it ends. `OBLIVIATE_NO_PROGRESS=1` silences both.

rich has no non-terminal mode with periodic plain lines (its bar is redrawn in place, or not at
all), hence the small `PlainProgress` below with the subset of rich's `Progress` API the package
uses (`add_task`, `update`, `advance`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

DEFAULT_EVERY = 30.0


def progress() -> Progress | PlainProgress:
    """A progress display for a `with` block: a bar on a terminal, plain timed lines elsewhere."""
    if os.environ.get("OBLIVIATE_NO_PROGRESS"):
        return Progress(disable=True)
    if sys.stderr.isatty():
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), transient=True, console=Console(stderr=True))
    return PlainProgress(float(os.environ.get("OBLIVIATE_PROGRESS_EVERY", DEFAULT_EVERY)))


def duration(seconds: float) -> str:
    """1h02m03s / 2m03s / 3s."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    start: float = field(default_factory=time.monotonic)
    done_at: float | None = None
    first: float = 0.0  # completed units when the task was added (a resumed run): not in the rate

    def line(self, now: float) -> str:
        elapsed = now - self.start
        if self.total:
            share = f"{self.completed:g}/{self.total:g} ({100 * self.completed / self.total:.0f}%)"
        else:
            share = f"{self.completed:g}"
        text = f"{self.description}: {share}, elapsed {duration(elapsed)}"
        if self.done_at is not None:
            return text + ", done"
        made = self.completed - self.first
        if self.total and made > 0:
            text += f", ETA {duration(elapsed / made * (self.total - self.completed))}"
        elif self.total:
            text += ", ETA unknown (no step done yet)"
        return text


class PlainProgress:
    """Plain progress lines with elapsed time and ETA (see the module docstring)."""

    def __init__(self, every: float = DEFAULT_EVERY, stream: TextIO | None = None):
        self.every, self.stream = every, stream
        self.tasks: dict[int, _Task] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _print(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(text, file=stream, flush=True)

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                now = time.monotonic()
                for t in self.tasks.values():
                    if t.done_at is None:
                        self._print(t.line(now))

    def __enter__(self) -> PlainProgress:
        self._thread = threading.Thread(target=self._tick, name="obliviate-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            now = time.monotonic()
            for t in self.tasks.values():
                if t.done_at is None:  # stopped early (a stopping rule, an error): say where
                    why = f" by {exc[0].__name__}" if exc[0] is not None else ""
                    self._print(t.line(now).split(", ETA")[0] + f", stopped{why}")

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_) -> int:
        with self._lock:
            task_id = len(self.tasks)
            self.tasks[task_id] = _Task(description, total, completed, first=completed)
            self._print(f"{description}: started" + (f" ({total:g} steps)" if total else ""))
        return task_id

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None,
               description: str | None = None, total: float | None = None, **_) -> None:
        with self._lock:
            t = self.tasks[task_id]
            if total is not None:
                t.total = total
            if completed is not None:
                t.completed = completed
            if advance is not None:
                t.completed += advance
            if description is not None:
                t.description = description
            if t.total and t.completed >= t.total and t.done_at is None:
                t.done_at = time.monotonic()
                self._print(t.line(t.done_at))

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)
