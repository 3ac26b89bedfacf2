"""The output folder: the lock that keeps one job per folder, and the commit that publishes a
video's outputs, including when a worker dies or two workers commit the same video at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runtime.errors import UserError
from runtime.fleet.outdir import LOCK_NAME, OutDirLock, commit


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def test_lock_refuses_a_live_job_and_takes_over_from_a_dead_one(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "started": "x"}))
    lock = OutDirLock(tmp_path)
    lock.acquire()  # its owner is gone
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    with pytest.raises(UserError, match=f"another fleet job \\(pid {os.getpid()} on"):
        OutDirLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "x"}))
    with pytest.raises(UserError, match=f"delete {tmp_path / LOCK_NAME}"):
        OutDirLock(tmp_path).acquire()


def test_commit_replaces_an_incomplete_folder_in_one_rename(tmp_path):
    final, stage = tmp_path / "v", tmp_path / ".partial" / "v.1-x"
    final.mkdir()
    (final / "stale.png").write_bytes(b"old")
    stage.mkdir(parents=True)
    (stage / "stats.json").write_text("{}")
    commit(stage, final)
    assert sorted(p.name for p in final.iterdir()) == ["stats.json"] and not stage.exists()


def test_two_jobs_taking_over_one_stale_lock_at_once_exactly_one_wins(tmp_path, monkeypatch):
    """Both jobs see the dead job's lock; the first takes over, then the second acts on what it saw."""
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "started": "x"}))
    both_saw_it, first_done = threading.Barrier(2, timeout=30), threading.Event()
    looked: set[str] = set()
    read_owner = OutDirLock._owner

    def owner(self) -> dict:
        seen = read_owner(self)
        me = threading.current_thread().name
        if me not in looked:  # each job's first look at the lock
            looked.add(me)
            both_saw_it.wait()
            if me == "second":
                first_done.wait(30)
        return seen

    monkeypatch.setattr(OutDirLock, "_owner", owner)
    results: dict[str, str] = {}

    def job(name: str) -> None:
        try:
            OutDirLock(tmp_path).acquire()
            results[name] = "holds the lock"
        except UserError as e:
            results[name] = str(e)
        finally:
            if name == "first":
                first_done.set()

    threads = [threading.Thread(target=job, args=(name,), name=name) for name in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["first"] == "holds the lock"
    assert results["second"].startswith(f"another fleet job (pid {os.getpid()} on"), results
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


OLD = {"stats.json": b"old stats", "labels/000000.png": b"old 0", "labels/000001.png": b"old 1"}
NEW = {"stats.json": b"new stats", "labels/000000.png": b"new 0", "labels/000001.png": b"new 1", "fleet.json": b"{}"}


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def _files(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class _Killed(BaseException):
    """The worker's process dying at this point."""


def _die_at(monkeypatch, step: int) -> None:
    """The ``step``-th file system change from now (rename, unlink, rmdir; 0 = the first) kills the worker."""
    done = []
    for name in ("rename", "unlink", "rmdir"):
        def change(*args, _real=getattr(os, name), **kwargs):
            if len(done) == step:
                raise _Killed()
            done.append(1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, change)


def test_a_commit_killed_at_any_step_never_leaves_a_mix_under_the_final_name(tmp_path, monkeypatch):
    for step in range(100):
        root = tmp_path / str(step)
        final = _write(root / "v", OLD)  # an earlier result the job decided to redo
        stage = _write(root / ".partial" / "v.2-x", NEW)
        with monkeypatch.context() as m:
            _die_at(m, step)
            try:
                commit(stage, final)
                finished = True
            except _Killed:
                finished = False
        now = _files(final)
        if finished:
            assert now == NEW and not stage.exists()
            assert [p.name for p in (root / ".partial").iterdir()] == []  # the old folder is deleted
            return
        assert now in (OLD, NEW) or (now is None and OLD in [_files(p) for p in (root / ".partial").iterdir()]), (
            f"killed at file system change {step}: {final} holds {sorted(now or {})}")
    pytest.fail("commit never finished")


@pytest.mark.parametrize("earlier", [True, False])
def test_two_workers_committing_one_video_at_once_both_succeed(tmp_path, monkeypatch, earlier):
    """A retry commits while the worker Ray lost contact with commits the same video: the first
    one's rename lands between the second one's decision and its own rename."""
    final = tmp_path / "v"
    if earlier:
        _write(final, OLD)
    stage_a = _write(tmp_path / ".partial" / "v.1-a", {**NEW, "stats.json": b"stats of a"})
    stage_b = _write(tmp_path / ".partial" / "v.2-b", NEW)
    rename = os.rename

    def racing_rename(src, dst, *args, **kwargs):
        if Path(src) == stage_b and stage_a.exists():
            commit(stage_a, final)  # worker a, on another node, finishes first
        return rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", racing_rename)
    commit(stage_b, final)
    assert _files(final) == NEW and not stage_a.exists() and not stage_b.exists()
    assert [p.name for p in (tmp_path / ".partial").iterdir()] == []
