"""What every exported model promises the service, in one TensorFlow-free place: the exporter
names the graph's tensors after it and the metadata describes them with it."""

INPUT_NAME = "images"  # FP32 [batch, 28, 28, 1]
OUTPUT_NAME = "probabilities"  # FP32 [batch, 10]
INPUT_RANGE = (0.0, 1.0)  # pixel values the model was trained on
# The ten Fashion-MNIST classes, in label order: written into each version's metadata, which is
# where the service reads them (the metadata is their one source once a version is published).
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
