"""``build_engines --keyframe-onnx MODEL.onnx``: a user's own segmentation model as the keyframe net.

``inspect_model`` reads what the model takes and returns (one image input, one score output) and
checks it against what the user stated; ``keyframe_graph`` joins ``gsvnet.imported.ImportedInput``
(exported from PyTorch), the user's graph and ``ImportedOutput`` into the keyframe stage graph
(uint8 [N,H,W,3] -> scores [N,C,h,w]); ``verify_keyframe_graph`` holds that graph to the user's
model run directly in onnxruntime on real frames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from engine_format.stages import BATCH
from gsvnet.imported import IMAGENET_MEAN, IMAGENET_STD, ImportedInput, ImportedOutput, KeyframeImport
from gsvnet.shapes import grid_size

from .build_errors import BuildError

#: the keyframe graph must give the user's model's scores to within this, relative to their range
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ImportOptions:
    """What the user states about their model (``--input-size``, ``--mean``, ``--std``, ``--bgr``)."""

    input_size: tuple[int, int] | None = None  # None: the graph's fixed size
    mean: tuple[float, float, float] = IMAGENET_MEAN  # on 0..1 RGB
    std: tuple[float, float, float] = IMAGENET_STD
    bgr: bool = False


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def load_model(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise BuildError(f"--keyframe-onnx {path}: no such file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # not ONNX, or an invalid graph
        raise BuildError(f"--keyframe-onnx {path} is not a valid ONNX model ({str(e).splitlines()[0][:160]})") from None
    return model


def inspect_model(path: Path, stated: ImportOptions) -> tuple[onnx.ModelProto, KeyframeImport]:
    """The model and how to feed it; a ``BuildError`` naming the flag when the graph contradicts
    what was stated or cannot be a segmenter (one image input, one [N,C,h,w] output)."""
    model = load_model(path)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise BuildError(f"--keyframe-onnx {path} has {len(inputs)} inputs and {len(model.graph.output)} outputs; "
                         "a segmenter has one image input and one score output (export it so)")
    image, scores = inputs[0], model.graph.output[0]
    dims, out_dims = _dims(image), _dims(scores)
    if image.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise BuildError(f"--keyframe-onnx {path}: the input {image.name!r} is not float32; export the model with a "
                         "float32 image input")
    if len(dims) != 4 or 3 not in (dims[1], dims[3]):
        raise BuildError(f"--keyframe-onnx {path}: the input {image.name!r} is {dims}, not an NCHW or NHWC image with 3 channels")
    layout = "NCHW" if dims[1] == 3 else "NHWC"
    if isinstance(dims[0], int) and dims[0] != 0:
        raise BuildError(f"--keyframe-onnx {path}: the batch of {image.name!r} is fixed to {dims[0]}; re-export with a "
                         "dynamic batch axis (torch.onnx.export(..., dynamic_axes={'input': {0: 'N'}}))")
    hw = dims[2:4] if layout == "NCHW" else dims[1:3]
    fixed = tuple(hw) if all(isinstance(d, int) and d > 0 for d in hw) else None
    if stated.input_size is not None and fixed is not None and tuple(stated.input_size) != fixed:
        raise BuildError(f"--input-size {stated.input_size[0]}x{stated.input_size[1]} contradicts the model, whose input "
                         f"is fixed to {fixed[0]}x{fixed[1]}; drop --input-size or pass {fixed[0]}x{fixed[1]}")
    input_size = tuple(stated.input_size) if stated.input_size is not None else fixed
    if input_size is None:
        raise BuildError(f"--keyframe-onnx {path}: the input size is not fixed in the graph ({dims}); pass the size the "
                         "model was trained at with --input-size HxW")
    if len(out_dims) != 4 or not isinstance(out_dims[1], int) or out_dims[1] < 1:
        raise BuildError(f"--keyframe-onnx {path}: the output {scores.name!r} is {out_dims}, not class scores [N,C,h,w] "
                         "with a fixed class count")
    for name, values in (("--mean", stated.mean), ("--std", stated.std)):
        if len(values) != 3 or (name == "--std" and min(values) <= 0):
            raise BuildError(f"{name} takes three numbers on 0..1 RGB{' (each > 0)' if name == '--std' else ''}, got {values}")
    if max(stated.mean) > 1.0 or max(stated.std) > 1.0:
        raise BuildError(f"--mean/--std are on 0..1 RGB values (ImageNet: --mean {' '.join(map(str, IMAGENET_MEAN))}); "
                         f"got {stated.mean} / {stated.std}: divide by 255")
    spec = KeyframeImport(
        source=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest(), input_name=image.name,
        output_name=scores.name, input_size=input_size, layout=layout, num_classes=int(out_dims[1]),
        mean=tuple(stated.mean), std=tuple(stated.std), bgr=stated.bgr, output="logits", output_size=(1, 1),
        opset=_opset(model))
    return model, _measure_output(model, spec)


def _run_user_model(model: onnx.ModelProto, spec: KeyframeImport, frames: np.ndarray) -> np.ndarray:
    """The user's model on uint8 frames [N,H,W,3], fed through ``ImportedInput`` (float32)."""
    import torch

    from engine_format.sessions import make_session

    with torch.no_grad():
        x = ImportedInput(spec)(torch.from_numpy(frames)).numpy()
    session = make_session(model.SerializeToString())
    return session.run([spec.output_name], {spec.input_name: x})[0]


