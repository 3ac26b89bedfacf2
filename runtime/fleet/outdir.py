"""The job's output folder: one job at a time (a lock file), a staging area for videos in progress,
and the one rename that makes a finished video's outputs appear.

A worker writes a video's outputs into ``DIR/.partial/<name>.<attempt>/`` and, once
``runtime.infer`` has closed them, renames that folder to ``DIR/<name>`` (an earlier folder there
is first renamed aside into the staging area: ``commit``). Each attempt has its own
staging folder, so a retry never shares files with the worker that died before it. The staging
area is emptied when the job ends (however it ends) and when the next job starts.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from ..errors import UserError

STAGING = ".partial"
LOCK_NAME = ".fleet.lock"
TAKEOVER_NAME = ".fleet.lock.takeover"  # flock()ed while a stale lock is replaced; kept (see OutDirLock)
COMMIT_TRIES = 5


def staging_folder(out_dir: Path, name: str, attempt: str) -> Path:
    return out_dir / STAGING / f"{name}.{attempt}"


def commit(stage: Path, final: Path) -> None:
    """Make the finished ``stage`` folder the video's outputs ``final`` with renames only.

    An earlier folder at ``final`` is renamed aside (to a unique name beside ``stage``, in the
    staging area the next job empties), ``stage`` takes its name, and only then is the old one
    deleted: ``final`` is never a partly deleted or partly written folder. A worker committing the
    same video at the same time (a retry racing a worker Ray had lost contact with) is no error:
    both folders are complete, and the later rename wins.
    """
    replaced: list[Path] = []
    try:
        for _ in range(COMMIT_TRIES):
            try:
                os.rename(stage, final)
                return
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            aside = stage.parent / f"{final.name}.replaced-{uuid.uuid4().hex[:12]}"
            try:
                os.rename(final, aside)
                replaced.append(aside)
            except FileNotFoundError:
                pass  # another commit moved it aside first
        raise OSError(errno.EBUSY, f"{final} kept being replaced by other workers while this one committed {stage.name}")
    finally:
        for old in replaced:
            shutil.rmtree(old, ignore_errors=True)


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
    job on this host whose process is gone is taken over; one from another host must be deleted.

    A takeover deletes the dead job's lock only after reading it again under an exclusive
    ``flock`` of ``DIR/.fleet.lock.takeover``, so of two jobs taking over at once the second sees
    the first's fresh lock and refuses, instead of deleting it. That file stays: deleting it would
    let a job still waiting for its flock into the takeover beside a newcomer's new file.
    """

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
                if _stale(owner, me["host"]):
                    self._remove_stale(me["host"])  # that job was killed; take over
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

    def _remove_stale(self, host: str) -> None:
        """Delete the lock if, read again while holding the takeover flock, it is still a dead job's."""
        guard = None
        try:
            guard = os.open(self.path.with_name(TAKEOVER_NAME), os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(guard, fcntl.LOCK_EX)
            if _stale(self._owner(), host):
                self.path.unlink(missing_ok=True)
        except OSError as e:  # e.g. a file system without locks
            raise UserError(f"cannot take over the stale lock {self.path} ({e.strerror or e}); delete it if no fleet "
                            f"job writes into {self.path.parent}") from None
        finally:
            if guard is not None:
                os.close(guard)  # releases the flock

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


def _stale(owner: dict, host: str) -> bool:
    """The lock ``owner`` is a job on ``host`` whose process is gone."""
    return owner.get("host") == host and not _alive(owner.get("pid"))


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
