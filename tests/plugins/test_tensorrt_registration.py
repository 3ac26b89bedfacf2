"""plugins.tensorrt_plugins.register against the documented tensorrt.plugin schema, without
TensorRT (tests/plugins/fake_tensorrt.py): signatures, retry after a failure, and what the AOT
implementation hands TensorRT (kernel name, PTX, launch geometry, int32 arguments)."""

from __future__ import annotations

import inspect
import re
import sys
import typing

import pytest

from plugins import geometry, nvcc, tensorrt_plugins, toolchain
from tests.plugins import fake_tensorrt
from tests.requirements import require_cuda_compiler


@pytest.fixture(autouse=True)
def _fresh_registration(monkeypatch):
    monkeypatch.setattr(tensorrt_plugins, "_registration", {"applied": set(), "complete": False}, raising=False)


def fake_modules(monkeypatch, fail_once: set | None = None):
    """Install the stand-ins as ``tensorrt`` / ``tensorrt.plugin`` (what register() imports)."""
    trt, trtp = fake_tensorrt.modules(fail_once)
    trt.plugin = trtp
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    return trt, trtp


def test_every_decorator_accepts_our_functions_and_aot_ends_in_outputs_tactic(monkeypatch):
    trt, trtp = fake_modules(monkeypatch)
    tensorrt_plugins.register()
    for plugin_id in tensorrt_plugins.PLUGIN_IDS:
        steps = [step for pid, step in trtp.applied if pid == plugin_id]
        assert steps == ["register", "autotune", "impl", "aot_impl"], (plugin_id, steps)
        aot = trtp.defined[plugin_id]["aot_impl"]
        signature = inspect.signature(aot)
        assert list(signature.parameters)[-2:] == ["outputs", "tactic"]
        assert signature.parameters["tactic"].annotation is int
        args = typing.get_args(signature.return_annotation)
        assert typing.get_origin(signature.return_annotation) is tuple and len(args) == 4
        assert args[2] is fake_tensorrt.KernelLaunchParams and issubclass(args[3], fake_tensorrt.SymExprs)
    assert tensorrt_plugins.registered()


def test_register_is_idempotent(monkeypatch):
    trt, trtp = fake_modules(monkeypatch)
    tensorrt_plugins.register()
    tensorrt_plugins.register()
    assert len(trtp.applied) == len(set(trtp.applied)) == 8


@pytest.mark.parametrize("failing", [("gsvnet::ChunkFilter", "impl"), ("gsvnet::WarpByFlow", "aot_impl"),
                                     ("gsvnet::ChunkFilter", "register")])
def test_register_can_be_retried_after_a_failure_part_way(failing, monkeypatch):
    trt, trtp = fake_modules(monkeypatch, fail_once={failing})
    with pytest.raises(RuntimeError, match="injected failure"):
        tensorrt_plugins.register()
    assert not tensorrt_plugins.registered()
    tensorrt_plugins.register()  # no "already has a definition"
    assert sorted(trtp.applied) == sorted(set(trtp.applied)) and len(trtp.applied) == 8
    assert tensorrt_plugins.registered()


def test_chunk_filter_shape_function_requires_k_plus_2_weight_channels(monkeypatch):
    trt, trtp = fake_modules(monkeypatch)
    tensorrt_plugins.register()
    desc = trtp.defined["gsvnet::ChunkFilter"]["register"]

    class Constant:  # a build-time constant shape expression
        is_fake, is_constant = False, True

        def __init__(self, value: int) -> None:
            self.value = value

        def constant_value(self) -> int:
            return self.value

    scores = fake_tensorrt.TensorDesc(("N", 11, 17, 30), trt.float16)
    ok = fake_tensorrt.TensorDesc(("N", Constant(11), 17, 30), trt.float16)
    assert desc(scores, scores, ok, 1).dtype == trt.float16
    k_plus_1 = fake_tensorrt.TensorDesc(("N", Constant(10), 17, 30), trt.float16)
    with pytest.raises(ValueError, match=r"radius 1 needs weights \[N,11,h,w\] \(K shifts, intra, null"):
        desc(scores, scores, k_plus_1, 1)


def _entry_params(ptx: str) -> dict[str, list[str]]:
    return {m.group(1): re.findall(r"\.param \.(\w+)", m.group(2)) for m in re.finditer(r"\.visible \.entry (\w+)\(([^)]*)\)", ptx)}


