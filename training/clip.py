"""A video clip prepared for propagation training: everything on the 1/8 grid.

The keyframe net is frozen, so its scores on every frame are computed once and cached; the
propagation nets only ever see 1/8-grid tensors, which makes end-to-end training cheap on CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from gsvnet import GSVNet
from gsvnet.model import grid_size

from .flow_targets import dis_flow

#: uint8 frames [N,H,W,3] -> a float tensor [N,...] on the CPU (the 1/8 frames, the scores)
FrameFunction = Callable[[np.ndarray], torch.Tensor]


@dataclass
class PreparedClip:
    small: torch.Tensor  # [T,3,h,w] normalised 1/8 frames (GSVNet.downsample)
    scores: torch.Tensor  # [T,C,h,w] frozen keyframe net scores on the 1/8 grid
    flow_forward: torch.Tensor  # [T,2,h,w] DIS flow t -> t-1 (grid pixels; zero at t=0)
    flow_reverse: torch.Tensor  # [T,2,h,w] DIS flow t -> t+1 (zero at the last frame)

    @property
    def teacher(self) -> torch.Tensor:
        """[T,h,w] int64: the keyframe net's own label on every frame (the distillation target)."""
        return self.scores.argmax(dim=1)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "PreparedClip":
        return PreparedClip(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def frames(self, index: range) -> "PreparedClip":
        """The frames ``index`` (a contiguous range) of every tensor."""
        return self._map(lambda t: t[index.start : index.stop])


def keyframe_scores(model: GSVNet, frames: np.ndarray, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(small [T,3,h,w], scores [T,C,h,w]) of uint8 frames [T,H,W,3] with the model's keyframe path
    (run on the model's device, returned on the CPU)."""
    smalls, scores = [], []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch])).to(model.mean.device)
            smalls.append(model.downsample(x).cpu())
            scores.append(model.keyframe_scores(x).cpu())
    return torch.cat(smalls), torch.cat(scores)


#: the tensors a prepared clip keeps, in the order of PreparedClip's fields
PARTS = ("small", "scores", "flow_forward", "flow_reverse")


class _ClipWriter:
    """Appends each part's frames to a raw float32 file in a staging folder as they are computed,
    so a prepared clip is never held in memory whole; ``finish`` writes meta.json and renames the
    folder to its final name (no half-written cache is ever taken for a complete one)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.staging = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
        self.files: dict = {}
        self.shapes: dict[str, list[int]] = {}
        self.frames = dict.fromkeys(PARTS, 0)
        with self._disk():
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir(parents=True)
            self.files = {part: open(self.staging / f"{part}.f32", "wb", buffering=0) for part in PARTS}

    @contextlib.contextmanager
    def _disk(self) -> Iterator[None]:
        """A write that fails (disk full, no permission) ends the run in one line naming the folder."""
        try:
            yield
        except OSError as e:
            raise SystemExit(f"error: cannot write the prepared clip to {self.folder} ({e.strerror or e}); free space "
                             "there or pass --cache-dir on another disk") from None

    def add(self, part: str, values: torch.Tensor | np.ndarray) -> None:
        """Frames [n,...] of one part."""
        array = np.ascontiguousarray(values.numpy() if isinstance(values, torch.Tensor) else values, np.float32)
        shape = list(array.shape[1:])
        if self.shapes.setdefault(part, shape) != shape:
            raise ValueError(f"{part} frames changed shape from {self.shapes[part]} to {shape}")
        view = memoryview(array).cast("B")
        with self._disk():
            while view:  # an unbuffered file may take less than asked
                view = view[self.files[part].write(view):]
        self.frames[part] += len(array)

    def finish(self, key: dict) -> Path:
        counts = set(self.frames.values())
        if len(counts) != 1:
            raise RuntimeError(f"prepared parts have different frame counts: {self.frames}")
        meta = {"key": key, "frames": counts.pop(), "shapes": self.shapes, "dtype": "float32"}
        with self._disk():
            for f in self.files.values():
                os.fsync(f.fileno())
                f.close()
            (self.staging / "meta.json").write_text(json.dumps(meta))
            if self.folder.exists():
                shutil.rmtree(self.folder)  # an older preparation under another key
            self.staging.rename(self.folder)
        return self.folder

    def discard(self) -> None:
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.staging, ignore_errors=True)


def _map_clip(folder: Path, key: dict | None) -> PreparedClip | None:
    """The clip stored in ``folder``, memory-mapped (pages are read as training touches them; the
    tensors are copy-on-write, never written back), or None if it is absent, incomplete or was
    prepared under another key (``key`` None: any key)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if key is not None and meta.get("key") != key:
        return None
    parts = {}
    for part in PARTS:
        shape = (meta["frames"], *meta["shapes"][part])
        path = folder / f"{part}.f32"
        if not path.is_file() or path.stat().st_size != 4 * int(np.prod(shape)):
            return None
        parts[part] = torch.from_numpy(np.memmap(path, dtype=np.float32, mode="c", shape=shape))
    return PreparedClip(**parts)


