"""python -m benchmarks.gpu_acceptance --out benchmarks/results/: every GPU check in one run.

Runs, within 8 minutes on one GPU (each check has a time budget; see ``plan.CHECKS``): the
kernels' strict build for this GPU, the CUDA kernels against the CPU build on real intermediates
of the clip, torch-cuda end to end on the clip (labels vs the FP32 CPU reference), the TensorRT
path where TensorRT is installed (PLUGIN layers, labels vs onnxruntime), ``pytest -m gpu`` and
``benchmarks.fps`` at 1024x2048. Prints a verdict per check and writes one JSON (device, driver,
versions, every figure) and one PNG into --out. Needs no network. Exit status: 0 all run checks
passed, 1 a check failed (or none could run), 2 no usable CUDA GPU here (one line, nothing written).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from . import checks, plan, report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_acceptance", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the JSON and PNG (e.g. benchmarks/results/)")
    p.add_argument("--clip", type=Path, default=checks.CLIP, help="the real clip")
    p.add_argument("--work", type=Path, default=None,
                   help="folder for engines built on the way (default: a temporary folder, removed afterwards)")
    p.add_argument("--budget", type=int, default=plan.TOTAL_BUDGET_S, help="seconds for all checks together")
    p.add_argument("--only", default="", help="comma-separated checks to run (default: all); names: "
                   + ", ".join(name for name, _, _ in plan.CHECKS))
    return p


def run(args: argparse.Namespace, log=print) -> int:
    started = time.perf_counter()
    machine = checks.probe(args.clip)
    if machine.gpu is None:
        from plugins.launcher import gpu_unavailable_reason

        print(f"error: no usable CUDA GPU here ({gpu_unavailable_reason()}); run this on a GPU machine "
              "(docs/gpu.md, 'Acceptance on a GPU machine')", file=sys.stderr)
        return 2
    only = tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = set(only) - {name for name, _, _ in plan.CHECKS}
    if unknown:
        print(f"error: unknown check(s) {sorted(unknown)} in --only; choose from "
              f"{', '.join(name for name, _, _ in plan.CHECKS)}", file=sys.stderr)
        return 2
    env = checks.environment(machine)
    planned = plan.plan(machine, args.budget, only)
    outcomes = [plan.Outcome("environment", "pass", f"{machine.gpu} (cc {machine.capability[0]}.{machine.capability[1]}), "
                             f"driver {env.get('driver') or '?'} (CUDA {machine.driver_cuda[0]}.{machine.driver_cuda[1]}), "
                             f"torch {env.get('torch')}, TensorRT {machine.tensorrt or 'none'}", figures=env)]
    log(report.verdict_lines(outcomes)[0])
    with tempfile.TemporaryDirectory(prefix="gsvnet-acceptance-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ctx = checks.Context(args.clip, work, log)
        for check in planned[1:]:
            outcome = checks.run(check, ctx, machine)
            outcomes.append(outcome)
            log(report.verdict_lines([outcome])[0])
    total = round(time.perf_counter() - started, 1)
    env["total_seconds"] = total
    json_path, png_path = report.write(outcomes, env, args.out, " ".join(["python", "-m", "benchmarks.gpu_acceptance", *sys.argv[1:]]))
    log(report.verdict_lines(outcomes)[-1] + f" in {total} s (budget {args.budget} s)")
    log(f"wrote {json_path} and {png_path}")
    return 0 if report.overall(outcomes) == "PASS" else 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
