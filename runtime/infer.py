"""python -m runtime.infer --video PATH: segment a whole video with the built graphs/engines.

Frames stream from the decoder (a background thread, which also resizes them to the engine size),
run through the keyframe / propagation schedule on the chosen backend (on a CPU with the keyframe
steps computed ahead on their own threads), and the labels (resized back to the video size) go,
through a writer thread, to a colour-overlay video, per-frame label PNGs and/or a stats file
(runtime/pipeline.py; the CPU budget: runtime/threads.py). Every output is written under a
temporary name and renamed only when complete.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine_format.sizes import parse_size
from engine_format.manifest import ManifestError, load_manifest
from gsvnet.checkpoint import CheckpointError

from .arguments import alpha_value, crf_value, non_negative_int, positive_float, positive_int
from .errors import UserError
from .live import DEFAULT_RECONNECT
from .sources import source_stem
from .options import DEFAULT_ENGINES, InferOptions
from .outputs import DEFAULT_CRF, DEFAULT_PRESET, X264_PRESETS

if TYPE_CHECKING:
    from .loading import LoadedBackend
    from .verification import Verdict

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
LATENCY_WINDOW = 1000  # a live run's stats give the median and max latency of its last this many frames
EXIT_LOST_FRAMES = 3  # outputs are complete for every decodable frame, but frames were lost
#: errors the user can fix: printed as one line, exit status 2 (or their own exit_code)
USER_ERRORS = (UserError, ManifestError, CheckpointError)


def build_parser() -> argparse.ArgumentParser:
    from gsvnet.keyframe import keyframe_net_names

    from .backends import CHOICES
    from .backends.base import PRECISIONS

    p = argparse.ArgumentParser(
        prog="python -m runtime.infer",
        description="Segment a video with GSVNet: the keyframe net every --interval frames, flow-guided propagation "
                    "in between. Build the graphs first with `python -m export.build_engines`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--video", nargs="+", required=True,
                   help="input video file(s) (anything FFmpeg decodes), or live sources: rtsp://, rtmp://, "
                        "http(s):// (MPEG-TS, HLS), udp:// URLs and cameras (/dev/videoN); several are segmented "
                        "together, batching the same stage across streams, and --out / --labels-dir are then folders")
    live = p.add_argument_group("live sources")
    live.add_argument("--live", action="store_true", default=None,
                      help="treat the sources as live (URLs and cameras are live already): progress in frames, FPS "
                           "and latency, the oldest frames dropped when segmenting falls behind, reconnects")
    live.add_argument("--no-drop", action="store_true",
                      help="a live run that falls behind waits for the segmenter instead of dropping the oldest frames "
                           "(for recordings served live)")
    live.add_argument("--reconnect", type=non_negative_int, default=DEFAULT_RECONNECT,
                      help="reopen attempts after a live source stops sending or closes (back-off 0.5 s doubling to 8 s); "
                           "a source that stays away ends the run with exit 3 and every output complete")
    live.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                      help="end the run after this many seconds, every output complete (Ctrl-C does the same in a "
                           "live run)")
    live.add_argument("--segment-seconds", type=positive_float, default=None, metavar="SECONDS",
                      help="write the --out overlay as files of this many seconds of video: OUT_000.mp4, OUT_001.mp4, "
                           "... each complete and playable once closed")
    p.add_argument("--engines", type=Path, default=DEFAULT_ENGINES, help="engines folder written by export.build_engines")
    p.add_argument("--backend", choices=CHOICES, default="auto",
                   help="auto picks tensorrt > torch-cuda > onnxruntime-cuda > onnxruntime (CPU) and says why; "
                        "openvino is Intel's CPU runtime (f32, bf16, int8: --precision); torch is PyTorch eager on the CPU")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="CPU precision: f32, bf16 (OpenVINO, on CPUs with AVX512_BF16 or AMX) or int8 (the INT8 "
                        "keyframe graph of engines built with --precision int8); default: the engines' own (int8 for "
                        "an INT8 folder, else f32)")
    p.add_argument("--interval", type=positive_int, default=4, help="keyframe interval l: keyframes at frames 0, l, 2l, ...")
    p.add_argument("--out", type=Path, default=None,
                   help="colour-overlay video to write (.mp4, .mkv or .mov); with several videos, an existing folder "
                        "that receives <video name>.mp4 for each")
    p.add_argument("--labels-dir", type=Path, default=None,
                   help="folder to write one uint8 PNG of class ids per frame into (with several videos: one "
                        "sub-folder per video)")
    p.add_argument("--stats", type=Path, default=None, help="JSON file for frame counts, wall time, FPS and per-stage milliseconds")
    p.add_argument("--alpha", type=alpha_value, default=0.5, help="overlay opacity of the label colours")
    p.add_argument("--encoder-preset", choices=X264_PRESETS, default=DEFAULT_PRESET,
                   help="x264 preset of the --out overlay: a faster preset leaves more CPU to the network and writes a "
                        "bigger file at the same --encoder-crf")
    p.add_argument("--encoder-crf", type=crf_value, default=DEFAULT_CRF,
                   help="x264 quality of the overlay: 0 lossless .. 51 worst; 18-23 look alike to most eyes")
    p.add_argument("--encoder-threads", type=non_negative_int, default=0,
                   help="overlay encoder threads (0: from the CPU budget, half of --threads up to 4, 1 on two cores)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many frames (default: the whole video)")
    p.add_argument("--keyframe-net", default=None, choices=keyframe_net_names(),
                   help="refuse engines built for another keyframe net (default: accept the engines' net)")
    p.add_argument("--size", type=parse_size, default=None, metavar="HxW",
                   help="refuse engines built for another frame size (default: accept the engines' size)")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="CPU budget: cores this run may use, shared by the decoder, the graphs and the encoder "
                        "(0: every core this process may run on). On a CPU backend each graph gets the thread count "
                        "measured fastest for it within the budget (a short tuning run the first time engines are "
                        "used on a machine, kept in ENGINES/tuning.json)")
    p.add_argument("--tune", action="store_true",
                   help="time the graphs at each thread count (and each CPU engine and precision --backend auto "
                        "chooses between) again, instead of reusing ENGINES/tuning.json; do it on an idle machine")
    p.add_argument("--calibrate", dest="tune", action="store_true", help=argparse.SUPPRESS)  # its old name
    p.add_argument("--profile-stages", action="store_true",
                   help="time every stage on GPU backends too (each stage is then synchronised, which slows them); "
                        "CPU backends always report per-stage milliseconds")
    check = p.add_mutually_exclusive_group()
    check.add_argument("--verify", action="store_true",
                       help="check the backend against the reference labels stored in the engines folder again, even "
                            "if this machine already passed it (the check runs by itself the first time a backend "
                            "is used with an engines folder on a machine, and after any file, driver or library changes)")
    check.add_argument("--no-verify", action="store_true",
                       help="skip the first-use check (the stats then say the labels were not verified)")
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return p


def parse_options(argv: list[str] | None = None) -> InferOptions:
    """The command line as typed options (argparse exits with its usage line on a bad flag)."""
    args = build_parser().parse_args(argv)
    return InferOptions(
        video=list(args.video), engines=args.engines, backend=args.backend, precision=args.precision,
        interval=args.interval, out=args.out,
        labels_dir=args.labels_dir, stats=args.stats, alpha=args.alpha, encoder_preset=args.encoder_preset,
        encoder_crf=args.encoder_crf, encoder_threads=args.encoder_threads, max_frames=args.max_frames,
        keyframe_net=args.keyframe_net, size=args.size, threads=args.threads, tune=args.tune,
        profile_stages=args.profile_stages, verify="force" if args.verify else "skip" if args.no_verify else "auto",
        progress=not args.no_progress, live=args.live, drop=not args.no_drop, reconnect=args.reconnect,
        duration=args.duration, segment_seconds=args.segment_seconds)


class Interrupted(Exception):
    """The run was asked to stop (SIGINT / SIGTERM)."""


class InputVideo:
    """One input video of a run: its reader, its outputs and the frames written to them so far
    (one stream of the multi-stream schedule; not a CUDA stream)."""

    def __init__(self, video: Path | str, out: Path | None, labels_dir: Path | None, codec_threads: int = 0,
                 live: bool | None = None, reconnect: int = DEFAULT_RECONNECT, log=print) -> None:
        """``live``: None: a URL or camera is live; a live source is read with ``LiveReader``."""
        from .live import DropCounter, open_source

        self.video = video
        self.out, self.labels_dir = out, labels_dir
        self.codec_threads = codec_threads
        self.outputs: list = []
        self.frames = self.keyframes = 0  # written so far
        self.drops = DropCounter()
        self.latency_ms: list[float] = []  # a live run's last LATENCY_WINDOW latencies
        self.reader, self.live = open_source(video, codec_threads, live, reconnect, log)

    def open_outputs(self, palette: np.ndarray, options: InferOptions) -> None:
        """The overlay (``options``' alpha and encoder settings) and label outputs asked for."""
        from .outputs import LabelPngs, OverlayVideo, SegmentedOverlay

        if self.out is not None:
            encoder = {"threads": options.encoder_threads or self.codec_threads, "preset": options.encoder_preset,
                       "crf": options.encoder_crf}
            if options.segment_seconds:
                self.outputs.append(SegmentedOverlay(self.out, self.reader.size, self.reader.fps, palette,
                                                     options.alpha, options.segment_seconds, **encoder))
            else:
                self.outputs.append(OverlayVideo(self.out, self.reader.size, self.reader.fps, palette, options.alpha,
                                                 **encoder))
        if self.labels_dir is not None:
            self.outputs.append(LabelPngs(self.labels_dir))

    def stats(self, max_frames: int | None) -> dict:
        r = self.reader
        return {"video": str(self.video), "video_size": list(r.size), "video_fps": float(r.fps), "frames": self.frames,
                "keyframes": self.keyframes, "expected_frames": r.expected_frames,
                "lost_frames": 0 if max_frames else r.lost_frames, "damaged_packets": r.damaged_packets,
                "size_changes": [c for c in r.size_changes if not max_frames or c["frame"] < max_frames],
                **(self.live_stats() if self.live else {"live": False})}

    def live_stats(self) -> dict:
        """What a live run adds: frames dropped when it fell behind, reconnect gaps, latency."""
        r, latency = self.reader, sorted(self.latency_ms)
        segments = [str(p) for out in self.outputs for p in getattr(out, "files", [])]
        return {"live": True, "dropped_frames": self.drops.dropped, "drops": self.drops.drops,
                "input_buffer_peak": self.drops.peak, "gaps": list(r.gaps), "source_gone": r.gone,
                "latency_ms": {"median": round(latency[len(latency) // 2], 1), "max": round(latency[-1], 1)}
                if latency else None, **({"overlay_segments": segments} if segments else {})}


def _stream_paths(args: InferOptions) -> list[tuple[Path, Path | None, Path | None]]:
    """(video, overlay path, labels folder) per input; several videos write into folders."""
    from .outputs import check_output_path

    videos = list(args.video)
    if len(videos) == 1:
        for path, what in ((args.out, "output video"), (args.labels_dir, "labels")):
            if path is not None:
                check_output_path(path, videos, what)
        return [(videos[0], args.out, args.labels_dir)]
    stems = [source_stem(v) for v in videos]
    if len(set(stems)) != len(stems):
        raise UserError("several input videos share a file name; outputs are named after the videos, so rename them")
    for folder, what in ((args.out, "--out"), (args.labels_dir, "--labels-dir")):
        if folder is not None and not folder.is_dir():
            raise UserError(f"with several videos, {what} must be an existing folder; {folder} is not")
    plan = []
    for video in videos:
        out = args.out / f"{source_stem(video)}.mp4" if args.out is not None else None
        labels = args.labels_dir / source_stem(video) if args.labels_dir is not None else None
        for path, what in ((out, "output video"), (labels, "labels")):
            if path is not None:
                check_output_path(path, videos, what)
        plan.append((video, out, labels))
    return plan


class Run:
    """One inference run over one or several videos: ``__init__`` does every check that can fail
    before an output file exists; ``process`` segments the frames; ``abort`` removes partial outputs."""

    def __init__(self, args: InferOptions, log=print, loaded: LoadedBackend | None = None) -> None:
        """``loaded``: a backend already loaded from ``args.engines`` with its first-use verdict
        (a worker or a ``Segmenter`` that segments many videos loads it once; its stage timer is
        reset so the stats cover this run); by default ``args.backend`` is selected, loaded and
        verified here."""
        from .loading import load_backend
        from .outputs import check_output_path
        from .threads import codec_threads, usable_cores

        self.args = args
        self.stop = threading.Event()  # abandon the run: outputs are removed
        self.end = threading.Event()  # end the run early with every output complete (--duration, Ctrl-C live)
        self.streams: list[InputVideo] = []
        self.writer = None
        self.verdict: Verdict | None = None
        if not args.video:
            raise UserError("no input video: pass --video PATH")
        if args.out is None and args.labels_dir is None and args.stats is None:
            raise UserError("nothing to write: pass --out OUT.mp4, --labels-dir DIR and/or --stats FILE")
        paths = _stream_paths(args)
        if args.stats is not None:
            check_output_path(args.stats, list(args.video), "stats")
        self.manifest = load_manifest(args.engines)
        check_engines_match(self.manifest, args)
        budget = args.threads or usable_cores()
        try:
            for video, out, labels in paths:
                self.streams.append(InputVideo(video, out, labels, codec_threads(budget), args.live, args.reconnect,
                                               log))
            if loaded is None:
                started = time.perf_counter()
                loaded = load_backend(args.backend, self.manifest, args.threads, args.profile_stages, args.tune,
                                      args.verify, log, args.precision, args.interval)
                self.load_seconds = time.perf_counter() - started
            else:
                folder = loaded.backend.manifest.folder
                if folder.resolve() != self.manifest.folder.resolve():
                    raise ValueError(f"the backend was loaded from {folder}, not {self.manifest.folder}")
                self.load_seconds = 0.0
                loaded.backend.timer.reset()
            self.backend, self.verdict = loaded.backend, loaded.verdict
            for stream in self.streams:
                if stream.live:  # opened before the backend was loaded: read from now on
                    stream.reader.refresh()
            log(backend_line(loaded))
            if self.manifest.data["checkpoint"].get("random_weights"):
                log("WARNING: these engines hold RANDOM weights, so the segmentation is meaningless; "
                    "rebuild them with a trained --checkpoint")
            engine_h, engine_w = self.backend.frame_size
            for stream in self.streams:
                video_h, video_w = stream.reader.size
                if (video_h, video_w) != (engine_h, engine_w):
                    name = stream.video.name if isinstance(stream.video, Path) else stream.video
                    log(f"{name}: {size_advice((video_h, video_w), (engine_h, engine_w))}")
            palette = np.asarray(self.manifest.model["palette"], dtype=np.uint8)
            for stream in self.streams:
                stream.open_outputs(palette, args)
        except BaseException:
            self.abort()
            raise

    def process(self) -> dict:
        """Segment every frame of every stream and finish the outputs; returns the stats."""
        from tqdm import tqdm

        from .pipeline import OutputWriter

        args = self.args
        limit = args.max_frames or 0
        expected = [min(x for x in (st.reader.expected_frames, limit) if x) if (st.reader.expected_frames or limit) else 0
                    for st in self.streams]
        started = time.perf_counter()
        live = self.live
        bar = tqdm(total=None if live else sum(expected) or None, unit="frame",
                   disable=None if args.progress else True, dynamic_ncols=True)
        frames = 0
        given = [0] * len(self.streams)  # frames handed to the writer, per stream
        self.writer = writer = OutputWriter(self._write)
        ticks = self._ticks()
        try:
            for tick in ticks:
                if self.stop.is_set():
                    raise Interrupted()
                for index, decoded, result in tick:
                    if limit and given[index] >= limit:
                        continue  # a live stream that drops frames stops at --max-frames segmented
                    given[index] += 1
                    writer.put(index, result.index, decoded.rgb, result.labels[0], result.keyframe, decoded.arrived)
                frames += len(tick)
                bar.update(len(tick))
                elapsed = time.perf_counter() - started
                postfix = {"fps": f"{frames / elapsed:.1f}"}
                if live:
                    postfix["latency"] = f"{(time.perf_counter() - tick[-1][1].arrived) * 1e3:.0f}ms"
                    postfix["dropped"] = str(sum(st.drops.dropped for st in self.streams))
                bar.set_postfix(postfix, refresh=False)
                if self.end.is_set() or (args.duration and elapsed >= args.duration) or (
                        live and limit and all(n >= limit for n in given)):
                    break
            writer.finish()
        except BaseException:
            writer.stop()
            raise
        finally:
            ticks.close()
            bar.close()
            for stream in self.streams:
                if stream.live:
                    stream.reader.close()
        if self.stop.is_set():
            raise Interrupted()
        wall = time.perf_counter() - started
        for stream in self.streams:
            for out in stream.outputs:
                out.close()
            stream.outputs = []
        return self._stats(wall)

    @property
    def keyframe_workers(self) -> int:
        """Keyframe steps computed ahead on their own threads (0: inline; several videos are batched instead)."""
        from .schedule.dispatch import keyframe_workers

        return keyframe_workers(self.backend, len(self.streams))

    def _ticks(self):
        """Per step of the schedule, (stream index, decoded frame, StepResult) for every stream that had a frame."""
        from .live import input_buffer
        from .pipeline import DECODE_DEPTH, engine_frames
        from .schedule.dispatch import schedule

        backend, limit, drop = self.backend, self.args.max_frames or 0, self.args.drop
        # a live run that drops frames counts --max-frames in frames segmented (process() stops it)
        sources = [input_buffer(engine_frames(st.reader, backend.frame_size, 0 if st.live and drop else limit, backend.timer),
                                st.live, drop, st.drops, DECODE_DEPTH)
                   for st in self.streams]
        try:
            yield from schedule(backend, self.args.interval, [st.reader.size for st in self.streams], sources,
                                self.keyframe_workers)
        finally:
            for source in sources:
                source.close()

    def _write(self, index: int, frame: int, rgb: np.ndarray, labels: np.ndarray, keyframe: bool,
               arrived: float = 0.0) -> None:
        """Write one frame to the outputs of stream ``index`` (on the writer thread)."""
        stream, timer = self.streams[index], self.backend.timer
        start = time.perf_counter()
        if stream.live:  # from the frame's arrival to its outputs
            stream.latency_ms.append((start - arrived) * 1e3)
            del stream.latency_ms[:-LATENCY_WINDOW]
        for out in stream.outputs:
            out.write_frame(frame, rgb, labels)
        if timer.enabled:  # no device synchronisation from this thread
            timer.add("write", (time.perf_counter() - start) * 1e3)
        stream.frames += 1
        stream.keyframes += int(keyframe)

    def _stats(self, wall: float) -> dict:
        manifest = self.manifest
        per_stream = [st.stats(self.args.max_frames) for st in self.streams]
        frames = sum(s["frames"] for s in per_stream)
        stats = {
            **(per_stream[0] if len(per_stream) == 1 else {}),
            "frames": frames, "keyframes": sum(s["keyframes"] for s in per_stream),
            "lost_frames": sum(s["lost_frames"] for s in per_stream), "interval": self.args.interval,
            "wall_seconds": round(wall, 3), "fps": round(frames / wall, 2), "load_seconds": round(self.load_seconds, 3),
            "backend": self.backend.name, "precision": self.backend.precision, "backend_detail": self.backend.describe(),
            "engine_size": list(manifest.frame_size), "keyframe_net": manifest.model["keyframe_net"],
            "engines": str(manifest.folder), "stages_ms": self.backend.timer.summary(),
            "threads": self.backend.plan.to_dict() if self.backend.plan is not None else None,
            "keyframe_workers": self.keyframe_workers,
            "verification": self.verdict.to_dict() if self.verdict is not None else None,
            "streams": per_stream, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if self.args.stats is not None:
            from .outputs import write_stats

            write_stats(self.args.stats, stats)
        return stats

    @property
    def live(self) -> bool:
        return any(st.live for st in self.streams)

    def finish_early(self) -> None:
        """End the run at the next frame with every output complete (a live run's Ctrl-C): the
        live sources stop reading and the frames already read are segmented and written."""
        self.end.set()
        for stream in self.streams:
            if stream.live:
                stream.reader.stop()

    def backend_cancel(self) -> None:
        """Ask the backend to abandon the step in flight (called from the signal handler)."""
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.cancel()

    def abort(self) -> None:
        """Remove every partial output (the writer thread is stopped first)."""
        if self.writer is not None:
            self.writer.stop()
        for stream in self.streams:
            for out in stream.outputs:
                out.abort()
            stream.outputs = []
            stream.reader.close()


def backend_line(loaded: LoadedBackend) -> str:
    """The log line naming the backend, why it was chosen and what executes it."""
    return f"backend: {loaded.backend.name} ({loaded.why}); {loaded.backend.describe()}"


def check_engines_match(manifest, args: InferOptions) -> None:
    """--keyframe-net / --size, when given, must match what the engines were built for."""
    net, size = manifest.model["keyframe_net"], tuple(manifest.frame_size)
    wrong_net = args.keyframe_net is not None and args.keyframe_net != net
    wrong_size = args.size is not None and tuple(args.size) != size
    if wrong_net or wrong_size:
        want_net = args.keyframe_net or net
        want = args.size or size
        raise UserError(f"engines in {manifest.folder} were built for {net} at {size[0]}x{size[1]}, not "
                        f"{want_net} at {want[0]}x{want[1]}; rebuild with `python -m export.build_engines "
                        f"--keyframe-net {want_net} --size {want[0]}x{want[1]} --out {manifest.folder}`")


def _multiple_of_8(n: int) -> int:
    return max(16, (n + 7) // 8 * 8)


def size_advice(video: tuple[int, int], engine: tuple[int, int]) -> str:
    """What happens to a video (H, W) that differs from the engine size, and how to avoid it."""
    best = (_multiple_of_8(video[0]), _multiple_of_8(video[1]))
    advice = ("the closest size engines can have: H and W are multiples of 8" if best == tuple(engine)
              else f"export with --size {best[0]}x{best[1]} to match")
    return (f"{video[1]}x{video[0]} is resized to the engine size {engine[1]}x{engine[0]} "
            f"and labels are resized back ({advice})")


def _summary(stats: dict) -> str:
    streams = f" from {len(stats['streams'])} videos" if len(stats["streams"]) > 1 else ""
    return (f"{stats['frames']} frames{streams} ({stats['keyframes']} keyframes) in {stats['wall_seconds']:.1f} s: "
            f"{stats['fps']:.1f} FPS on {stats['backend']}")


def main(argv: list[str] | None = None) -> int:
    """Run in a worker thread so SIGINT/SIGTERM are handled at once: outputs are removed and the
    process exits with 130/143 within about a second, even in the middle of a long step."""
    args = parse_options(argv)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    received: list[int] = []
    run: Run | None = None

    def on_signal(signum, _frame) -> None:
        received.append(signum)
        if run is not None and run.live and len(received) == 1:
            run.finish_early()  # a live run ends with every output complete; a second signal abandons it
        elif run is not None:
            run.stop.set()
            run.backend_cancel()

    previous = {s: signal.signal(s, on_signal) for s in SIGNAL_EXIT}
    try:
        try:
            run = Run(args, log)
        except USER_ERRORS as e:
            log(f"error: {e}")
            return getattr(e, "exit_code", 2)
        if received:
            run.abort()
            return SIGNAL_EXIT[signal.Signals(received[0])]
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["stats"] = run.process()
            except BaseException as e:  # reported by the main thread
                outcome["error"] = e

        worker = threading.Thread(target=work, name="segment", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
            if received and not (run.live and len(received) == 1):
                worker.join(1.0)  # let the current step finish if it can
                run.abort()
                log(f"error: stopped by {signal.Signals(received[0]).name}; partial outputs were removed")
                return SIGNAL_EXIT[signal.Signals(received[0])]
        if "error" in outcome:
            run.abort()
            err = outcome["error"]
            if isinstance(err, USER_ERRORS):
                log(f"error: {err}")
                return getattr(err, "exit_code", 2)
            if isinstance(err, Interrupted):
                return SIGNAL_EXIT[signal.Signals(received[0])] if received else 130
            raise err
        stats = outcome["stats"]
        log(_summary(stats))
        if received:
            log(f"stopped by {signal.Signals(received[0]).name}; every output is complete")
        gone = [(st, st.reader.gone) for st in run.streams if getattr(st.reader, "gone", None)]
        for st, why in gone:
            log(f"error: {st.video}: {why}; the {st.frames} frames received were segmented and written")
        if gone:
            return EXIT_LOST_FRAMES
        damaged = [s for s in stats["streams"] if s["lost_frames"]]
        for s in damaged:
            log(f"error: {s['video']} is truncated or damaged: {s['lost_frames']} of {s['expected_frames']} "
                f"announced frames could not be decoded; the {s['frames']} decodable frames were segmented and written")
        if damaged:
            return EXIT_LOST_FRAMES
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