@pytest.mark.parametrize("op,radius", [("gsvnet::WarpByFlow", None), ("gsvnet::ChunkFilter", 1), ("gsvnet::ChunkFilter", 3)])
@pytest.mark.parametrize("half", [False, True])
def test_aot_impl_hands_tensorrt_a_kernel_its_ptx_defines(op, radius, half, monkeypatch, tmp_path):
    compiler = require_cuda_compiler(nvcc.DEFAULT_PTX_ARCH)
    # the GPU-free part of aot_ptx: PTX for compute_75 from an installed compiler
    monkeypatch.setattr(tensorrt_plugins, "aot_ptx",
                        lambda name: toolchain.build(name, nvcc.DEFAULT_PTX_ARCH, "ptx", compiler, root=tmp_path))
    trt, trtp = fake_modules(monkeypatch)
    tensorrt_plugins.register()
    dtype = trt.float16 if half else trt.float32
    n, c, h, w = 2, 11, 17, 30
    scores = fake_tensorrt.TensorDesc((n, c, h, w), dtype)
    aot = trtp.defined[op]["aot_impl"]
    if radius is None:
        name, ptx, params, extra = aot(scores, fake_tensorrt.TensorDesc((n, 2, h, w), trt.float32), [scores], 0)
        expected = geometry.warp_by_flow(n, c, h, w, half)
        inputs, outputs = 2, 1
    else:
        weights = fake_tensorrt.TensorDesc((n, (2 * radius + 1) ** 2 + 2, h, w), dtype)
        name, ptx, params, extra = aot(scores, scores, weights, radius, [scores], 0)
        expected = geometry.chunk_filter(n, c, h, w, radius, half)
        inputs, outputs = 3, 1
    name = name.decode()
    assert name == expected.kernel and f"_r{radius}_" in name if radius else "warp_by_flow" in name
    entries = _entry_params(ptx.decode())
    assert entries[name] == ["u64"] * inputs + ["u32"] * len(extra.values) + ["u64"] * outputs  # pointers, int32 sizes, out
    assert [s.value for s in extra.values] == [n, c, h, w]
    assert (params.grid_x, params.grid_y, params.grid_z) == expected.grid
    assert (params.block_x, params.block_y, params.block_z) == expected.block and params.shared_mem == 0
    # the grid covers every pixel once: one thread per pixel (warp) or one 32x8 tile per block
    threads = params.grid_x * params.grid_y * params.block_x * params.block_y
    assert h * w * n <= threads * (1 if radius is None else params.grid_z) < (h + 8) * (w + 256) * n


class _PluginTensor:
    """``tensorrt.plugin.Tensor`` during enqueue: a data pointer and a shape, no device."""

    def __init__(self, data_ptr: int, shape: tuple[int, ...], dtype: str = "float32") -> None:
        self.data_ptr, self.shape, self.dtype = data_ptr, shape, dtype


def test_jit_impls_launch_on_the_device_that_holds_the_tensors(monkeypatch):
    from plugins import launcher

    trt, trtp = fake_modules(monkeypatch)
    tensorrt_plugins.register()
    devices = {0x7F00_0000: 1, 0x7F10_0000: 1, 0x7F20_0000: 1, 0x7F30_0000: 1}  # every buffer of the engine on GPU 1
    launches = []

    class Kernels:
        def __init__(self, device: int) -> None:
            self.device = device

        def warp_by_flow(self, *args, **kwargs):
            launches.append(("warp", self.device, kwargs["stream"]))

        def chunk_filter(self, *args, **kwargs):
            launches.append(("filter", self.device, kwargs["stream"]))

    monkeypatch.setattr(launcher, "pointer_device", lambda pointer: devices[pointer], raising=False)
    monkeypatch.setattr(launcher, "kernels", lambda device=0: Kernels(device))
    seg, flow, out = (_PluginTensor(p, s) for p, s in ((0x7F00_0000, (1, 4, 8, 8)), (0x7F10_0000, (1, 2, 8, 8)),
                                                          (0x7F20_0000, (1, 4, 8, 8))))
    trtp.defined[tensorrt_plugins.WARP]["impl"](seg, flow, [out], 1234)
    weights = _PluginTensor(0x7F30_0000, (1, geometry.num_weights(1), 8, 8))
    trtp.defined[tensorrt_plugins.FILTER]["impl"](seg, flow, weights, 1, [out], 1234)
    assert launches == [("warp", 1, 1234), ("filter", 1, 1234)]
