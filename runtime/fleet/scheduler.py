"""The driver's loop: whole videos to idle workers, retries when a worker dies, a clean stop.

- A video's own failure (corrupt file, ...) comes back as a result and is final for this job.
- A worker that dies mid-video (process killed, out of memory, node lost) surfaces as a Ray actor
  error: its video goes back to the front of the queue (at most ``retries`` times) and the worker
  is replaced by a new actor (at most ``retries`` times per original worker), which Ray places on
  any node with room.
- ``stop`` set (Ctrl-C): every busy worker is asked to stop, which removes its partial outputs;
  videos not finished are reported as stopped.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import first_line
from .cluster import POLL_S, START_TIMEOUT_S, WorkerFactory, WorkerSlot, import_ray, take_description
from .plan import OutputSettings, VideoJob

#: how long busy workers get to remove their partial outputs after a stop request
STOP_GRACE_S = 10.0
#: characters of a Ray error's first line kept in summary.json
ERROR_CHARS = 200


@dataclass
class VideoOutcome:
    """What happened to one video (one row of summary.json)."""

    job: VideoJob
    status: str  # done | damaged | skipped | failed | stopped
    frames: int = 0
    fps: float | None = None
    wall_seconds: float | None = None
    worker: str | None = None
    worker_pid: int | None = None
    host: str | None = None
    node: str | None = None  # node IP address
    attempts: int = 0
    error: str | None = None


@dataclass
class FleetEvent:
    """Progress, for the progress bar and for tests: ``kind`` is start, progress, finish or worker-lost."""

    kind: str
    video: str | None
    slot: WorkerSlot | None
    attempt: int
    frames: int  # frames of this video so far (progress) or in total (finish)
    cluster_frames: int  # frames segmented by the whole job so far
    outcome: VideoOutcome | None = None


@dataclass
class _Task:
    kind: str  # segment | progress | describe
    slot: WorkerSlot
    job: VideoJob | None = None


class FleetScheduler:
    def __init__(self, slots: list[WorkerSlot], factory: WorkerFactory, jobs: list[VideoJob], settings: OutputSettings,
                 retries: int, stop: threading.Event, on_event: Callable[[FleetEvent], None] | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.ray = import_ray()
        self.slots = list(slots)
        self.factory = factory
        self.pending: deque[VideoJob] = deque(jobs)
        self.settings = settings
        self.retries = retries
        self.stop = stop
        self.on_event = on_event or (lambda event: None)
        self.log = log
        self.tasks: dict[Any, _Task] = {}
        self.attempts: dict[str, int] = {}
        self.current: dict[str, VideoJob] = {}  # worker name -> its video
        self.frames_now: dict[str, int] = {}  # worker name -> frames of its current video
        self.finished_frames = 0
        self.outcomes: dict[str, VideoOutcome] = {}
        self.replacements: dict[str, int] = {}  # original worker name -> replacements so far
        self.lineage: dict[str, str] = {s.name: s.name for s in slots}

    # ---- the loop ------------------------------------------------------------------------------
    def run(self) -> list[VideoOutcome]:
        """Segment every job; returns one outcome per job that was attempted or stopped."""
        ray = self.ray
        next_poll = 0.0
        while self.pending or self.current:
            if self.stop.is_set():
                self._stop_all()
                break
            self._assign()
            if self.pending and not self.current and not self._can_still_work():
                self._fail_pending("no worker is left to segment it: " + self._dead_reasons())
                break
            if time.monotonic() >= next_poll:
                self._poll_progress()
                next_poll = time.monotonic() + POLL_S
            if not self.tasks:
                time.sleep(POLL_S)
                continue
            ready, _ = ray.wait(list(self.tasks), num_returns=1, timeout=POLL_S)
            if ready:
                ready, _ = ray.wait(list(self.tasks), num_returns=len(self.tasks), timeout=0)
            for ref in ready:
                self._handle(ref, self.tasks.pop(ref))
        return list(self.outcomes.values())

    def _can_still_work(self) -> bool:
        now = time.monotonic()
        return any(s.state == "idle" or (s.state == "starting" and now - s.since < START_TIMEOUT_S) for s in self.slots)

    def _assign(self) -> None:
        for slot in self.slots:
            if slot.state != "idle" or not self.pending:
                continue
            job = self.pending.popleft()
            attempt = self.attempts[job.name] = self.attempts.get(job.name, 0) + 1
            ref = slot.handle.segment.remote(job, self.settings, f"{attempt}-{uuid.uuid4().hex[:8]}")
            self.tasks[ref] = _Task("segment", slot, job)
            slot.state = "busy"
            self.current[slot.name] = job
            self.frames_now[slot.name] = 0
            self.on_event(FleetEvent("start", job.name, slot, attempt, 0, self.cluster_frames))

    def _poll_progress(self) -> None:
        polling = {t.slot.name for t in self.tasks.values() if t.kind == "progress"}
        for slot in self.slots:
            if slot.state == "busy" and slot.name not in polling:
                self.tasks[slot.handle.progress.remote()] = _Task("progress", slot, self.current[slot.name])

    @property
    def cluster_frames(self) -> int:
        return self.finished_frames + sum(self.frames_now.values())

    # ---- answers from workers ------------------------------------------------------------------
    def _handle(self, ref: Any, task: _Task) -> None:
        ray, slot = self.ray, task.slot
        if task.kind == "describe":
            take_description(slot, ref, self.log)
            return
        if task.kind == "progress":
            try:
                frames = ray.get(ref)
            except ray.exceptions.RayError:
                return  # the segment task reports what happened to the worker
            if self.current.get(slot.name) is task.job and slot.state == "busy":
                self.frames_now[slot.name] = frames
                self.on_event(FleetEvent("progress", task.job.name, slot, self.attempts[task.job.name], frames,
                                         self.cluster_frames))
            return
        job = task.job
        self.current.pop(slot.name, None)
        self.frames_now.pop(slot.name, None)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            self._worker_lost(slot, job, e)
            return
        except ray.exceptions.RayError as e:  # anything else Ray reports about the call
            result = {"status": "failed", "error": first_line(e, ERROR_CHARS)}
        slot.state = "idle"
        if result["status"] == "stopped":
            self._record(job, VideoOutcome(job, "stopped", attempts=self.attempts[job.name]), slot)
            return
        outcome = VideoOutcome(job, result["status"], frames=result.get("frames", 0), fps=result.get("fps"),
                               wall_seconds=result.get("wall_seconds"), attempts=self.attempts[job.name],
                               error=result.get("error"))
        self.finished_frames += outcome.frames
        self._record(job, outcome, slot)

    def _record(self, job: VideoJob, outcome: VideoOutcome, slot: WorkerSlot | None) -> None:
        if slot is not None:
            outcome.worker, outcome.worker_pid = slot.name, slot.info.get("pid")
            outcome.host, outcome.node = slot.info.get("host"), slot.info.get("node_ip")
        self.outcomes[job.name] = outcome
        self.on_event(FleetEvent("finish", job.name, slot, outcome.attempts, outcome.frames, self.cluster_frames, outcome))

    def _worker_lost(self, slot: WorkerSlot, job: VideoJob, error: Exception) -> None:
        """The worker's process died during ``job``: retry the video, replace the worker."""
        cause = first_line(error, ERROR_CHARS)
        slot.state, slot.reason = "dead", f"died while segmenting {job.name} ({cause})"
        self.ray.kill(slot.handle)  # if Ray only lost contact with it, make sure it stops writing
        attempts = self.attempts[job.name]
        self.log(f"worker {slot.where()} died while segmenting {job.name} (attempt {attempts})")
        self.on_event(FleetEvent("worker-lost", job.name, slot, attempts, 0, self.cluster_frames))
        if attempts > self.retries:
            self._record(job, VideoOutcome(job, "failed", attempts=attempts,
                                           error=f"its worker died {attempts} times while segmenting it; not retried "
                                                 f"again (--retries {self.retries}); last: {cause}"), slot)
        else:
            self.pending.appendleft(job)
        origin = self.lineage[slot.name]
        if self.replacements.get(origin, 0) < self.retries and not self.stop.is_set():
            self.replacements[origin] = self.replacements.get(origin, 0) + 1
            new = self.factory.spawn()
            self.lineage[new.name] = origin
            self.slots.append(new)
            self.tasks[new.handle.describe.remote()] = _Task("describe", new)

    # ---- ending ------------------------------------------------------------------------------
    def _fail_pending(self, error: str) -> None:
        while self.pending:
            job = self.pending.popleft()
            self._record(job, VideoOutcome(job, "failed", attempts=self.attempts.get(job.name, 0), error=error), None)

    def _dead_reasons(self) -> str:
        return "; ".join(f"{s.where()}: {s.reason}" for s in self.slots if s.reason) or "none started"

    def _stop_all(self) -> None:
        """Ask busy workers to stop (they remove their partial outputs), wait for them a little,
        and report unfinished videos as stopped."""
        ray = self.ray
        for slot in self.slots:
            if slot.state == "busy":
                try:
                    slot.handle.stop.remote()
                except ray.exceptions.RayError:
                    pass
        segments = {ref: t for ref, t in self.tasks.items() if t.kind == "segment"}
        deadline = time.monotonic() + STOP_GRACE_S
        while segments and time.monotonic() < deadline:
            ready, _ = ray.wait(list(segments), num_returns=len(segments), timeout=min(POLL_S, deadline - time.monotonic()))
            for ref in ready:
                self._handle(ref, segments.pop(ref))
        for task in segments.values():
            self._record(task.job, VideoOutcome(task.job, "stopped", attempts=self.attempts[task.job.name]), task.slot)
        self.current.clear()
        while self.pending:
            job = self.pending.popleft()
            if job.name not in self.outcomes:
                self._record(job, VideoOutcome(job, "stopped", attempts=self.attempts.get(job.name, 0)), None)

    def kill_workers(self) -> None:
        """End every worker process (their partial outputs are then removed by the caller)."""
        for slot in self.slots:
            try:
                self.ray.kill(slot.handle)
            except Exception:
                pass