def prepare_clip(video: str | Path, size: tuple[int, int], downsample: FrameFunction, scores: FrameFunction,
                 cache: Path | None, key: dict, limit: int | None = None, batch: int = 4) -> PreparedClip:
    """``video``'s 1/8 frames, ``scores`` of every frame and the DIS flows between neighbours,
    decoded once and streamed ``batch`` frames at a time. Only the 1/8-grid tensors are kept (about
    0.5 MB a frame at 544x960 with 11 classes: ~54 GB for an hour at 30 FPS), and they go to disk as
    they are computed: the folder ``cache`` (meta.json and one raw file per tensor), reused while
    ``key`` is the same, and memory-mapped, so neither preparing nor training holds a long video
    in memory. Without ``cache`` they go to a temporary folder that is deleted at once (the mapped
    data stays readable until the clip is dropped)."""
    from evaluation.clips import iter_video

    if cache is not None:
        cached = _map_clip(cache, key)
        if cached is not None:
            print(f"using the clip's scores and flows cached in {cache}", flush=True)
            return cached
    temporary = Path(tempfile.mkdtemp(prefix="gsvnet-clip-")) if cache is None else None
    writer = _ClipWriter(cache if cache is not None else temporary / "clip")
    started, grid = time.time(), grid_size(size)
    pending: list[np.ndarray] = []
    previous = None

    def flush() -> None:
        chunk = np.stack(pending)
        writer.add("small", downsample(chunk))
        writer.add("scores", scores(chunk))
        pending.clear()

    try:
        with torch.inference_mode():
            for frame in iter_video(video, size, limit):
                if previous is None:
                    writer.add("flow_forward", np.zeros((1, 2, *grid), np.float32))
                else:
                    writer.add("flow_forward", dis_flow(frame, previous, grid)[None])
                    writer.add("flow_reverse", dis_flow(previous, frame, grid)[None])
                pending.append(frame)
                previous = frame
                if len(pending) == batch:
                    flush()
            if pending:
                flush()
        if previous is None:
            raise ValueError(f"{video} has no frames")
        writer.add("flow_reverse", np.zeros((1, 2, *grid), np.float32))
        clip = _map_clip(writer.finish(key), None)
    except BaseException:
        writer.discard()
        raise
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    assert clip is not None
    print(f"prepared {len(clip.small)} frames of {video} at {size[0]}x{size[1]} in {time.time() - started:.0f} s"
          + (f" (cached in {cache})" if cache is not None else ""), flush=True)
    return clip


def sample_sequences(clip: PreparedClip, starts: np.ndarray, length: int, reverse: np.ndarray, flip: np.ndarray,
                     crop: tuple[int, int] | None, rng: np.random.Generator,
                     strides: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """A batch of ``length``+1 frames per start index (keyframe first), consecutive or, with
    ``strides[b]`` > 1, every strides[b]-th frame (a lower frame rate: larger motion per step).

    reverse[b] plays the sequence backwards (starting at starts[b] + length; the propagation trainer
    plays forward only, as the deployed pipeline does), flip[b] mirrors it
    horizontally; crop takes one random (h, w) window per sequence. Returns
    small [B,L+1,3,h,w], scores [B,L+1,C,h,w], flow [B,L+1,2,h,w] (flow[:,i] = i -> i-1, DIS),
    teacher [B,L+1,h,w]; the DIS flow is between consecutive frames, so a sequence with a stride
    above 1 has NaN flow (it must not be used as a target).
    """
    out: dict[str, list[torch.Tensor]] = {"small": [], "scores": [], "flow": [], "teacher": []}
    h, w = clip.small.shape[-2:]
    for b, start in enumerate(starts):
        stride = 1 if strides is None else int(strides[b])
        idx = np.arange(start, start + stride * length + 1, stride)
        flows = clip.flow_forward
        if reverse[b]:
            idx = idx[::-1].copy()
            flows = clip.flow_reverse
        items = {"small": clip.small[idx], "scores": clip.scores[idx], "flow": flows[idx].clone()}
        items["flow"][0] = 0.0  # the keyframe has no predecessor in the sequence
        if stride > 1:
            items["flow"].fill_(float("nan"))
        if flip[b]:
            items = {k: v.flip(-1) for k, v in items.items()}
            items["flow"][:, 0] = -items["flow"][:, 0]
        if crop is not None:
            ch, cw = min(crop[0], h), min(crop[1], w)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            items = {k: v[..., y : y + ch, x : x + cw] for k, v in items.items()}
        items["teacher"] = items["scores"].argmax(dim=1)
        for k, v in items.items():
            out[k].append(v)
    return {k: torch.stack(v) for k, v in out.items()}
