"""The job's output folder: one job at a time (a lock file), a staging area for videos in progress,
and the one rename that makes a finished video's outputs appear.

A worker writes a video's outputs into ``DIR/.partial/<name>.<attempt>/`` and, once
``runtime.infer`` has closed them, renames that folder to ``DIR/<name>``. Each attempt has its own
staging folder, so a retry never shares files with the worker that died before it. The staging
area is emptied when the job ends (however it ends) and when the next job starts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from ..errors import UserError

STAGING = ".partial"
LOCK_NAME = ".fleet.lock"


def staging_folder(out_dir: Path, name: str, attempt: str) -> Path:
    return out_dir / STAGING / f"{name}.{attempt}"


def commit(stage: Path, final: Path) -> None:
    """Replace ``final`` (an earlier, incomplete result, if any) by the finished ``stage`` folder."""
    if final.exists():
        shutil.rmtree(final)
    os.rename(stage, final)


def clear_staging(out_dir: Path) -> None:
    """Remove everything in progress or left by dead workers (call when no worker is writing)."""
    shutil.rmtree(out_dir / STAGING, ignore_errors=True)


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` if its parent exists; fail with one line if it cannot be written."""
    if not out_dir.exists():
        if not out_dir.parent.is_dir():
            raise UserError(f"--out-dir {out_dir}: folder {out_dir.parent} does not exist; create it or choose another path")
        try:
            out_dir.mkdir()
        except OSError as e:
            raise UserError(f"--out-dir {out_dir} cannot be created ({e.strerror}); choose another path") from None
    if not out_dir.is_dir():
        raise UserError(f"--out-dir {out_dir} is not a folder; choose a folder")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UserError(f"--out-dir {out_dir} is not writable; choose another folder")
    return out_dir.resolve()


class OutDirLock:
    """``DIR/.fleet.lock``: refuses a second job writing into the same folder. A lock left by a
    job on this host whose process is gone is taken over; one from another host must be deleted."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner.get("host") == me["host"] and not _alive(owner.get("pid")):
                    self.path.unlink(missing_ok=True)  # that job was killed; take over
                    continue
                if not owner:
                    raise UserError(f"{self.path} exists but cannot be read; delete it if no fleet job writes into "
                                    f"{self.path.parent}") from None
                raise UserError(f"another fleet job (pid {owner.get('pid')} on {owner.get('host')}, started "
                                f"{owner.get('started')}) writes into {self.path.parent}; wait for it, or delete "
                                f"{self.path} if that job is no longer running") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise UserError(f"cannot take the lock {self.path}; delete it if no fleet job is running")

    def _owner(self) -> dict:
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
