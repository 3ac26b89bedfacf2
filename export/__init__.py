"""Turn the PyTorch GSVNet into ONNX graphs (and TensorRT engines) with a manifest."""
