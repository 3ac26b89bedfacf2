"""``python -m training.propagation --teacher-onnx MODEL.onnx --videos ...``: distil the flow, intra
and guiding nets for a user's own segmenter on unlabelled video.

The teacher is the user's model wrapped exactly as ``build_engines --keyframe-onnx`` wraps it
(``export.keyframe_import``: the same input and output steps, so the nets learn the scores the
deployed keyframe graph gives), run once per frame in onnxruntime and cached with the clip's DIS
flows. Each video's last ``--holdout`` is held out and split in two: its first half selects the
model (``TailSelection``, agreement with the teacher's per-frame labels by distance), its second
half is only reported on (GSVNet, warp-only and hold), so the reported figures were never tuned on.
The flow net starts from the shipped one (it is class-independent); the intra and guiding nets
from the shipped ones when the class count matches, else fresh. Nets whose propagation is below
warp-only at any distance on the selection half are not shipped: OUT/final.pt is renamed
OUT/final.rejected.pt and the run exits 1 with one line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evaluation.clips import holdout_split
from evaluation.protocol import distance_confusions, summarise
from gsvnet import GSVNet, load_checkpoint
from gsvnet.variants import build_variant

from .clip import PreparedClip, prepare_clip

SELECTED_DISTANCES = range(1, 5)


def teacher_graph(args: argparse.Namespace, size: tuple[int, int]):
    """(KeyframeImport, scores(frames uint8 [N,H,W,3]) -> float32 [N,C,h,w]): the user's model as
    the deployed keyframe graph computes it."""
    from engine_format.sessions import keyframe_scores
    from export.keyframe_import import ImportOptions, inspect_model, keyframe_graph
    from export.options import DEFAULT_OPSET

    stated = ImportOptions(tuple(args.input_size) if args.input_size else None, tuple(args.mean), tuple(args.std), args.bgr)
    model, spec = inspect_model(Path(args.teacher_onnx), stated)
    graph = keyframe_scores(keyframe_graph(model, spec, size, DEFAULT_OPSET).SerializeToString(), threads=args.threads)
    return spec, lambda frames: torch.from_numpy(graph(frames))


def student(spec, classes: Path | None, seed: int) -> GSVNet:
    """A GSVNet with the imported stand-in keyframe net for the teacher's classes, its flow net (and
    intra and guiding nets, for the same class count) from the shipped weights."""
    from export.keyframe_import import class_names, imported_gsvnet
    from gsvnet.pretrained import default_checkpoint

    shipped_path = default_checkpoint("swiftnet_r18")
    shipped = load_checkpoint(shipped_path)[0] if shipped_path is not None else None
    names, palette = class_names(classes, spec.num_classes)
    torch.manual_seed(seed)
    same = shipped is not None and shipped.config.num_classes == spec.num_classes
    model = imported_gsvnet(spec, names, palette, shipped if same else None)
    if shipped is not None and not same:
        model.flow.load_state_dict(shipped.flow.state_dict())
        model.config.normalization = shipped.config.normalization
        model.mean.copy_(shipped.mean)
        model.std.copy_(shipped.std)
    return model


class TailSelection:
    """Agreement with the teacher's own labels (argmax of its scores upsampled ``scale`` x from the
    1/8 grid) at each distance from a keyframe placed on every frame of held-out parts of clips."""

    def __init__(self, clips: list[PreparedClip], scale: int) -> None:
        self.clips, self.scale = clips, scale

    def _truth(self, clip: PreparedClip, t: int) -> np.ndarray:
        h, w = clip.scores.shape[-2:]
        up = torch.nn.functional.interpolate(clip.scores[t : t + 1].float(), size=(h * self.scale, w * self.scale),
                                             mode="bilinear", align_corners=False)
        return up.argmax(dim=1)[0].numpy().astype(np.uint8)

    def evaluate(self, model: GSVNet, max_distance: int) -> dict:
        from .selection import CachedStepper

        model.eval()
        cms = None
        for clip in self.clips:
            if len(clip.small) <= max_distance:
                continue
            stepper = CachedStepper(model, clip.small, clip.scores)
            cms = distance_confusions(stepper, lambda t: np.array(t), lambda t, c=clip: self._truth(c, t),
                                      range(0, len(clip.small) - max_distance), list(range(max_distance + 1)),
                                      model.num_classes, None, len(clip.small) - 1, cms)
        if cms is None:
            raise SystemExit(f"error: the held-out parts are shorter than --max-interval {max_distance} + 1 frames; "
                             "use longer videos or a larger --holdout")
        return summarise(cms, max_distance)


def run(args: argparse.Namespace) -> dict:
    """Distil, select, report and (unless it loses to warping) keep OUT/final.pt."""
    from .propagation_loop import Objective, init_guide, pretrain_flow, pretrain_intra, train_end_to_end
    from .state import pick_device, start_run

    rng, out = start_run(args.seed, args.threads, args.out)
    started = time.time()
    size = tuple(args.size)
    spec, teacher = teacher_graph(args, size)
    device = pick_device(args.device)
    model = student(spec, Path(args.classes) if args.classes else None, args.seed).to(device)
    print(f"distilling the propagation nets for {args.teacher_onnx} ({spec.num_classes} classes) on {device}", flush=True)
    cache_dir = Path(args.cache_dir) if args.cache_dir else out
    clips, selection_tails, report_tails, spans = [], [], [], {}
    for video in args.videos:
        key = {"video": str(Path(video).resolve()), "size": list(size), "teacher": spec.sha256,
               "import": spec.to_dict(), "limit": args.max_frames}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        clip = prepare_clip(video, size, lambda x: model.downsample(torch.from_numpy(x).to(device)).cpu(), teacher,
                            cache_dir / f"teacher-{Path(video).stem}-{digest}", key, args.max_frames)
        train, held = holdout_split(len(clip.small), args.holdout)
        middle = held.start + len(held) // 2
        clips.append(clip.frames(train))  # memory-mapped on the CPU; batches go to the device
        selection_tails.append(clip.frames(range(held.start, middle)))
        report_tails.append(clip.frames(range(middle, held.stop)))
        spans[str(video)] = {"train": [train.start, train.stop], "selection": [held.start, middle],
                             "report": [middle, held.stop]}
        print(f"{Path(video).name}: training on frames {train.start}..{train.stop - 1}, selecting on "
              f"{held.start}..{middle - 1}, reporting on {middle}..{held.stop - 1}", flush=True)
    objective = Objective(torch.ones(spec.num_classes), model.align_corners, args.kl_scale)
    selection = TailSelection(selection_tails, args.kl_scale)
    flow_losses = pretrain_flow(model, clips, [], args, rng) if args.flow_steps else []
    intra_losses = pretrain_intra(model, clips, [], objective, args, rng) if args.intra_steps else []
    init_guide(model, *args.guide_init)
    result = train_end_to_end(model, clips, [], objective, selection, args, rng, out)

    final = out / "final.pt"
    best, _ = load_checkpoint(final)
    report = TailSelection(report_tails, args.kl_scale)
    rows = {name: report.evaluate(build_variant(variant, best.config, best.state_dict()), args.max_interval)
            for name, variant in (("gsvnet", "full"), ("warp_only", "warp"), ("hold", "hold"))}
    chosen = result["best"]
    distances = [str(d) for d in SELECTED_DISTANCES if d <= args.max_interval]
    below = [d for d in distances if chosen["gsvnet"]["miou_by_distance"][d] < chosen["warp_only"]["miou_by_distance"][d]]
    summary = {"teacher_onnx": str(args.teacher_onnx), "keyframe_import": spec.to_dict(), "clips": spans,
               "args": vars(args), "wall_s": round(time.time() - started, 1),
               "flow_pretrain_final_l1": float(np.mean(flow_losses[-100:])) if flow_losses else None,
               "intra_pretrain_final_kl": float(np.mean(intra_losses[-100:])) if intra_losses else None,
               "reference": "the teacher's own per-frame labels (argmax of its scores)",
               "selected": chosen, "selection_history": result["history"], "report_half": rows,
               "shipped": not below}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    line = " ".join(f"d={d}: {100 * rows['gsvnet']['miou_by_distance'][d]:.1f} / {100 * rows['warp_only']['miou_by_distance'][d]:.1f}"
                    f" / {100 * rows['hold']['miou_by_distance'][d]:.1f}" for d in distances)
    print(f"report half, agreement with the teacher (mIoU, gsvnet / warp only / hold): {line}", flush=True)
    if below:
        final.replace(out / "final.rejected.pt")
        print(f"error: not shipping the distilled nets: on the selection half their propagation is below warp-only at "
              f"distance(s) {', '.join(below)}; kept as {out / 'final.rejected.pt'} (train longer or on more video)",
              file=sys.stderr, flush=True)
        summary["exit_code"] = 1
        return summary
    print(f"wrote {final} in {summary['wall_s'] / 60:.1f} min: build with `python -m export.build_engines "
          f"--keyframe-onnx {args.teacher_onnx} --checkpoint {final}` and the same --input-size, --mean, --std, --bgr",
          flush=True)
    return summary
