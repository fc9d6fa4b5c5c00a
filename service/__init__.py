"""Online half of the product: serve the model repository over HTTP with onnxruntime."""
