"""python -m runtime.fleet: segment many videos on a Ray cluster (see runtime/fleet/__init__.py)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from ..arguments import alpha_value, non_negative_float, non_negative_int, positive_float, positive_int
from ..infer import DEFAULT_ENGINES, SIGNAL_EXIT, USER_ERRORS
from .job import FleetJob
from .options import FleetOptions
from .scheduler import FleetEvent


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends each default, except where the help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False) or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action) or text


def build_parser() -> argparse.ArgumentParser:
    from ..backends import CHOICES

    p = argparse.ArgumentParser(
        prog="python -m runtime.fleet",
        description="Segment many videos on a Ray cluster: one worker per GPU (or per --cpus-per-worker cores on "
                    "CPU machines) loads the engines once and segments whole videos, exactly as runtime.infer does. "
                    "Each video's outputs go to OUT_DIR/<video name>/ (overlay.mp4, labels/, stats.json), and "
                    "OUT_DIR/summary.json lists every video. A rerun skips videos whose outputs are complete.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--videos", nargs="+", required=True, metavar="PATH_OR_GLOB",
                   help="video files and/or glob patterns (quote them; ** matches sub-folders); outputs are named "
                        "after the files, so two videos may not share a name")
    p.add_argument("--engines", type=Path, default=DEFAULT_ENGINES,
                   help="engines folder written by export.build_engines (the same path on every node)")
    p.add_argument("--out-dir", type=Path, required=True,
                   help="folder for the outputs (created if its parent exists; the same path on every node)")
    p.add_argument("--overlay", action="store_true", help="write OUT_DIR/<video>/overlay.mp4 (labels blended on the video)")
    p.add_argument("--labels", action="store_true",
                   help="write OUT_DIR/<video>/labels/ with one uint8 PNG of class ids per frame "
                        "(without --overlay and --labels only stats.json is written)")
    p.add_argument("--interval", type=positive_int, default=4, help="keyframe interval l: keyframes at frames 0, l, 2l, ...")
    p.add_argument("--alpha", type=alpha_value, default=0.5, help="overlay opacity of the label colours")
    p.add_argument("--backend", choices=CHOICES, default="auto",
                   help="backend of every worker; auto picks, on each node, tensorrt > torch-cuda > onnxruntime-cuda > "
                        "onnxruntime, and a worker whose node cannot run the requested one refuses with the reason")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join: auto (the one started with `ray start` on this machine), HOST:PORT, or "
                        "ray://HOST:10001 (Ray client); default: start a local cluster sized to this machine")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="number of workers (default: as many as the cluster's GPUs, or CPUs, allow)")
    p.add_argument("--gpus-per-worker", type=non_negative_float, default=None,
                   help="GPUs each worker reserves, fractions allowed (default: 1 if the cluster has GPUs, else 0)")
    p.add_argument("--cpus-per-worker", type=positive_float, default=1.0,
                   help="CPU cores each worker reserves; CPU backends use that many threads")
    p.add_argument("--retries", type=non_negative_int, default=2,
                   help="times a video is retried after its worker died (a video's own errors are not retried); "
                        "also how many times each worker is replaced")
    p.add_argument("--redo", action="store_true", help="segment every video again, even those whose outputs are complete")
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return p


def parse_options(argv: list[str] | None = None) -> FleetOptions:
    """The command line as typed options (argparse exits with its usage line on a bad flag)."""
    args = vars(build_parser().parse_args(argv))
    return FleetOptions(**{k: v for k, v in args.items() if k != "no_progress"}, progress=not args["no_progress"])


def main(argv: list[str] | None = None, on_event: Callable[[FleetEvent], None] | None = None) -> int:
    """Exit status: 0 all complete, 2 bad input (nothing written), 3 some videos damaged, 4 some
    videos failed (the others complete), 130 / 143 stopped by SIGINT / SIGTERM."""
    from tqdm import tqdm

    options = parse_options(argv)
    log = lambda msg: tqdm.write(msg, file=sys.stderr)  # noqa: E731  (keeps the bar intact)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in SIGNAL_EXIT}

    def install() -> None:
        for s in SIGNAL_EXIT:
            signal.signal(s, on_signal)

    job = FleetJob(options, stop, log, on_event, on_connect=install)
    try:
        try:
            status = job.run()
        except USER_ERRORS as e:
            job.close()
            log(f"error: {e}")
            return getattr(e, "exit_code", 2)
        if status is None or received:
            log(f"error: stopped by {signal.Signals(received[0]).name if received else 'request'}; finished videos "
                "are kept, partial outputs were removed; rerun the same command to finish the rest")
            return SIGNAL_EXIT[signal.Signals(received[0])] if received else 130
        return status
    finally:
        job.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