def _measure_output(model: onnx.ModelProto, spec: KeyframeImport) -> KeyframeImport:
    """The output's size (and so its stride) and whether it holds probabilities, from one run."""
    from dataclasses import replace

    from gsvnet.samples import sample_frames

    frames = sample_frames()[:1]
    try:
        scores = _run_user_model(model, spec, frames)
    except Exception as e:
        raise BuildError(f"--keyframe-onnx {spec.source} does not run in onnxruntime at {spec.input_size[0]}x"
                         f"{spec.input_size[1]} ({str(e).splitlines()[0][:200]}); check --input-size") from None
    if scores.ndim != 4 or scores.shape[1] != spec.num_classes:
        raise BuildError(f"--keyframe-onnx {spec.source}: the output is {list(scores.shape)}, not [N,{spec.num_classes},h,w]")
    sums = scores.sum(axis=1)
    probabilities = scores.min() >= 0 and scores.max() <= 1 and np.allclose(sums, 1.0, atol=1e-3)
    return replace(spec, output="probabilities" if probabilities else "logits", output_size=tuple(scores.shape[2:]))


def _export_module(module, example, input_name: str, output_name: str, opset: int) -> onnx.ModelProto:
    """``module`` (one tensor in, one out) as ONNX with a dynamic batch."""
    import torch

    from .onnx_export import _quiet
    from .options import MAX_BATCH

    batch = torch.export.Dim(BATCH, min=1, max=MAX_BATCH)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(module.eval(), (example,), dynamo=True, opset_version=opset, external_data=False,
                                    input_names=[input_name], output_names=[output_name],
                                    dynamic_shapes=({0: batch},), verbose=False)
    return program.model_proto


def keyframe_graph(model: onnx.ModelProto, spec: KeyframeImport, frame_size: tuple[int, int],
                   opset: int) -> onnx.ModelProto:
    """The keyframe stage graph: ImportedInput -> the user's model -> ImportedOutput, at ``opset``."""
    import torch
    from onnx import compose, version_converter

    frames = torch.zeros((2, *frame_size, 3), dtype=torch.uint8)
    pre = _export_module(ImportedInput(spec), frames, "image", "model_input", opset)
    example = torch.zeros((2, spec.num_classes, *spec.output_size))
    post = _export_module(ImportedOutput(spec, grid_size(frame_size)), example, "model_output", "scores", opset)
    user = model
    if _opset(user) != opset:
        try:
            user = version_converter.convert_version(user, opset)
        except Exception as e:
            raise BuildError(f"--keyframe-onnx {spec.source} is opset {_opset(model)} and could not be converted to "
                             f"opset {opset} ({str(e).splitlines()[0][:160]}); re-export it at opset {opset} or pass "
                             f"--opset {_opset(model)}") from None
    ir = max(pre.ir_version, user.ir_version, post.ir_version)
    for part in (pre, user, post):
        part.ir_version = ir
    # every name is made unique to its part (the two exported steps share node names); the
    # graph's own input and output keep the stage table's names
    pre = compose.add_prefix(pre, "pre/", rename_inputs=False)
    user = compose.add_prefix(user, "user/")
    post = compose.add_prefix(post, "post/", rename_outputs=False)
    joined = compose.merge_models(pre, user, io_map=[("pre/model_input", f"user/{spec.input_name}")])
    joined = compose.merge_models(joined, post, io_map=[(f"user/{spec.output_name}", "post/model_output")])
    joined.producer_name = "gsvnet-export"
    joined.doc_string = f"GSVNet stage 'keyframe': {Path(spec.source).name} (imported) between its input and output steps"
    onnx.checker.check_model(joined)
    return joined


