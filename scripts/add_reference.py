"""Add the drift reference to shipped versions' metadata.json, computed with onnxruntime on the test split.

    .venv/bin/python scripts/add_reference.py models/fashion-mnist/1 models/fashion-mnist-int8/1 ...

Versions published since issue 21 get theirs at publish time (training/publish.py). Only the
"reference" key is written: every other key is kept as it is, and model.onnx is never touched.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelrepo import MODEL_FILE  # noqa: E402
from training.data import load_data  # noqa: E402
from training.evaluate import reference_onnx  # noqa: E402


def with_key(text: str, key: str, value) -> str:
    """The JSON object text with `key` set: a textual edit, so every other byte stays as it was."""
    metadata = json.loads(text)
    body = json.dumps(value, indent=2).replace("\n", "\n  ")
    if key in metadata:  # a rerun: replace the previous value, which this function wrote last
        text = text[: text.index(f'"{key}": ')].rstrip().rstrip(",") + "\n}"
    end = text.rstrip().rindex("}")
    edited = f'{text[:end].rstrip()},\n  "{key}": {body}\n}}' + text[end + 1 :]
    assert json.loads(edited) == metadata | {key: value}, "the edit changed more than its key"
    return edited


def main(versions: list[str]) -> int:
    test = load_data().test
    for folder in map(Path, versions):
        reference = reference_onnx(folder / MODEL_FILE, test).model_dump()
        path = folder / "metadata.json"
        path.write_text(with_key(path.read_text(), "reference", reference))
        print(f"{folder}: class share {[round(s, 3) for s in reference['class_share']]}, "
              f"confidence {reference['confidence_mean']:.4f}, intensity {reference['input_mean_intensity']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
