"""The acceptance report: one verdict line per check, a JSON with every figure, a PNG."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from .plan import REQUIRED, Outcome

SYMBOL = {"pass": "PASS", "fail": "FAIL", "timeout": "TIMEOUT", "skip": "SKIP"}
#: the exit status of ``python -m benchmarks.gpu_acceptance`` for each overall verdict (2: bad arguments)
EXIT = {"PASS": 0, "FAIL": 1, "NOTHING-RUN": 3, "INCOMPLETE": 4, "TIMEOUT": 5}


def verdict_lines(outcomes: list[Outcome]) -> list[str]:
    """'PASS     kernels-vs-cpu     12.3 s  <summary>' per check, then the overall verdict."""
    lines = [f"{SYMBOL[o.status]:<7}  {o.name:<16} {o.seconds:6.1f} s  {o.summary}" for o in outcomes]
    count = {s: sum(o.status == s for o in outcomes) for s in SYMBOL}
    lines.append(f"acceptance: {overall(outcomes)} ({count['pass']} passed, {count['fail']} failed, "
                 f"{count['timeout']} timed out, {count['skip']} skipped){_why(outcomes)}")
    return lines


def overall(outcomes: list[Outcome]) -> str:
    """FAIL: a check failed. TIMEOUT: none failed, one ran out of time. PASS: neither, and the GPU
    kernels against the CPU reference (kernels-vs-cpu) and torch-cuda end to end (torch-cuda-clip)
    both ran and passed. INCOMPLETE: some GPU check passed, but not both of those. NOTHING-RUN: no
    GPU check ran (e.g. no usable GPU)."""
    if any(o.status == "fail" for o in outcomes):
        return "FAIL"
    if any(o.status == "timeout" for o in outcomes):
        return "TIMEOUT"
    status = {o.name: o.status for o in outcomes}
    if all(status.get(name) == "pass" for name in REQUIRED):
        return "PASS"
    return "INCOMPLETE" if any(o.status == "pass" and o.name != "environment" for o in outcomes) else "NOTHING-RUN"


def _why(outcomes: list[Outcome]) -> str:
    verdict = overall(outcomes)
    if verdict == "NOTHING-RUN":
        return ": no GPU check could run"
    if verdict == "INCOMPLETE":
        missing = [o for o in outcomes if o.name in REQUIRED and o.status != "pass"]
        named = "; ".join(f"{o.name} {o.status}: {o.summary}" for o in missing) or ", ".join(REQUIRED) + " not run"
        return f": PASS needs {' and '.join(REQUIRED)} to pass ({named})"
    if verdict == "TIMEOUT":
        return ": " + ", ".join(o.name for o in outcomes if o.status == "timeout") + " ran out of time (not a verdict on the code)"
    return ""


def slug(name: str | None) -> str:
    keep = "".join(c.lower() if c.isalnum() else "-" for c in (name or "no-gpu"))
    return "-".join(filter(None, keep.split("-")))[:40]


def write(outcomes: list[Outcome], environment: dict, out_dir: Path, command: str, day: str | None = None,
          builds: list[dict] | tuple = ()) -> tuple[Path, Path | None]:
    """``<date>-gpu-acceptance-<device>.json`` and ``.png`` in ``out_dir``; returns their paths (the
    PNG's None where matplotlib is not installed). builds: the engine builds and their times."""
    out_dir.mkdir(parents=True, exist_ok=True)
    day = day or datetime.now(timezone.utc).date().isoformat()
    stem = out_dir / f"{day}-gpu-acceptance-{slug(environment.get('gpu'))}"
    verdict = overall(outcomes)
    data = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
            "verdict": verdict, "exit_status": EXIT[verdict], "environment": environment,
            "checks": [o.to_dict() for o in outcomes], "builds": list(builds)}
    json_path, png_path = stem.with_suffix(".json"), stem.with_suffix(".png")
    json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return json_path, png_path if plot(outcomes, environment, png_path) else None


def plot(outcomes: list[Outcome], environment: dict, path: Path) -> bool:
    """Left: FPS vs keyframe interval per backend (the fps check); right: the verdicts. False
    (nothing written) where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, text) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    fps = next((o.figures.get("end_to_end_fps") for o in outcomes if o.name == "fps"), None)
    if fps:
        for backend, per_l in fps.items():
            ls = sorted(int(l) for l in per_l)
            ax.plot(ls, [per_l[str(l)] for l in ls], marker="o", label=backend)
        ax.set_xlabel("keyframe interval l")
        ax.set_ylabel("frames per second (median)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no FPS measured", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(f"{environment.get('gpu') or 'no GPU'}; driver {environment.get('driver') or '?'}", fontsize=8)
    text.set_axis_off()
    colour = {"pass": "green", "fail": "red", "timeout": "darkorange", "skip": "grey"}
    for i, o in enumerate(outcomes):
        text.text(0.0, 1 - (i + 1) / (len(outcomes) + 1), f"{SYMBOL[o.status]}  {o.name}: {o.summary[:70]}",
                  color=colour[o.status], fontsize=7, family="monospace", transform=text.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
