"""Run directories that are never lost or mixed.

- **A lock per run directory** (`.obliviate.lock`, an `fcntl.flock` held for the life of the run,
  with the holder's PID written in it): a second process on the same `--out` stops with a message
  naming that PID, and `--force` never deletes a directory a live process holds. The kernel drops
  the lock when its process dies, even by `kill -9`, so a dead run never blocks a new one.
- **`--force` replaces an old run only once the new one has started**: the old directory is
  moved aside (`.NAME.replaced-PID`) and restored if the new run fails before its first model is
  written; once the new run is done the old one is deleted. (A run that fails later keeps both:
  the new partial run, resumable, and the old one beside it.)
- **Statuses**: results.json says `running`, `interrupted`, `crashed` or `done`. A `running` run
  whose lock no live process holds was killed: it reads as `crashed`.
- **Signals**: SIGTERM is turned into the same clean stop as Ctrl-C (save what was reached);
  the CLI exits 130 after SIGINT and 143 after SIGTERM.
- **Permissions**: files written into a run directory get the usual 0644/0755 (the safetensors
  writer creates weights 0600, and another user of a shared run directory then got "No such file").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from obliviate.data.task import DataError

LOCK = ".obliviate.lock"
INCOMPLETE = ("running", "interrupted", "crashed")


def lock_holder(out: Path) -> int | None:
    """The PID of the live process holding `out`'s lock, or None (no lock, or its process is gone)."""
    path = Path(out) / LOCK
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _acquire(out: Path) -> int:
    path = out / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as e:
        raise DataError(f"{out}: cannot write into the run directory ({e.strerror})") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        os.close(fd)
        raise DataError(f"{out}: in use by another obliviate process (PID {lock_holder(out)}); "
                        "wait for it to finish or choose another --out") from e
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _has_results(out: Path) -> bool:
    """Whether a run wrote at least one model's results (then it is worth keeping)."""
    try:
        return bool(json.loads((out / "results.json").read_text()).get("models"))
    except (OSError, ValueError):
        return False


def check_out(out: Path) -> None:
    """`out` can become a run directory: not a file, and creatable and writable (checked on the
    nearest existing ancestor) — before anything is written or deleted."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: is a file, not a directory")
    parent = out if out.exists() else next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"--out {out}: cannot write there ({parent or out} is not a writable directory)")


@contextlib.contextmanager
def open_run_dir(out: Path, force: bool = False, resume: bool = False, log=print) -> Iterator[Path]:
    """The run directory `out`, locked for the duration of the block.

    An existing non-empty directory is an error unless `resume` (continue it) or `force` (replace
    it; see the module docstring for when the old run is restored or deleted)."""
    out = Path(out)
    check_out(out)
    backup: Path | None = None
    if out.is_dir() and any(out.iterdir()):
        holder = lock_holder(out)
        if holder is not None:
            raise DataError(f"{out}: in use by another obliviate process (PID {holder}); "
                            "wait for it to finish or choose another --out")
        if not resume:
            if not force:
                raise DataError(f"{out}: run directory exists and is not empty "
                                "(--resume continues it, --force replaces it)")
            backup = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(out, backup)
    elif resume:
        log(f"{out}: nothing to resume; starting a new run")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"--out {out}: cannot create the run directory ({e.strerror})") from None
    fd = _acquire(out)
    ok = False
    try:
        yield out
        ok = True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        with contextlib.suppress(OSError):
            (out / LOCK).unlink()
        fix_permissions(out)
        if backup is not None and backup.exists():
            if ok:
                shutil.rmtree(backup)
            elif not _has_results(out):
                shutil.rmtree(out)
                os.replace(backup, out)
                log(f"{out}: the new run failed before any result; the previous run is back in place")
            else:
                log(f"{out}: the run it replaced is kept in {backup}")


def fix_permissions(out: Path) -> None:
    """Give files 0644 and directories 0755 (respecting the umask) under `out`."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(out):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, d), 0o777 & ~umask)
        for f in files:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, f), 0o666 & ~umask)


def run_status(run_dir: Path, results: dict[str, Any]) -> str:
    """done | running | interrupted | crashed (a `running` run no live process holds was killed)."""
    status = results.get("status", "done")
    if status == "running" and lock_holder(run_dir) is None:
        return "crashed"
    return status


def require_complete(run_dir: Path, results: dict[str, Any], allow_incomplete: bool, log=print) -> str:
    """Refuse (exit non-zero) to treat an unfinished run as a result, unless the user allows it."""
    status = run_status(run_dir, results)
    if status in INCOMPLETE:
        what = {"running": "still running", "interrupted": "was interrupted",
                "crashed": "crashed (its process is gone)"}[status]
        msg = (f"{run_dir}: incomplete run (status {status}: it {what}); "
               f"{len(results.get('models', {}))} model(s) have results")
        if not allow_incomplete:
            raise Incomplete(msg + "; use --resume to finish it, or --allow-incomplete to read it anyway")
        log(msg + " (reading it anyway: --allow-incomplete)")
    return status


class Incomplete(DataError):
    """A run directory is not finished: the CLI exits 1 (not 2: nothing is wrong with the input)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same clean stop as Ctrl-C."""


# Set when SIGTERM arrived: loops catch KeyboardInterrupt to save their state, and the CLI still
# needs to know which signal it was for its exit code (143, not 130).
TERMINATED = {"value": False}


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (a KeyboardInterrupt): results are saved."""
    def handler(signum, frame):
        TERMINATED["value"] = True
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= _flat(v, f"{prefix}{k}.")
        return out
    return {prefix.rstrip("."): d}


def resume_state(out: Path, config: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """What the run in `out` had finished: (its results, its per-item rows), or (None, []) when
    there is nothing to resume. The resolved `config` must be the one the run was started with:
    a resumed run that changed a setting would mix two experiments in one directory."""
    from obliviate.report.results import _clean, load_results, read_per_item

    if not (out / "results.json").is_file():
        return None, []
    results = load_results(out)
    if results.get("status") == "done":
        raise DataError(f"{out}: this run is already done; nothing to resume (--force replaces it)")
    old, new = _flat(_clean(results.get("config", {}))), _flat(_clean(json.loads(json.dumps(config, default=str))))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        shown = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in changed[:3])
        raise DataError(f"{out}: cannot resume with different settings: {shown}"
                        f"{' ...' if len(changed) > 3 else ''}")
    return results, read_per_item(out / "per_item.jsonl")


def finished(results: dict[str, Any] | None, name: str) -> bool:
    """Whether model `name` of a run being resumed is finished (an interrupted method is redone
    from its last checkpoint)."""
    entry = (results or {}).get("models", {}).get(name)
    return bool(entry) and (entry.get("unlearn") or {}).get("status") != "interrupted"
