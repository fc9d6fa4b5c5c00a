"""The capture store on SQLite and on a real PostgreSQL: write, find, label, read by time, retention."""
from __future__ import annotations

import numpy as np
import pytest

import store

T0 = 1_700_000_000.0


def _row(request_id: str, index: int = 0, at: float = T0, predicted: int = 3) -> dict:
    pixels = np.full((28, 28), index, np.uint8)
    probabilities = np.eye(10, dtype=np.float32)[predicted]
    return {"request_id": request_id, "image_index": index, "captured_at": at, "api": "v1", "model": "m", "version": 2,
            "input": pixels.tobytes(), "dtype": pixels.dtype.str, "shape": "28,28", "predicted": predicted,
            "probabilities": probabilities.tobytes()}


@pytest.fixture
def engine(store_url):
    engine = store.connect(store_url)
    yield engine
    engine.dispose()


def test_a_capture_reads_back_as_the_model_saw_it(engine):
    store.insert(engine, [_row("a", 0), _row("a", 1, predicted=7)])
    capture = store.find(engine, "a", 1, not_before=0)
    assert capture.input.shape == (28, 28) and capture.input.dtype == np.uint8 and (capture.input == 1).all()
    assert capture.predicted == 7 and capture.probabilities.argmax() == 7 and capture.label is None
    assert store.find(engine, "a", 2, not_before=0) is None
    assert store.find(engine, "a", 0, not_before=T0 + 1) is None  # older than the retention


def test_a_repeated_client_id_addresses_its_newest_capture(engine):
    store.insert(engine, [_row("same", at=T0, predicted=1)])
    store.insert(engine, [_row("same", at=T0 + 5, predicted=2)])
    assert store.find(engine, "same", 0, 0).predicted == 2


def test_labels_last_write_wins_but_public_never_replaces_token(engine):
    store.insert(engine, [_row("a"), _row("b")])
    assert store.label(engine, "a", 0, 4, "token", T0 + 1, 0) is store.Outcome.RECORDED
    assert store.label(engine, "a", 0, 5, "token", T0 + 2, 0) is store.Outcome.RECORDED
    assert store.label(engine, "a", 0, 6, "public", T0 + 3, 0) is store.Outcome.KEPT
    assert store.label(engine, "b", 0, 6, "public", T0 + 3, 0) is store.Outcome.RECORDED
    assert store.label(engine, "b", 0, 7, "public", T0 + 4, 0) is store.Outcome.RECORDED
    assert store.label(engine, "zzz", 0, 7, "token", T0 + 4, 0) is store.Outcome.UNKNOWN
    a, b = store.find(engine, "a", 0, 0), store.find(engine, "b", 0, 0)
    assert (a.label, a.label_source, b.label, b.label_source) == (5, "token", 7, "public")


def test_the_job_reads_labelled_captures_by_time_and_source(engine):
    store.insert(engine, [_row(f"r{i}", at=T0 + i) for i in range(6)])
    for i in range(5):
        store.label(engine, f"r{i}", 0, i, "public" if i == 4 else "token", T0 + 100 + i, 0)
    window = [c.request_id for c in store.labelled(engine, T0 + 101, T0 + 104, chunk=2)]
    assert window == ["r1", "r2", "r3"]
    assert [c.request_id for c in store.labelled(engine, 0, T0 + 1000, sources=["token"])] == ["r0", "r1", "r2", "r3"]
    assert len(list(store.labelled(engine, 0, T0 + 1000, model="other"))) == 0


def test_a_row_whose_bytes_disagree_with_its_dtype_or_shape_reads_as_empty_and_the_rest_still_read(engine):
    broken = [_row("short") | {"input": b"\x00" * 5}, _row("dtype") | {"dtype": "not a dtype"},
              _row("shape") | {"shape": "3,x"}, _row("object") | {"dtype": "|O"}]
    store.insert(engine, [*broken, _row("fine")])
    for i, row in enumerate([*broken, _row("fine")]):
        store.label(engine, row["request_id"], 0, 1, "token", T0 + i, 0)
    read = {c.request_id: c.input.size for c in store.labelled(engine, 0, T0 + 100)}
    assert read == {"short": 0, "dtype": 0, "shape": 0, "object": 0, "fine": 784}


def test_retention_removes_what_is_too_old_then_the_oldest_past_the_count(engine):
    store.insert(engine, [_row(f"r{i}", at=T0 + i) for i in range(10)])
    assert store.prune(engine, max_rows=100, max_age_seconds=5.5, now=T0 + 10) == 5  # r0…r4 older than 5.5 s
    assert store.prune(engine, max_rows=3, max_age_seconds=1e9, now=T0 + 10) == 2
    assert store.count(engine) == 3
    assert [store.find(engine, f"r{i}", 0, 0) is not None for i in (6, 7, 8, 9)] == [False, True, True, True]
    assert store.prune(engine, max_rows=3, max_age_seconds=1e9, now=T0 + 10) == 0


def test_an_unknown_scheme_is_refused_with_its_name():
    with pytest.raises(ValueError, match="mysql"):
        store.connect("mysql://x/y")
