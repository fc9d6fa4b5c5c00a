"""Typed settings, read from the environment once and validated before anything starts."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class SettingsError(ValueError):
    """An environment variable holds an invalid value; the message names it."""


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. The field name, upper-cased, is the environment variable."""

    port: int = 8000
    host: str = "0.0.0.0"
    model_repository: Path = Path("./models")
    model_name: str = "fashion-mnist"
    model_version: int | None = None  # None: follow the newest version
    device: str = "auto"
    web_concurrency: int = field(default_factory=lambda: max(1, min(_cores(), 4)))
    threads: int = 16  # gthread threads per worker: concurrent requests each worker can hold
    intra_op_threads: int = 0  # onnxruntime threads per session; 0: cores // workers
    max_request_bytes: int = 8 * 1024 * 1024
    max_batch_images: int = 256
    max_batch_size: int = 64
    max_queue_delay_ms: float = 2.0
    reload_poll_seconds: float = 10.0
    graceful_timeout: int = 30
    admin_token: str = ""
    log_level: str = "info"
    control_dir: Path | None = None  # set by the launcher: where admin load/unload reach all workers

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from environ (default os.environ); overrides win. Raises SettingsError."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f.name.upper())
            if f.name in overrides or raw is None or (raw == "" and f.name != "admin_token"):
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        settings = cls(**(values | overrides))
        settings.validate()
        return settings

    def validate(self) -> None:
        checks = [
            (1 <= self.port <= 65535, "PORT", "must be a TCP port (1-65535)"),
            (self.device in DEVICES, "DEVICE", f"must be one of {', '.join(DEVICES)}"),
            (self.web_concurrency >= 1, "WEB_CONCURRENCY", "must be at least 1"),
            (self.threads >= 1, "THREADS", "must be at least 1"),
            (self.intra_op_threads >= 0, "INTRA_OP_THREADS", "must be 0 (auto) or more"),
            (self.max_request_bytes >= 1024, "MAX_REQUEST_BYTES", "must be at least 1024"),
            (self.max_batch_images >= 1, "MAX_BATCH_IMAGES", "must be at least 1"),
            (self.max_batch_size >= 1, "MAX_BATCH_SIZE", "must be at least 1 (1 disables batching)"),
            (self.max_queue_delay_ms >= 0, "MAX_QUEUE_DELAY_MS", "must not be negative"),
            (self.reload_poll_seconds >= 0, "RELOAD_POLL_SECONDS", "must not be negative (0 disables polling)"),
            (self.graceful_timeout >= 1, "GRACEFUL_TIMEOUT", "must be at least 1"),
            (self.log_level in LOG_LEVELS, "LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}"),
            (self.model_version is None or self.model_version >= 1, "MODEL_VERSION", "must be a positive integer"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise SettingsError(f"{name} {message}, got {getattr(self, name.lower())!r}")

    @property
    def session_threads(self) -> int:
        """onnxruntime intra-op threads, so that workers × threads ≈ cores."""
        return self.intra_op_threads or max(1, _cores() // self.web_concurrency)


def _parse(name: str, kind: str, raw: str):
    env = name.upper()
    try:
        if kind in ("int", "int | None"):
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
        if name in ("device", "log_level"):
            return raw.strip().lower()
        return raw
    except ValueError:
        word = {"int": "an integer", "float": "a number"}.get(kind.split(" ")[0], kind)
        raise SettingsError(f"{env} must be {word}, got {raw!r}") from None


ENV_VARS: tuple[str, ...] = tuple(f.name.upper() for f in fields(Settings)) + ("PROMETHEUS_MULTIPROC_DIR",)
