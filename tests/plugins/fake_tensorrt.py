"""A stand-in for ``tensorrt`` / ``tensorrt.plugin`` that enforces the documented schema of the
plugin decorators, so plugins.tensorrt_plugins is tested without TensorRT or a GPU.

The rules restate NVIDIA's documentation of ``tensorrt.plugin`` (10.9+; the docstrings of
``register``, ``impl``, ``aot_impl`` and ``autotune``):
- register: (inp: TensorDesc, ..., attr: <int|float|str|bool|bytes>, ...) -> TensorDesc; every
  argument annotated, tensors before attributes, no defaults; an id can be defined once
  ("already has a definition");
- autotune: (inputs, <subset of attributes>, outputs) -> List[AutoTuneCombination];
- impl: (inputs, <subset of attributes>, outputs, stream[, tactic]) -> None;
- aot_impl: (inputs, <subset of attributes>, outputs, tactic) with a mandatory return annotation
  Tuple[str|bytes, str|bytes, KernelLaunchParams, SymExprs subclass].
Only what those rules need is modelled; it records what was applied, in order.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Callable

ATTRIBUTE_TYPES = (int, float, str, bool, bytes)


class TensorDesc:
    def __init__(self, shape: tuple = (), dtype: Any = None) -> None:
        self.shape_expr = list(shape)
        self.dtype = dtype

    def like(self) -> "TensorDesc":
        return TensorDesc(tuple(self.shape_expr), self.dtype)


class KernelLaunchParams:
    grid_x = grid_y = grid_z = block_x = block_y = block_z = shared_mem = None


class SymExprs:
    def __init__(self, values: list) -> None:
        self.values = list(values)


class SymIntExprs(SymExprs):
    @classmethod
    def from_tuple(cls, values: Any) -> "SymIntExprs":
        return cls(list(values))


class SymInt32:
    def __init__(self, value: Any) -> None:
        self.value = value


class AutoTuneCombination:
    def __init__(self, types_: str, layouts: str) -> None:
        self.types, self.layouts = types_, layouts


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


class SchemaError(ValueError):
    pass


def _params(fn: Callable) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _str_or_bytes(annotation: Any) -> bool:
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    return all(a in (str, bytes) for a in args)


class PluginModule(types.ModuleType):
    """``tensorrt.plugin``: the decorators and the classes above, recording each application."""

    def __init__(self, fail_once: set[tuple[str, str]] | None = None) -> None:
        super().__init__("tensorrt.plugin")
        for name in ("TensorDesc", "KernelLaunchParams", "SymExprs", "SymIntExprs", "SymInt32", "AutoTuneCombination", "cdiv"):
            setattr(self, name, globals()[name])
        self.defined: dict[str, dict[str, Any]] = {}  # id -> {"tensors", "attrs", step: function}
        self.applied: list[tuple[str, str]] = []
        self.fail_once = set(fail_once or ())  # (id, step) that raise the first time

    def _maybe_fail(self, plugin_id: str, step: str) -> None:
        if (plugin_id, step) in self.fail_once:
            self.fail_once.discard((plugin_id, step))
            raise RuntimeError(f"injected failure in {step} of {plugin_id}")

    def register(self, plugin_id: str) -> Callable:
        def decorate(fn: Callable) -> Callable:
            self._maybe_fail(plugin_id, "register")
            if plugin_id in self.defined:
                raise SchemaError(f"'op' already has a definition for '{plugin_id}'")
            tensors, attrs = [], []
            for name, p in inspect.signature(fn).parameters.items():
                if p.annotation is inspect.Parameter.empty or p.default is not inspect.Parameter.empty:
                    raise SchemaError(f"register argument {name} needs an annotation and no default")
                if p.annotation is TensorDesc:
                    if attrs:
                        raise SchemaError("tensors must come before attributes")
                    tensors.append(name)
                elif p.annotation in ATTRIBUTE_TYPES:
                    attrs.append(name)
                else:
                    raise SchemaError(f"register argument {name}: unsupported annotation {p.annotation}")
            if inspect.signature(fn).return_annotation is not TensorDesc:
                raise SchemaError("register must return a TensorDesc")
            self.defined[plugin_id] = {"tensors": tensors, "attrs": attrs, "register": fn}
            self.applied.append((plugin_id, "register"))
            return fn

        return decorate

    def _step(self, step: str, tail: list[str], optional: tuple[str, ...] = ()) -> Callable:
        def factory(plugin_id: str) -> Callable:
            def decorate(fn: Callable) -> Callable:
                self._maybe_fail(plugin_id, step)
                if plugin_id not in self.defined:
                    raise SchemaError(f"{plugin_id} is not registered")
                d = self.defined[plugin_id]
                names = _params(fn)
                used = [a for a in d["attrs"] if a in names]
                allowed = [d["tensors"] + used + tail + list(optional[:i]) for i in range(len(optional) + 1)]
                if names not in allowed:
                    raise SchemaError(f"Signature of the {step} function {names} does not match the expected input arg "
                                      f"schema {d['tensors'] + used + tail}")
                annotation = inspect.signature(fn).parameters.get("tactic")
                if annotation is not None and annotation.annotation not in (inspect.Parameter.empty, int):
                    raise SchemaError("'tactic' must be an int")
                self._check_return(step, inspect.signature(fn).return_annotation)
                d[step] = fn
                self.applied.append((plugin_id, step))
                return fn

            return decorate

        return factory

    @staticmethod
    def _check_return(step: str, annotation: Any) -> None:
        empty = inspect.Signature.empty
        if step == "aot_impl":
            args = typing.get_args(annotation)
            if annotation is empty:
                raise SchemaError("No return annotation found for aot_impl function")
            if typing.get_origin(annotation) is not tuple or len(args) != 4 or not (
                    _str_or_bytes(args[0]) and _str_or_bytes(args[1]) and args[2] is KernelLaunchParams
                    and inspect.isclass(args[3]) and issubclass(args[3], SymExprs)):
                raise SchemaError(f"aot_impl return annotation {annotation} is not Tuple[str|bytes, str|bytes, "
                                  "KernelLaunchParams, SymExprs]")
        elif step == "impl" and annotation not in (empty, None):
            raise SchemaError("impl return annotation should be None")
        elif step == "autotune" and annotation is not empty:
            args = typing.get_args(annotation)
            if typing.get_origin(annotation) is not list or any(a is not AutoTuneCombination for a in args):
                raise SchemaError("autotune returns List[AutoTuneCombination]")

    def autotune(self, plugin_id: str) -> Callable:
        return self._step("autotune", ["outputs"])(plugin_id)

    def impl(self, plugin_id: str) -> Callable:
        return self._step("impl", ["outputs", "stream"], optional=("tactic",))(plugin_id)

    def aot_impl(self, plugin_id: str) -> Callable:
        return self._step("aot_impl", ["outputs", "tactic"])(plugin_id)


def modules(fail_once: set[tuple[str, str]] | None = None) -> tuple[types.ModuleType, PluginModule]:
    """(tensorrt, tensorrt.plugin) stand-ins."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0.35"
    trt.float32, trt.float16 = "float32", "float16"
    return trt, PluginModule(fail_once)


