"""The naive baseline (issue 15): the plain Flask script a user would write instead of our service.

    MODEL_PATH=models/fashion-mnist/1/model.onnx gunicorn -w 2 -k sync 'benchmarks.naive_app:create_app()'

Deliberately plain: no batching, no metrics, no validation, Flask's own JSON, one onnxruntime
session per worker with one intra-op thread, created on the first request (after gunicorn's fork).
Body: {"instances": [[784 floats], ...]} (the peer table's format); answer: {"predictions": [...]}.
"""
from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request

from service.device import providers  # the service's provider choice, so DEVICE=cuda finds CUDA too


def create_app() -> Flask:
    """Build the app; the model is loaded on the first request, in the worker that serves it."""
    app = Flask(__name__)
    session: ort.InferenceSession | None = None

    @app.post("/predict")
    def predict():
        nonlocal session
        if session is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            session = ort.InferenceSession(os.environ["MODEL_PATH"], options, providers=providers(os.environ.get("DEVICE", "cpu")))
        images = np.asarray(request.get_json()["instances"], dtype=np.float32).reshape(-1, 28, 28, 1)
        probabilities = session.run(None, {session.get_inputs()[0].name: images})[0]
        return jsonify(predictions=probabilities.tolist())

    return app
