"""The course CNN, layer for layer (Géron, Hands-On ML, chapter 14)."""
from __future__ import annotations

import keras
from keras import layers

from training.contract import INPUT_NAME
from training.data import CLASSES

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = CLASSES
PARAMETERS = 1_413_834


def build_model() -> keras.Model:
    """Conv(64,7) → pool → 2×Conv(128) → pool → 2×Conv(256) → pool → 128 → 64 → 10."""
    conv = lambda filters, size=3: layers.Conv2D(filters, size, activation="relu", padding="same")  # noqa: E731
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE, name=INPUT_NAME),
            conv(64, 7),
            layers.MaxPooling2D(2),
            conv(128),
            conv(128),
            layers.MaxPooling2D(2),
            conv(256),
            conv(256),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="fashion_mnist_cnn",
    )
