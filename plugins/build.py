"""python -m plugins.build: compile every CUDA kernel for the given architectures, strictly.

Each architecture is built by the first installed toolchain that targets it (``--toolchain``):
the CUDA toolkit's nvcc (CUDA 13: sm_75 and newer; also compiles the host launchers, with the
host compiler's warnings as errors), else NVRTC + ptxas from the CUDA 12 wheels (sm_50 and newer,
so Pascal's sm_61; ``pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12``). Every warning is
an error, spills and local memory included. Prints one line per kernel (registers, spills,
stack, static shared memory) and a verdict per architecture; ``--table`` prints the README's
register table. Exit status: 0 all built, 1 a compile error (its log is printed), 2 bad
arguments or no toolchain for an architecture (one line saying what to install). Only this
command (and CI) is strict: the kernels built at run time (torch-cuda, TensorRT plugins) keep
warnings in the log and fall back to the other toolchain when one fails (plugins.toolchain).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from plugins import nvcc, toolchain

DEFAULT_ARCHS = ("sm_61", "sm_75", "sm_86", "sm_90")


def parse_archs(text: str) -> list[str]:
    """'sm_61,sm_75' -> ['sm_61', 'sm_75'] (also '61,75'); ArgumentTypeError on anything else."""
    archs = []
    for piece in (p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"(?:sm_)?(\d{2,3})", piece)
        if not match:
            raise argparse.ArgumentTypeError(f"architecture {piece!r} is not like sm_86 (comma-separated, e.g. "
                                             f"--arch {','.join(DEFAULT_ARCHS)})")
        archs.append(f"sm_{match.group(1)}")
    if not archs:
        raise argparse.ArgumentTypeError("no architecture given (e.g. --arch sm_61,sm_86)")
    return archs


def parse_ptx(text: str) -> str | None:
    """'compute_75' (also '75') -> 'compute_75', 'none' -> None; ArgumentTypeError on anything else."""
    if text.strip().lower() == "none":
        return None
    match = re.fullmatch(r"(?:compute_)?(\d{2,3})", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"PTX target {text!r} is not like {nvcc.DEFAULT_PTX_ARCH} (or 'none' to skip it)")
    return f"compute_{match.group(1)}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m plugins.build", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", type=parse_archs, default=list(DEFAULT_ARCHS), metavar="LIST",
                   help="comma-separated real architectures, e.g. sm_61,sm_75,sm_86,sm_90")
    p.add_argument("--toolchain", choices=("auto", "nvcc", "nvrtc-cu12"), default="auto",
                   help="auto: nvcc where it targets the architecture, else the CUDA 12 wheels")
    p.add_argument("--ptx", type=parse_ptx, default=nvcc.DEFAULT_PTX_ARCH, metavar="compute_XY",
                   help="also build this PTX target (what TensorRT AOT plugins embed); 'none' skips it")
    p.add_argument("--table", action="store_true", help="print a markdown table of registers per kernel and architecture")
    return p


def plan(archs: list[str], installed: list[toolchain.Toolchain], choice: str) -> dict[str, toolchain.Toolchain]:
    """Architecture -> the toolchain that builds it; ValueError (one line) when none can."""
    pool = [t for t in installed if choice in ("auto", t.name)]
    chosen = {}
    for arch in archs:
        tool = toolchain.for_arch(arch, pool)
        if tool is None:
            if choice != "auto" and not pool:
                raise ValueError(f"--toolchain {choice} is not installed here; installed: "
                                 f"{', '.join(t.describe() for t in installed) or 'none'} ({toolchain.nvrtc.INSTALL_HINT})")
            if choice != "auto":
                raise ValueError(f"--toolchain {choice} ({pool[0].describe()}) does not target {arch}; use --toolchain auto")
            raise ValueError(toolchain.missing_reason(arch, pool))
        chosen[arch] = tool
    return chosen


def table(rows: list[nvcc.KernelResources]) -> str:
    """Markdown: one row per kernel, registers per architecture, then spills / stack / smem."""
    archs = sorted({r.arch for r in rows}, key=toolchain.arch_number)
    kernels = sorted({r.kernel for r in rows})
    by = {(r.kernel, r.arch): r for r in rows}
    lines = ["| kernel | " + " | ".join(archs) + " | spills | stack | static smem (B) |",
             "|---|" + "---|" * (len(archs) + 3)]
    for k in kernels:
        found = [by[(k, a)] for a in archs if (k, a) in by]
        regs = [str(by[(k, a)].registers) if (k, a) in by else "-" for a in archs]
        spills = max(r.spill_stores + r.spill_loads for r in found)
        stack = max(r.stack_bytes for r in found)
        smem = max(r.shared_bytes for r in found)
        lines.append(f"| `{k}` | " + " | ".join(regs) + f" | {spills} | {stack} | {smem} |")
    return "\n".join(lines)


def run(args: argparse.Namespace, out: Path, log=print) -> int:
    installed = toolchain.available()
    chosen = plan(args.arch, installed, args.toolchain)
    ptx_tool = None if args.ptx is None else plan([args.ptx], installed, args.toolchain)[args.ptx]
    failed, rows = [], []
    for arch, tool in chosen.items():
        for name, source in nvcc.SOURCES.items():
            kind = "obj" if tool.name == "nvcc" else "cubin"  # nvcc: host launchers too
            result = tool.compile(source, arch, out / arch, kind=kind, strict=True)
            if not result.ok:
                failed.append(f"{name} {arch}")
                log(f"FAILED {name} for {arch} with {tool.describe()}:\n{result.log}")
                continue
            for r in result.resources:
                log(f"  {arch:<7} {r.kernel:<34} {r.registers:>3} registers  spills {r.spill_stores}/{r.spill_loads} B  "
                    f"stack {r.stack_bytes} B  smem {r.shared_bytes} B")
            rows += result.resources
        log(f"{arch}: {'FAILED' if any(f.endswith(arch) for f in failed) else 'ok'} ({tool.describe()})")
    if ptx_tool is not None:
        for name, source in nvcc.SOURCES.items():
            result = ptx_tool.compile(source, args.ptx, out / args.ptx, kind="ptx", strict=True)
            if not result.ok:
                failed.append(f"{name} {args.ptx}")
                log(f"FAILED {name} PTX {args.ptx} with {ptx_tool.describe()}:\n{result.log}")
        log(f"{args.ptx} PTX: {'FAILED' if any(f.endswith(args.ptx) for f in failed) else 'ok'} ({ptx_tool.describe()})")
    if args.table and rows:
        log(table(rows))
    log(f"plugins.build: {'FAILED: ' + ', '.join(failed) if failed else 'all kernels built'}, strict warnings, no spills")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="gsvnet-plugins-build-") as tmp:
            return run(args, Path(tmp))
    except (ValueError, toolchain.ToolchainError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
