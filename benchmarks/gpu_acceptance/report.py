"""The acceptance report: one verdict line per check, a JSON with every figure, a PNG."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from .plan import Outcome

SYMBOL = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}


def verdict_lines(outcomes: list[Outcome]) -> list[str]:
    """'PASS  kernels-vs-cpu      12.3 s  <summary>' per check, then the overall verdict."""
    lines = [f"{SYMBOL[o.status]}  {o.name:<16} {o.seconds:6.1f} s  {o.summary}" for o in outcomes]
    lines.append(f"acceptance: {overall(outcomes)} ({sum(o.status == 'pass' for o in outcomes)} passed, "
                 f"{sum(o.status == 'fail' for o in outcomes)} failed, {sum(o.status == 'skip' for o in outcomes)} skipped)")
    return lines


def overall(outcomes: list[Outcome]) -> str:
    """FAIL if any check failed, PASS if at least one GPU check passed and none failed, else NOTHING-RUN."""
    if any(o.status == "fail" for o in outcomes):
        return "FAIL"
    return "PASS" if any(o.status == "pass" and o.name != "environment" for o in outcomes) else "NOTHING-RUN"


def slug(name: str | None) -> str:
    keep = "".join(c.lower() if c.isalnum() else "-" for c in (name or "no-gpu"))
    return "-".join(filter(None, keep.split("-")))[:40]


def write(outcomes: list[Outcome], environment: dict, out_dir: Path, command: str, day: str | None = None) -> tuple[Path, Path]:
    """``<date>-gpu-acceptance-<device>.json`` and ``.png`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    day = day or datetime.now(timezone.utc).date().isoformat()
    stem = out_dir / f"{day}-gpu-acceptance-{slug(environment.get('gpu'))}"
    data = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
            "verdict": overall(outcomes), "environment": environment, "checks": [o.to_dict() for o in outcomes]}
    json_path, png_path = stem.with_suffix(".json"), stem.with_suffix(".png")
    json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    plot(outcomes, environment, png_path)
    return json_path, png_path


def plot(outcomes: list[Outcome], environment: dict, path: Path) -> None:
    """Left: FPS vs keyframe interval per backend (the fps check); right: the verdicts."""
    import matplotlib

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
    colour = {"pass": "green", "fail": "red", "skip": "grey"}
    for i, o in enumerate(outcomes):
        text.text(0.0, 1 - (i + 1) / (len(outcomes) + 1), f"{SYMBOL[o.status]}  {o.name}: {o.summary[:70]}",
                  color=colour[o.status], fontsize=7, family="monospace", transform=text.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
