"""Carry a keyframe training run from one machine to the next, through the repository.

    python -m training.carry pack   --run runs/keyframe --to training/in_progress/keyframe
    git add training/in_progress/keyframe && git commit -m "keyframe run in progress: epoch N"
    # on the next machine, after git pull:
    python -m training.carry unpack --from training/in_progress/keyframe --run runs/keyframe
    python -m training.keyframe --out runs/keyframe --resume ...the same flags...
    # when the run has finished and its weights are shipped:
    git rm -r training/in_progress/keyframe

``runs/`` is not in git, and a run's ``last.pt`` (weights, AdamW moments, counters, history,
torch RNG) is ~140 MB. The packed form keeps what a resume needs, compactly:
- the weights in float32 (exact), the schedule position, history, arguments and RNG (exact);
- the optimiser moments in bfloat16 (a relative rounding of 2^-8: the continued run is
  statistically the same as an uninterrupted one, not bit-identical; a resume from ``last.pt``
  on the same machine stays bit-exact);
- the best checkpoint so far (``best.pt``) in float16, as shipped weights are stored;
split into parts of at most ``--part-mb`` (git hosts refuse files over 100 MB), with a manifest
of sha256 sums that ``unpack`` verifies before writing anything.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from gsvnet.checkpoint import atomic_torch_save

MANIFEST = "carry.json"
STATE_NAME, BEST_NAME = "last.pt", "best.pt"


def _compact_state(state: dict) -> dict:
    """last.pt with the optimiser moments in bfloat16."""
    optimizer = dict(state["optimizer"])
    optimizer["state"] = {k: {n: (v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 0 else v)
                              for n, v in s.items()} for k, s in optimizer["state"].items()}
    return {**state, "optimizer": optimizer}


def _expanded_state(state: dict) -> dict:
    optimizer = dict(state["optimizer"])
    optimizer["state"] = {k: {n: (v.float() if torch.is_tensor(v) and v.dtype == torch.bfloat16 else v) for n, v in s.items()}
                          for k, s in optimizer["state"].items()}
    return {**state, "optimizer": optimizer}


def _half_checkpoint(payload: dict) -> dict:
    return {**payload, "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}}


def pack(run: Path, to: Path, part_mb: float = 45.0) -> dict:
    """Write the compact form of ``run`` into ``to`` (parts + manifest); returns the manifest."""
    state_path = run / STATE_NAME
    if not state_path.is_file():
        raise SystemExit(f"error: {state_path} not found: pack a training.keyframe output folder (--out)")
    blob = io.BytesIO()
    payload = {"state": _compact_state(torch.load(state_path, map_location="cpu", weights_only=False))}
    if (run / BEST_NAME).is_file():
        payload["best"] = _half_checkpoint(torch.load(run / BEST_NAME, map_location="cpu", weights_only=True))
    torch.save(payload, blob)
    data = blob.getvalue()
    size = max(1, int(part_mb * 2**20))
    to.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{to.name}.", dir=to.parent))
    try:
        parts = []
        for i in range(0, len(data), size):
            name = f"part-{i // size:03d}"
            (staging / name).write_bytes(data[i : i + size])
            parts.append({"file": name, "sha256": hashlib.sha256(data[i : i + size]).hexdigest()})
        state = payload["state"]
        manifest = {"format": "gsvnet-training-carry", "version": 1, "parts": parts, "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data), "epoch": state["epoch"], "step": state["step"], "best": state["best"],
                    "args": state["args"]}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        # swap the complete new folder in: an interrupted pack leaves the previous one intact
        old = to.with_name(f".{to.name}.old") if to.exists() else None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            to.rename(old)
        staging.rename(to)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def unpack(source: Path, run: Path) -> dict:
    """Verify the parts in ``source`` and write ``run``/last.pt (and best.pt); returns the manifest."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {source / MANIFEST} is missing or unreadable ({e}); pass the folder `pack` wrote") from None
    chunks = []
    for part in manifest["parts"]:
        path = source / part["file"]
        if not path.is_file():
            raise SystemExit(f"error: {path} is missing; the carried state is incomplete (pull again or re-pack)")
        chunk = path.read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise SystemExit(f"error: {path} does not match its sha256 in {MANIFEST}; the carried state is corrupt")
        chunks.append(chunk)
    data = b"".join(chunks)
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise SystemExit(f"error: the parts in {source} do not join to the packed state; re-pack it")
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)  # tensors and plain data only
    atomic_torch_save(_expanded_state(payload["state"]), run / STATE_NAME)
    if "best" in payload:
        atomic_torch_save(payload["best"], run / BEST_NAME)
    (run / "history.json").write_text(json.dumps(payload["state"]["history"], indent=1))
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.carry", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="compact a run's state into a folder to commit")
    a.add_argument("--run", type=Path, default=Path("runs/keyframe"), help="training.keyframe --out folder (default: %(default)s)")
    a.add_argument("--to", type=Path, default=Path("training/in_progress/keyframe"), help="folder to write (default: %(default)s)")
    a.add_argument("--part-mb", type=float, default=45.0, help="largest part file in MB (default: %(default)s)")
    b = sub.add_parser("unpack", help="restore a run's state from a packed folder")
    b.add_argument("--from", dest="source", type=Path, default=Path("training/in_progress/keyframe"),
                   help="folder written by pack (default: %(default)s)")
    b.add_argument("--run", type=Path, default=Path("runs/keyframe"), help="training.keyframe --out folder to restore (default: %(default)s)")
    args = p.parse_args(argv)
    if args.command == "pack":
        m = pack(args.run, args.to, args.part_mb)
        print(f"packed epoch {m['epoch']} (step {m['step']}, best val mIoU {m['best']:.4f}) into {len(m['parts'])} part(s), "
              f"{m['bytes'] / 2**20:.1f} MB, in {args.to}")
    else:
        m = unpack(args.source, args.run)
        print(f"restored epoch {m['epoch']} (step {m['step']}) into {args.run}; continue with "
              f"python -m training.keyframe --out {args.run} --resume (same recipe flags)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
