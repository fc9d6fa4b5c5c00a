"""The decoder processes themselves: real processes, real limits, real bombs; no server.

A process past its CPU budget, its address-space limit or its wall-time deadline is killed (or
retires) and replaced, and the caller gets the typed error; the pool never shrinks, and every
bomb is refused by the limits alone, without the format checks in front (service/decode/admit.py).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.worst_images import encode
from service.decode import admit, pixels
from service.decode.sandbox import Busy, Limits, Overrun, Sandbox
from service.settings import Settings
from tests.hostile_images import decoder_bombs, gif_comments, picture, png_chunks, progressive_jpeg_scans

CAPS = (16_000_000, 48_000_000, 28)  # the default MAX_IMAGE_PIXELS and MAX_REQUEST_PIXELS, the model's side
ORDINARY = encode(picture((300, 200)), "PNG")


@contextmanager
def _sandbox(memory_mb: int = 128, timeout: float = 30, wait: float = 5) -> Iterator[Sandbox]:
    sandbox = Sandbox(Limits(1, memory_mb, timeout, wait))
    yield sandbox
    pids = sandbox.pids()
    sandbox.close()
    assert all(_gone(pid) for pid in pids)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with _sandbox() as pool:
        yield pool


def _gone(pid: int) -> bool:
    """Killed and reaped: no process, not even a zombie, has the pid."""
    return not Path(f"/proc/{pid}").exists()


def _record(errors: list[Exception], call, *args) -> None:
    try:
        call(*args)
    except Exception as exc:  # the test thread asserts on it
        errors.append(exc)


def _assert_replaced(sandbox: Sandbox, before: list[int]) -> None:
    (after,) = sandbox.pids()
    assert after not in before and all(_gone(pid) for pid in before)
    small, _, _ = sandbox.decode(ORDINARY, 1.0, *CAPS).result()  # the new process decodes
    assert max(small.size) >= pixels.REDUCING_GAP * 28


def test_a_decoder_past_its_cpu_budget_is_killed_and_replaced(sandbox):
    before = sandbox.pids()

    with pytest.raises(Overrun) as error:
        sandbox.decode(png_chunks(), 0.2, *CAPS)

    assert error.value.limit == "cpu"
    _assert_replaced(sandbox, before)


@pytest.mark.parametrize("bomb", [gif_comments, lambda: encode(Image.new("RGBA", (3999, 3999)), "PNG")],
                         ids=["gif-comments", "png-rgba-16-megapixels"])
def test_a_decoder_past_its_memory_limit_gets_out_of_memory_and_is_replaced(bomb):
    with _sandbox(memory_mb=64) as sandbox:  # a 16 MP RGBA canvas alone is 64 MB
        before = sandbox.pids()

        reply = sandbox.decode(bomb(), 10.0, *CAPS)

        with pytest.raises(pixels.OutOfMemory):
            reply.result()
        _assert_replaced(sandbox, before)


def test_a_decoder_past_its_deadline_is_killed_and_replaced():
    with _sandbox(timeout=0.2) as sandbox:
        before = sandbox.pids()

        with pytest.raises(Overrun) as error:
            sandbox.decode(progressive_jpeg_scans(), 30.0, *CAPS)

        assert error.value.limit == "time"
        _assert_replaced(sandbox, before)


def test_a_job_waits_for_a_free_decoder_no_longer_than_it_may():
    with _sandbox(wait=0.1) as sandbox:
        errors: list[Exception] = []
        busy = threading.Thread(target=lambda: _record(errors, sandbox.decode, progressive_jpeg_scans(), 3.0, *CAPS))
        busy.start()
        while sandbox.pids():  # until the only process has taken the job
            threading.Event().wait(0.01)

        with pytest.raises(Busy):
            sandbox.decode(ORDINARY, 1.0, *CAPS)

        busy.join()
        assert [type(error) for error in errors] == [Overrun] and len(sandbox.pids()) == 1


@pytest.mark.parametrize("spec", decoder_bombs(), ids=lambda spec: spec.name)
def test_the_limits_alone_refuse_every_bomb(sandbox, spec):
    data = spec.build()
    assert not admit.in_process(data, admit.header(data), admit.FAST_REQUEST_BYTES)

    with pytest.raises((Overrun, pixels.DecodeError)):  # no format check in front: only the kernel's limits
        sandbox.decode(data, 1.0, *CAPS).result()

    assert len(sandbox.pids()) == 1


@pytest.mark.parametrize("options", [{"quality": 10}, {"lossless": True}, {"quality": 10, "exif": b"Exif\x00\x00"}],
                         ids=["lossy", "lossless", "extended"])
def test_a_webp_over_the_pixel_cap_is_refused_by_its_header_even_where_libwebp_cannot_start(options):
    data = encode(Image.new("RGB", (4000, 4000)), "WEBP", **options)
    assert pixels.webp_size(data) == (4000, 4000)
    with _sandbox(memory_mb=Settings().decode_memory_mb) as sandbox:  # the default memory limit
        with pytest.raises(pixels.TooManyPixels, match="4000×4000"):  # before: Unreadable, a 400 "not an image format"
            sandbox.decode(data, 1.0, *CAPS).result()
        small, _, _ = sandbox.decode(encode(Image.new("RGB", (1000, 900)), "WEBP", **options), 1.0, *CAPS).result()
    assert small.size[0] >= pixels.REDUCING_GAP * 28


def test_an_ordinary_small_image_decodes_in_process():
    data = encode(picture((28, 28), "L"), "PNG")
    assert admit.in_process(data, admit.header(data), admit.FAST_REQUEST_BYTES)
