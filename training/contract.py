"""What every exported model promises the service, in one TensorFlow-free place: the exporter
names the graph's tensors after it and the metadata describes them with it."""

INPUT_NAME = "images"  # FP32 [batch, 28, 28, 1]
OUTPUT_NAME = "probabilities"  # FP32 [batch, 10]
INPUT_RANGE = (0.0, 1.0)  # pixel values the model was trained on
