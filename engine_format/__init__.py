"""The engines folder's contract, the one home that the exporter (which writes a folder) and the
runtime (which reads it) both import: the manifest (``manifest``), the stage graphs' tensor specs
(``stages``), frame sizes (``sizes``), engine compatibility with the machine at hand (``compat``),
onnxruntime session creation (``sessions``, ``int8_x86``) and the verification set
(``verification_set``). Plain Python and numpy: no torch, no TensorRT builder.
"""
