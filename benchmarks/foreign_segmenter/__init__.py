"""A published segmentation architecture that is not one of ours (ERFNet), trained here, exported to
ONNX and used as a user's own segmenter: the measurement of issue 26's import, distil, build, run."""
