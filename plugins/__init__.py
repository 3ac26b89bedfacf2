"""GSVNet's custom operations outside PyTorch: CUDA kernels, their CPU build, the GPU
launcher, TensorRT plugins and ONNX custom-op nodes. Semantics: ``plugins/SPEC.md``.

Nothing here imports TensorRT or cuda-python at import time; see ``plugins/README.md``.
"""
