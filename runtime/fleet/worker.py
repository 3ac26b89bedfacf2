"""The fleet's worker: a Ray actor that loads the engines once and segments whole videos through
``runtime.infer``'s own ``Run``, so its outputs are what ``python -m runtime.infer`` writes.

A plain class (``cluster.WorkerFactory`` makes it an actor with its CPU/GPU share). Nothing a video
does makes it raise: ``segment`` returns the status and, on failure, the one-line error. Only the
death of its process (killed, out of memory, node lost) reaches the driver as a Ray error.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

from ..errors import first_line
from .outdir import commit, staging_folder
from .plan import OutputSettings, VideoJob, engines_identity, infer_options, write_record


class SegmentWorker:
    """Holds one backend; ``segment`` runs one video at a time, ``progress``/``stop`` may be called meanwhile."""

    def __init__(self, engines: str, backend: str, threads: int, out_dir: str) -> None:
        import ray

        from engine_format.manifest import load_manifest

        from ..infer import USER_ERRORS
        from ..loading import load_backend

        self.out_dir = Path(out_dir)
        self.info: dict = {"pid": os.getpid(), "host": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(),
                           "node_id": ray.get_runtime_context().get_node_id(), "refusal": None}
        self.backend = None
        self.loaded = None
        self.engines_identity: dict = {}
        self._run = None
        self._stop = threading.Event()
        try:
            if not self.out_dir.is_dir():
                raise FileNotFoundError(f"--out-dir {out_dir} is not visible on this node; the output folder, the engines "
                                        "and the videos must be at the same path on every node (a shared file system)")
            manifest = load_manifest(engines)
            self.engines_identity = engines_identity(manifest)
            started = time.perf_counter()
            # per node: TensorRT engines are checked against this GPU, and every backend is verified on it
            notes: list[str] = []
            loaded = load_backend(backend, manifest, threads, log=notes.append)
            self.backend, self.loaded = loaded.backend, loaded
            self.info.update(backend=self.backend.name, why=loaded.why, detail=self.backend.describe(),
                             verification=loaded.verdict.line(), notes=notes,
                             load_seconds=round(time.perf_counter() - started, 3))
        except USER_ERRORS as e:
            self.info["refusal"] = str(e)
        except Exception as e:  # e.g. a TensorRT engine that does not deserialise on this GPU
            self.info["refusal"] = first_line(e)

    def describe(self) -> dict:
        """pid, host, node_ip, node_id, backend, detail; ``refusal`` says why it cannot work."""
        return self.info

    def progress(self) -> int:
        """Frames of the current video segmented so far."""
        run = self._run
        return run.streams[0].frames if run is not None and run.streams else 0

    def stop(self) -> None:
        """Make the video in progress end as 'stopped' after removing its partial outputs."""
        self._stop.set()
        run = self._run
        if run is not None:
            run.stop.set()
            run.backend_cancel()

    def segment(self, job: VideoJob, settings: OutputSettings, attempt: str) -> dict:
        """Segment ``job`` into a staging folder, then rename it to the video's output folder.

        Returns {"status": "done" | "damaged" | "failed" | "stopped", "frames", "fps",
        "wall_seconds", "lost_frames", "error", "notes"}.
        """
        from ..infer import USER_ERRORS, Interrupted, Run

        stage = staging_folder(self.out_dir, job.name, attempt)
        notes: list[str] = []
        try:
            if self._stop.is_set():
                raise Interrupted()
            stage.mkdir(parents=True)
            run = Run(infer_options(job, settings, stage), log=notes.append, loaded=self.loaded)
            self._run = run
            try:
                if self._stop.is_set():
                    raise Interrupted()
                stats = run.process()
            except BaseException:
                run.abort()
                raise
            write_record(stage, settings, self.engines_identity)  # the engines this worker loaded
            commit(stage, job.folder(self.out_dir))
        except BaseException as e:
            if self._stop.is_set() or isinstance(e, Interrupted):
                return {"status": "stopped", "notes": notes}
            if isinstance(e, USER_ERRORS):
                return {"status": "failed", "error": str(e), "notes": notes}
            if not isinstance(e, Exception):
                raise
            return {"status": "failed", "error": first_line(e), "notes": notes}
        finally:
            self._run = None
            shutil.rmtree(stage, ignore_errors=True)  # gone already after a commit
        result = {"status": "done", "frames": stats["frames"], "fps": stats["fps"], "wall_seconds": stats["wall_seconds"],
                  "lost_frames": stats["lost_frames"], "error": None, "notes": notes}
        if stats["lost_frames"]:
            result["status"] = "damaged"
            result["error"] = (f"{job.video} is truncated or damaged: {stats['lost_frames']} of {stats['expected_frames']} "
                               f"announced frames could not be decoded; the {stats['frames']} decodable frames were "
                               "segmented and written")
        return result
