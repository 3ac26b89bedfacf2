"""python -m benchmarks.gpu_acceptance --out DIR: every GPU check in one run.

Runs, within 8 minutes on one GPU (each check has a time budget: its run time plus the estimated
time of the engines it builds; see ``plan.CHECKS`` and ``builds``): the kernels' strict build for
this GPU, the CUDA kernels against the CPU build on real intermediates of real frames, torch-cuda
end to end on real frames (labels vs the FP32 CPU reference, and its first-use verification), the
TensorRT path where TensorRT is installed (PLUGIN layers, labels vs onnxruntime), ``pytest -m gpu``
and ``benchmarks.fps`` at 1024x2048. The real frames are the 8 shipped in gsvnet/samples (no video
decoder, no data folder needed) unless --clip names a video. Prints a verdict per check and writes
everything under DIR: the report JSON (device, driver, versions, every figure, every build time)
and PNG, acceptance.log, logs/<check>.log, and the engines it builds (DIR/engines, reused by a later
run with the same DIR). Needs no network.

Exit status: 0 PASS (kernels-vs-cpu and torch-cuda-clip passed, nothing failed or ran out of
time), 1 FAIL (a check failed), 2 bad arguments, 3 NOTHING-RUN (no GPU check could run, e.g. no
usable CUDA GPU here), 4 INCOMPLETE (GPU checks passed, but not both of those two), 5 TIMEOUT (a
check ran out of time, none failed).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import checks, plan, report
from .builds import Ledger
from .context import Context


@dataclass
class AcceptanceOptions:
    """The command line's flags: ``out`` the folder for everything the run writes, ``clip`` a video
    (None: the frames shipped in gsvnet/samples), ``budget`` seconds for all checks, ``only`` the
    checks to run (empty: all)."""

    out: Path
    clip: Path | None = None
    budget: int = plan.TOTAL_BUDGET_S
    only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.clip = Path(self.clip) if self.clip is not None else None
        self.only = tuple(self.only)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_acceptance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True,
                   help="folder for everything the run writes: the report (<date>-gpu-acceptance-<gpu>.json and .png), "
                        "acceptance.log, logs/, and engines/ (built once, reused by a later run with the same --out)")
    p.add_argument("--clip", type=Path, default=None,
                   help="a video to take the real frames from (decoded with PyAV, else OpenCV); default: the 8 real "
                        "frames shipped in gsvnet/samples/road.npz")
    p.add_argument("--budget", type=int, default=plan.TOTAL_BUDGET_S,
                   help="seconds for all checks together, engine builds included (default: %(default)s)")
    p.add_argument("--only", default="", help="comma-separated checks to run (default: all); names: "
                   + ", ".join(name for name, _, _ in plan.CHECKS))
    return p


def _tee(log: Callable[[str], None], path: Path) -> Callable[[str], None]:
    """``log``, and every line appended to ``path``."""
    def both(line: str) -> None:
        log(line)
        with path.open("a") as f:
            f.write(line + "\n")

    return both


def run(options: AcceptanceOptions, log: Callable[[str], None] = print) -> int:
    """Probe, plan, run every check, write the report; returns the exit status (``report.EXIT``)."""
    started = time.monotonic()
    names = [name for name, _, _ in plan.CHECKS]
    only = options.only
    unknown = set(only) - set(names)
    if unknown:
        print(f"error: unknown check(s) {sorted(unknown)} in --only; choose from {', '.join(names)}", file=sys.stderr)
        return 2
    if options.clip is not None and not options.clip.is_file():
        print(f"error: --clip {options.clip} is not a file; omit --clip to use the real frames shipped in gsvnet/samples",
              file=sys.stderr)
        return 2
    options.out.mkdir(parents=True, exist_ok=True)
    log = _tee(log, options.out / "acceptance.log")
    machine = checks.probe(options.clip)
    env = checks.environment(machine)
    ctx = Context(options.out, options.clip, log, Ledger.scan(options.out / "engines", machine.tensorrt, machine.gpu))
    env["frames_source"] = ctx.frames_source
    if machine.gpu is None:
        from plugins.launcher import gpu_unavailable_reason

        first = plan.Outcome("environment", "skip", f"no usable CUDA GPU here ({gpu_unavailable_reason()}); run this on "
                             "a GPU machine (docs/gpu.md, 'Acceptance on a GPU machine')", figures=env)
    else:
        first = plan.Outcome("environment", "pass", f"{machine.gpu} (cc {machine.capability[0]}.{machine.capability[1]}), "
                             f"driver {env.get('driver') or '?'} (CUDA {machine.driver_cuda[0]}.{machine.driver_cuda[1]}), "
                             f"torch {env.get('torch')}, TensorRT {machine.tensorrt or 'none'}", figures=env)
    outcomes = [first]
    log(report.verdict_lines(outcomes)[0])
    for _ in names[1:]:  # re-planned before each check: the time actually left, the build times measured so far
        left = max(0, int(options.budget - (time.monotonic() - started)))
        check = plan.plan(machine, left, only, ctx.ledger, done=tuple(o.name for o in outcomes))[0]
        if check.skip is None:
            log(f"{check.name}: up to {check.limit} s ({check.budget_s} s planned"
                + (f", {check.build_s} s of it building" if check.build_s else "") + ") ...")
        outcome = checks.run(check, ctx, machine)
        outcomes.append(outcome)
        log(report.verdict_lines([outcome])[0])
    total = round(time.monotonic() - started, 1)
    env["total_seconds"] = total
    command = " ".join(["python", "-m", "benchmarks.gpu_acceptance", *sys.argv[1:]])
    json_path, png_path = report.write(outcomes, env, options.out, command, builds=ctx.ledger.records)
    verdict = report.overall(outcomes)
    log(report.verdict_lines(outcomes)[-1] + f" in {total} s (budget {options.budget} s); exit status {report.EXIT[verdict]}")
    log(f"wrote {json_path}" + (f" and {png_path}" if png_path else " (no PNG: matplotlib is not installed)"))
    return report.EXIT[verdict]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    only = tuple(n.strip() for n in args.only.split(",") if n.strip())
    return run(AcceptanceOptions(out=args.out, clip=args.clip, budget=args.budget, only=only))


if __name__ == "__main__":
    sys.exit(main())