def verify_keyframe_graph(graph: Path, model: onnx.ModelProto, spec: KeyframeImport,
                          frame_size: tuple[int, int]) -> dict:
    """The keyframe graph in onnxruntime against ``ImportedOutput(user model in onnxruntime(
    ImportedInput(frames)))`` on the real sample frames: max-abs error relative to the scores' range."""
    import torch

    from engine_format.sessions import keyframe_scores
    from engine_format.verification_set import engine_frames
    from gsvnet.samples import sample_frames

    frames = engine_frames(sample_frames()[:4], frame_size)
    with torch.no_grad():
        want = ImportedOutput(spec, grid_size(frame_size))(torch.from_numpy(_run_user_model(model, spec, frames))).numpy()
    got = keyframe_scores(graph)(frames)
    err = float(np.abs(got - want).max())
    scale = float(np.abs(want).max()) or 1.0
    same = float((got.argmax(axis=1) == want.argmax(axis=1)).mean())
    return {"reference": f"{Path(spec.source).name} run directly in onnxruntime", "frames": len(frames),
            "max_abs": err, "max_ref": scale, "relative": err / scale, "grid_agreement": same,
            "tolerance": TOLERANCE, "ok": err / scale <= TOLERANCE}


def class_names(path: Path | None, count: int) -> tuple[list[str], list[list[int]]]:
    """(names, RGB colours) of ``count`` classes from a names file (``--classes``: one class per line,
    a name optionally followed by R G B; blank lines and ``#`` comments skipped), or numbered ones
    on a generated palette."""
    from gsvnet.classes import default_label_set

    default = default_label_set(count)
    if path is None:
        return list(default.class_names), [list(c) for c in default.palette]
    try:
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise BuildError(f"--classes {path} cannot be read ({e})") from None
    lines = [line for line in lines if line]
    if len(lines) != count:
        raise BuildError(f"--classes {path} names {len(lines)} classes, but the model outputs {count}; one line per class")
    names, palette = [], []
    for k, line in enumerate(lines):
        words = line.split()
        if len(words) >= 4 and all(w.isdigit() and int(w) < 256 for w in words[-3:]):
            names.append(" ".join(words[:-3]))
            palette.append([int(w) for w in words[-3:]])
        else:
            names.append(line)
            palette.append(list(default.palette[k]))
    return names, palette


def imported_gsvnet(spec: KeyframeImport, names: list[str], palette: list[list[int]], source=None, radius: int = 1):
    """A GSVNet (eval mode) whose keyframe net is the stand-in for ``spec``'s model, with the
    propagation nets, their widths and their input normalisation of the GSVNet ``source`` (which
    must have the model's class count), or fresh ones."""
    import torch

    from gsvnet import GSVNet, GSVNetConfig
    from gsvnet.keyframe.imported import NAME

    base = source.config if source is not None else GSVNetConfig(num_classes=spec.num_classes, radius=radius)
    config = GSVNetConfig(keyframe_net=NAME, num_classes=spec.num_classes, radius=base.radius,
                          flow_channels=base.flow_channels, intra_channels=base.intra_channels,
                          guide_channels=base.guide_channels, class_names=names, palette=palette,
                          normalization=base.normalization if source is not None else None,
                          keyframe_import=spec.to_dict())
    model = GSVNet(config).eval()
    if source is not None:
        model.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith("keyframe.")})
    else:
        with torch.no_grad():  # the zero-initialised flow head would make every warp an identity
            torch.nn.init.normal_(model.flow.toflow.weight, std=0.05)
    return model


def fp16_output_graph(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The keyframe graph of an imported model for a TensorRT build: the same FP32 computation (the
    user's model is FP32; TensorRT's strongly typed networks keep it so) with its scores cast to
    float16 at the end, the type the FP16 propagation engines take (one buffer, one dtype)."""
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    (output,) = out.graph.output
    inner = f"{output.name}_fp32"
    for node in out.graph.node:
        node.output[:] = [inner if name == output.name else name for name in node.output]
        node.input[:] = [inner if name == output.name else name for name in node.input]
    out.graph.node.append(onnx.helper.make_node("Cast", [inner], [output.name], to=onnx.TensorProto.FLOAT16,
                                                name="scores_to_fp16"))
    output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    onnx.checker.check_model(out)
    return out
