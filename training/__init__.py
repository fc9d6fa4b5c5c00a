"""Offline half of the product: train the course CNN, export it to ONNX, publish it."""