# ---- the runtime side: deserialising a built plan and inspecting it ------------------------------

class Plan:
    """A serialized engine as the fake runtime reads it: its plugin layers and whether it was built
    version-compatible (such a plan carries host code, the lean runtime)."""

    def __init__(self, blob: bytes, engine_layers: list[str], version_compatible: bool = False) -> None:
        self.blob, self.engine_layers, self.version_compatible = blob, list(engine_layers), version_compatible


class Runtime:
    """``tensorrt.IRuntime`` as far as a build inspects its plan. Like TensorRT,
    ``deserialize_cuda_engine`` returns None for a version-compatible plan unless
    ``engine_host_code_allowed`` was set (the plan's host code is refused otherwise)."""

    def __init__(self, plans: dict[bytes, Plan]) -> None:
        self.plans = plans
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, blob: bytes) -> Any:
        import json

        plan = self.plans.get(bytes(blob))
        if plan is None or (plan.version_compatible and not self.engine_host_code_allowed):
            return None
        info = json.dumps({"Layers": [{"Name": name, "LayerType": "PluginV3"} for name in plan.engine_layers]})
        inspector = types.SimpleNamespace(get_engine_information=lambda fmt: info)
        return types.SimpleNamespace(create_engine_inspector=lambda: inspector)


def engine_module(*plans: Plan, version: str = "10.13.0.35") -> types.ModuleType:
    """``tensorrt`` as a build uses it after building: Logger, Runtime over ``plans``, the
    profiling verbosity and layer information format of the engine inspector."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.ProfilingVerbosity = types.SimpleNamespace(DETAILED=2)
    trt.LayerInformationFormat = types.SimpleNamespace(JSON=1)
    trt.Logger = type("Logger", (), {"ERROR": 3, "WARNING": 2, "__init__": lambda self, level=2: None})
    by_blob = {plan.blob: plan for plan in plans}
    trt.runtimes = []  # every Runtime made, for tests to inspect

    def runtime(logger: Any) -> Runtime:
        made = Runtime(by_blob)
        trt.runtimes.append(made)
        return made

    trt.Runtime = runtime
    return trt
