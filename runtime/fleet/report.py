"""What the job tells its user: one aggregated progress bar, ``DIR/summary.json`` and a final table."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from engine_format.manifest import write_json_atomic

from .cluster import WorkerSlot
from .plan import VideoJob
from .scheduler import FleetEvent, VideoOutcome

SUMMARY_NAME = "summary.json"
FORMAT = "gsvnet-fleet-summary"
#: statuses whose outputs are complete (damaged: complete for every decodable frame)
COMPLETE = ("done", "skipped", "damaged")


class ProgressBar:
    """Videos finished out of the job's total, with the frames per second of the whole cluster."""

    def __init__(self, total: int, already: int, disable: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=already, unit="video", disable=True if disable else None, dynamic_ncols=True)
        self.started = time.perf_counter()

    def __call__(self, event: FleetEvent) -> None:
        if event.kind == "finish":
            self.bar.update(1)
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        self.bar.set_postfix(frames=event.cluster_frames, fps=f"{event.cluster_frames / elapsed:.1f}", refresh=True)

    def close(self) -> None:
        self.bar.close()


def previous_rows(out_dir: Path) -> dict[str, dict]:
    """summary.json rows of an earlier run, by video name (to say who segmented a skipped video)."""
    try:
        data = json.loads((out_dir / SUMMARY_NAME).read_text())
        return {row["name"]: row for row in data["videos"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def skipped_outcome(job: VideoJob, stats: dict, earlier: dict | None) -> VideoOutcome:
    earlier = earlier or {}
    return VideoOutcome(job, "skipped", frames=int(stats["frames"]), fps=stats.get("fps"),
                        wall_seconds=stats.get("wall_seconds"), worker=earlier.get("worker"),
                        worker_pid=earlier.get("worker_pid"), host=earlier.get("host"), node=earlier.get("node"),
                        attempts=0, error=None)


def write_summary(out_dir: Path, outcomes: list[VideoOutcome], slots: list[WorkerSlot], settings: dict,
                  cluster: str | None, wall: float, segment_seconds: float, stopped: bool) -> dict:
    """Write DIR/summary.json atomically; returns what was written. ``wall``: the whole job, with the
    cluster's and workers' start; ``segment_seconds``: from the first video handed out to the last done."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    segmented = [o for o in outcomes if o.status in ("done", "damaged")]
    frames = sum(o.frames for o in segmented)
    status = "stopped" if stopped else ("complete" if all(o.status in COMPLETE for o in outcomes) else "incomplete")
    summary = {
        "format": FORMAT, "version": 1, "status": status,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": counts, "videos_segmented": len(segmented), "frames_segmented": frames,
        "wall_seconds": round(wall, 3), "segment_seconds": round(segment_seconds, 3),
        "cluster_fps": round(frames / segment_seconds, 2) if segment_seconds > 0 and frames else None,
        "settings": settings, "cluster": cluster,
        "workers": [{"name": s.name, "state": s.state, "reason": s.reason, **s.info} for s in slots],
        "videos": [_row(o, out_dir) for o in outcomes],
    }
    write_json_atomic(out_dir / SUMMARY_NAME, summary)
    return summary


def _row(o: VideoOutcome, out_dir: Path) -> dict:
    return {"name": o.job.name, "video": str(o.job.video), "outputs": str(o.job.folder(out_dir)), "status": o.status,
            "frames": o.frames, "fps": o.fps, "wall_seconds": o.wall_seconds, "worker": o.worker,
            "worker_pid": o.worker_pid, "host": o.host, "node": o.node, "attempts": o.attempts, "error": o.error}


def table(outcomes: list[VideoOutcome]) -> str:
    """The final table: one row per video, then one line per problem."""
    head = ("video", "status", "frames", "FPS", "worker", "node", "tries")
    rows = [(o.job.name, o.status, str(o.frames or "-"), f"{o.fps:.1f}" if o.fps else "-", o.worker or "-",
             o.node or "-", str(o.attempts or "-")) for o in outcomes]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    lines += [f"{o.job.name}: {o.error}" for o in outcomes if o.error]
    return "\n".join(lines)
