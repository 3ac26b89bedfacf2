"""One fleet job from start to end: check the inputs, skip what is complete, run the rest on the
cluster, clean up, and write ``DIR/summary.json``.

Everything that can be refused is refused before Ray starts; the output folder is locked for the
job; partial outputs never outlive it (``close`` removes the staging area whatever happened).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from engine_format.manifest import load_manifest

from .cluster import WorkerFactory, connect, import_ray, size_workers, start_workers
from .options import FleetOptions
from .outdir import OutDirLock, clear_staging, prepare_out_dir
from .plan import OutputSettings, VideoJob, completed_stats, expand_videos, plan_jobs
from .report import ProgressBar, previous_rows, skipped_outcome, table, write_summary
from .scheduler import FleetEvent, FleetScheduler, VideoOutcome

EXIT_DAMAGED = 3  # as runtime.infer: outputs complete for every decodable frame, but frames were lost
EXIT_FAILED = 4  # some videos failed (summary.json says why); the others are complete


class FleetJob:
    def __init__(self, options: FleetOptions, stop: threading.Event, log: Callable[[str], None],
                 on_event: Callable[[FleetEvent], None] | None = None,
                 on_connect: Callable[[], None] = lambda: None) -> None:
        """``on_connect`` runs once Ray is connected (ray.init replaces the SIGTERM handler)."""
        self.options, self.stop, self.log, self.on_event, self.on_connect = options, stop, log, on_event, on_connect
        self.out_dir: Path | None = None
        self.lock: OutDirLock | None = None
        self.scheduler: FleetScheduler | None = None
        self.slots: list = []
        self.connected = False
        self.cluster: str | None = None
        self.segment_seconds = 0.0  # from the first video handed to a worker to the last one finished

    def run(self) -> int | None:
        """Segment what is not complete; returns the exit status (None: stopped by a signal)."""
        a, log = self.options, self.log
        jobs = plan_jobs(expand_videos(a.videos))
        manifest = load_manifest(a.engines)
        out_dir = prepare_out_dir(a.out_dir)
        settings = OutputSettings(a.engines.resolve(), a.interval, a.overlay, a.labels, a.alpha)
        self.lock = OutDirLock(out_dir)
        self.lock.acquire()
        self.out_dir = out_dir
        clear_staging(out_dir)  # left by a job that was killed
        earlier = previous_rows(out_dir)
        outcomes: dict[str, VideoOutcome] = {}
        todo: list[VideoJob] = []
        for job in jobs:
            stats = None if a.redo else completed_stats(job, settings, out_dir, manifest)
            if stats is not None:
                outcomes[job.name] = skipped_outcome(job, stats, earlier.get(job.name))
            else:
                todo.append(job)
        log(f"{len(jobs)} video(s): {len(jobs) - len(todo)} already complete, {len(todo)} to segment into {out_dir}")
        if todo and manifest.data["checkpoint"].get("random_weights"):
            log("WARNING: these engines hold RANDOM weights, so the segmentation is meaningless; "
                "rebuild them with a trained --checkpoint")
        started = time.perf_counter()
        if todo and not self.stop.is_set():
            outcomes.update({o.job.name: o for o in self._segment(todo, settings, len(jobs))})
        wall = time.perf_counter() - started
        self.shutdown()  # no worker writes any more; the lock is kept until summary.json is written
        ordered = [outcomes.get(j.name) or VideoOutcome(j, "stopped") for j in jobs]
        summary = write_summary(out_dir, ordered, self.slots, self._settings_record(settings), self.cluster, wall,
                                self.segment_seconds, stopped=self.stop.is_set())
        log(table(ordered))
        fps = f" ({summary['cluster_fps']:.1f} frames/s across the cluster)" if summary["cluster_fps"] else ""
        log(f"{summary['videos_segmented']} video(s), {summary['frames_segmented']} frames segmented in "
            f"{self.segment_seconds:.1f} s{fps}; {wall:.1f} s with the cluster's start; summary: {out_dir / 'summary.json'}")
        if self.stop.is_set():
            return None
        if any(o.status == "failed" for o in ordered):
            return EXIT_FAILED
        return EXIT_DAMAGED if any(o.status == "damaged" for o in ordered) else 0

    def _segment(self, todo: list[VideoJob], settings: OutputSettings, total: int) -> list[VideoOutcome]:
        a = self.options
        self.cluster = connect(a.address)
        self.connected = True
        self.on_connect()
        self.log(self.cluster)
        shape = size_workers(a.workers, a.gpus_per_worker, a.cpus_per_worker, import_ray().cluster_resources())
        factory = WorkerFactory(shape, str(settings.engines), a.backend, str(self.out_dir))
        self.slots = start_workers(factory, min(shape.count, len(todo)), self.stop, self.log)
        bar = ProgressBar(total, total - len(todo), not a.progress)

        def on_event(event: FleetEvent) -> None:
            bar(event)
            if self.on_event is not None:
                self.on_event(event)

        self.scheduler = FleetScheduler(self.slots, factory, todo, settings, a.retries, self.stop, on_event, self.log)
        started = time.perf_counter()
        try:
            return self.scheduler.run()
        finally:
            self.segment_seconds = time.perf_counter() - started
            self.slots = self.scheduler.slots
            bar.close()

    def _settings_record(self, settings: OutputSettings) -> dict:
        a = self.options
        return {"engines": str(settings.engines), "interval": settings.interval, "overlay": settings.overlay,
                "labels": settings.labels, "alpha": settings.alpha, "backend": a.backend, "retries": a.retries,
                "address": a.address}

    def shutdown(self) -> None:
        """End the workers and the Ray connection, then remove partial outputs (idempotent)."""
        if self.scheduler is not None:
            self.scheduler.kill_workers()
            self.scheduler = None
        if self.connected:
            import_ray().shutdown()
            self.connected = False
        if self.out_dir is not None:
            clear_staging(self.out_dir)

    def close(self) -> None:
        """``shutdown``, then release the output folder (idempotent)."""
        self.shutdown()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
