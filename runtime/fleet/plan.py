"""Which videos a fleet job segments, where each one's outputs go, and which are already complete.

Every video gets its own folder ``DIR/<video name>/`` holding exactly what ``runtime.infer``
writes for that one video: ``overlay.mp4`` (--overlay), ``labels/`` with one PNG of class ids per
frame (--labels) and ``stats.json`` (always), plus the fleet's ``fleet.json``: what the outputs were
made with (``output_record``). The folder appears in one rename when the video is finished
(``outdir.commit``), so a folder with a valid ``stats.json`` is a finished video; a rerun still
verifies it (``completed_stats``) before skipping it.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

import av

from engine_format.manifest import Manifest

from ..errors import UserError
from ..options import InferOptions

OVERLAY_NAME = "overlay.mp4"
LABELS_NAME = "labels"
STATS_NAME = "stats.json"
RECORD_NAME = "fleet.json"


@dataclass(frozen=True)
class OutputSettings:
    """What every video of a job is segmented with, and which outputs it gets."""

    engines: Path  # absolute
    interval: int
    overlay: bool
    labels: bool
    alpha: float


@dataclass(frozen=True)
class VideoJob:
    """One video, the unit of work (keyframe state never crosses videos)."""

    video: Path  # absolute
    name: str  # the output folder's name: the video's file name without its suffix

    def folder(self, out_dir: Path) -> Path:
        return out_dir / self.name


def expand_videos(patterns: list[str]) -> list[Path]:
    """Paths and glob patterns (``**`` recurses) -> existing video files, absolute, in order, once each."""
    found: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise UserError(f"no file matches {pattern!r}; check the pattern (quote it so the shell leaves it to us)")
            paths = [Path(m) for m in matches if not Path(m).is_dir()]
        else:
            path = Path(pattern)
            if not path.exists():
                raise UserError(f"video not found: {path}")
            if path.is_dir():
                raise UserError(f"{path} is a folder; pass the videos in it, e.g. '{path}/*.mp4'")
            paths = [path]
        found.extend(p.resolve() for p in paths)
    return list(dict.fromkeys(found))


def plan_jobs(videos: list[Path]) -> list[VideoJob]:
    """One job per video, named after the file; two videos with the same name are refused."""
    seen: dict[str, Path] = {}
    for video in videos:
        if video.stem in seen:
            raise UserError(f"{seen[video.stem]} and {video} share the name {video.stem!r}, and outputs are named after "
                            "the videos; rename one, or run one job per folder with its own --out-dir")
        if video.stem.startswith("."):
            raise UserError(f"{video} starts with a dot, which the output folder reserves for temporary files; rename it")
        seen[video.stem] = video
    return [VideoJob(video, name) for name, video in seen.items()]


def infer_options(job: VideoJob, settings: OutputSettings, folder: Path) -> InferOptions:
    """The ``runtime.infer`` options that write this video's outputs into ``folder``."""
    return InferOptions(video=[job.video], engines=settings.engines, interval=settings.interval, alpha=settings.alpha,
                        stats=folder / STATS_NAME, progress=False,
                        out=folder / OVERLAY_NAME if settings.overlay else None,
                        labels_dir=folder / LABELS_NAME if settings.labels else None)


def engines_identity(manifest: Manifest) -> dict:
    """What in an engines folder decides the labels, so that engines rebuilt in the same folder are
    told apart: the build key (weights, config, size, opset, custom ops, precision) and the
    checkpoint's sha256."""
    return {"build_key": manifest.data.get("build_key"), "checkpoint_sha256": manifest.data["checkpoint"].get("sha256")}


def output_record(settings: OutputSettings, identity: dict) -> dict:
    """What a video's outputs are made with, as ``fleet.json`` holds it: the engines' identity, the
    interval, which outputs, and the overlay's alpha (None without an overlay, where it changes nothing)."""
    return {**identity, "interval": settings.interval, "overlay": settings.overlay, "labels": settings.labels,
            "alpha": settings.alpha if settings.overlay else None}


def write_record(folder: Path, settings: OutputSettings, identity: dict) -> None:
    """Write ``fleet.json`` into a video's staging folder (before the rename that publishes it)."""
    (folder / RECORD_NAME).write_text(json.dumps(output_record(settings, identity), indent=2) + "\n")


def completed_stats(job: VideoJob, settings: OutputSettings, out_dir: Path, manifest: Manifest) -> dict | None:
    """The stats of ``job`` if its folder holds complete outputs made from this video with these
    settings and these engines (``fleet.json`` equal to this job's ``output_record``, every
    requested output present, frame counts agreeing); else None."""
    folder = job.folder(out_dir)
    stats_path = folder / STATS_NAME
    try:
        stats = json.loads(stats_path.read_text())
        frames = int(stats["frames"])
        made_with = json.loads((folder / RECORD_NAME).read_text())
        same = (made_with == output_record(settings, engines_identity(manifest))
                and Path(stats["video"]).resolve() == job.video
                and stats["interval"] == settings.interval
                and Path(stats["engines"]).resolve() == settings.engines
                and stats["keyframe_net"] == manifest.model["keyframe_net"]
                and tuple(stats["engine_size"]) == tuple(manifest.frame_size))
        if not same or frames < 1 or job.video.stat().st_mtime > stats_path.stat().st_mtime:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if settings.labels and not _labels_complete(folder / LABELS_NAME, frames):
        return None
    if settings.overlay and _video_frames(folder / OVERLAY_NAME) != frames:
        return None
    return stats


def _labels_complete(folder: Path, frames: int) -> bool:
    """``folder`` holds exactly the PNGs 000000.png ... for ``frames`` frames."""
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    return names == {f"{i:06d}.png" for i in range(frames)}


def _video_frames(path: Path) -> int | None:
    """Frame count a video's header announces, None if it cannot be opened."""
    try:
        with av.open(str(path)) as container:
            return int(container.streams.video[0].frames)
    except (av.error.FFmpegError, OSError, IndexError):
        return None
