"""INT8 keyframe graph: static, symmetric QDQ quantisation calibrated on real frames.

``build_engines --precision int8 --calibration DIR`` exports the FP32 keyframe graph as usual and
quantises it with onnxruntime's static quantiser: every convolution, its input and output as
QuantizeLinear/DequantizeLinear pairs, activations per tensor and weights per output channel,
all int8 with zero point 0 (symmetric), ranges from the minimum and maximum seen on the
calibration frames. That is the explicit-quantisation form TensorRT 10 builds INT8 engines from.

onnxruntime's x86 INT8 kernels multiply unsigned activations by signed weights (the AVX-512 VNNI
instruction is u8 x s8); int8 activations would fall back to float convolutions between Q/DQ
pairs wherever a tensor feeds two nodes, and to a slow s8 x s8 kernel if forced. So on x86 the
onnxruntime backend loads the graph with every activation Q/DQ moved to uint8 with zero point
128 (``for_onnxruntime_x86``): q_u8 = q_s8 + 128 for every value, the same dequantised numbers,
hence the same function (tests/export/test_quantize.py).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .build_errors import BuildError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: the INT8 keyframe net must pick the FP32 net's class on at least this share of the 1/8-grid
#: cells of the calibration frames, or the build fails (a broken quantisation, not a rounding)
MIN_AGREEMENT = 0.9


def calibration_files(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` images of ``folder`` (sorted, then a seeded random choice; all if fewer)."""
    if not folder.is_dir():
        raise BuildError(f"--calibration {folder} is not a folder; give a folder of real frames (PNG/JPEG), "
                         "e.g. ../shared/data/camvid/train")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BuildError(f"--calibration {folder} holds no PNG or JPEG images")
    if len(files) <= count:
        return files
    pick = np.random.default_rng(seed).choice(len(files), count, replace=False)
    return [files[i] for i in sorted(pick)]


def calibration_frames(files: list[Path], size: tuple[int, int]) -> list[np.ndarray]:
    """The images as uint8 [1,H,W,3] RGB at the engine ``size`` (bilinear where it differs)."""
    from PIL import Image

    frames = []
    for path in files:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (size[1], size[0]):
                rgb = rgb.resize((size[1], size[0]), Image.BILINEAR)
            frames.append(np.asarray(rgb, dtype=np.uint8)[None])
    return frames


def files_digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def quantize_keyframe(fp32: Path, out: Path, frames: list[np.ndarray], input_name: str = "image") -> None:
    """Write the symmetric INT8 QDQ version of the FP32 keyframe graph ``fp32`` to ``out``."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(frames)

        def get_next(self) -> dict | None:
            frame = next(self.items, None)
            return None if frame is None else {input_name: frame}

    from onnxruntime.quantization.registry import QDQRegistry

    # BatchNorm parameters stay float: the quantiser would round each norm's scale per tensor (the
    # decoder's pre-activation norms have no convolution before them to be folded into)
    ops = sorted(op for op in QDQRegistry if op != "BatchNormalization")
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(prefix="gsvnet-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            root.setLevel(logging.ERROR)  # the quantiser warns through the root logger about every norm
            # shape inference and onnxruntime's graph optimisations (e.g. BatchNorm into the conv before it)
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(out), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        finally:
            root.setLevel(level)


def qdq_summary(model: onnx.ModelProto) -> dict:
    """Counts that describe a QDQ graph: quantised convolutions, Q/DQ nodes, zero points."""
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [initializers[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in initializers]
    # symmetric as TensorRT needs it: int8 activations and weights (int32 biases), every zero point 0
    produced = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantised = sum(1 for n in convs if n.input[0] in produced and produced[n.input[0]].op_type == "DequantizeLinear")
    return {"convolutions": len(convs), "quantised_convolutions": quantised,
            "quantize_nodes": sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
            "dequantize_nodes": sum(n.op_type == "DequantizeLinear" for n in model.graph.node),
            "symmetric": all(z.dtype in (np.int8, np.int32) and not z.any() for z in zero_points)}


def class_agreement(reference: np.ndarray, quantised: np.ndarray) -> float:
    """Share of the grid cells whose class (argmax over the class axis 1 of scores [N,C,h,w])
    is the same in ``quantised`` as in ``reference``, over every cell of every image."""
    if reference.shape != quantised.shape or reference.ndim != 4:
        raise BuildError(f"the INT8 keyframe graph's scores {quantised.shape} do not have the FP32 graph's shape "
                         f"{reference.shape} [N,C,h,w]")
    return float(np.mean(reference.argmax(axis=1) == quantised.argmax(axis=1)))


def quantize_keyframe_graph(folder: Path, fp32_entry: dict, calibration: tuple[list[Path], dict],
                            size: tuple[int, int], log=print) -> dict:
    """Quantise ``folder``'s FP32 keyframe graph into ``keyframe.int8.onnx`` (the FP32 file goes),
    check it against the FP32 graph on the calibration frames, and return its manifest entry."""
    from engine_format.manifest import sha256_file
    from engine_format.sessions import make_session

    files, record = calibration
    fp32 = folder / fp32_entry["file"]
    out, tmp = folder / "keyframe.int8.onnx", folder / ".keyframe.int8.onnx.tmp"
    frames = calibration_frames(files, size)
    name = fp32_entry["inputs"][0]["name"]
    try:
        quantize_keyframe(fp32, tmp, frames, name)
        reference = make_session(fp32)
        quantised = make_session(tmp, precision="int8")
        agree, worst = [], 0.0
        for frame in frames:
            want, got = reference.run(None, {name: frame})[0], quantised.run(None, {name: frame})[0]
            agree.append(class_agreement(want, got))
            worst = max(worst, float(np.abs(want - got).max()))
        agreement = float(np.mean(agree))
        ok = agreement >= MIN_AGREEMENT
        log(f"  keyframe int8: {len(frames)} calibration frames from {record['folder']}; classes agree with FP32 on "
            f"{100 * agreement:.2f}% of the grid cells (limit {100 * MIN_AGREEMENT:.0f}%), max |diff| {worst:.3f}  "
            f"{'ok' if ok else 'FAILED'}")
        if not ok:
            raise BuildError(f"the INT8 keyframe graph picks the FP32 graph's class on only {100 * agreement:.1f}% of "
                             f"the grid cells of the calibration frames (at least {100 * MIN_AGREEMENT:.0f}% needed); "
                             "no manifest was written")
        summary = qdq_summary(onnx.load(str(tmp)))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    fp32.unlink(missing_ok=True)
    return {**fp32_entry, "file": out.name, "sha256": sha256_file(out), "precision": "int8",
            "quantization": {"scheme": "static QDQ, int8 symmetric (zero point 0), activations per tensor, weights per "
                                       "output channel, MinMax ranges", **record, **summary},
            "verification": {"stage": "keyframe", "reference": "the FP32 keyframe graph on the calibration frames",
                             "class_agreement": agreement, "max_abs": worst, "limit": MIN_AGREEMENT, "ok": ok}}
