"""Typed settings, read from the environment once and validated before anything starts.

Each field's name, upper-cased, is its environment variable. Paths are made absolute here, once:
Flask's `send_file` and friends resolve a relative path against the package, not the working
directory, so a relative MODEL_REPOSITORY (the default, ./models) must never travel further.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service import cores

# An environment prefix that no variable has: `from_env(mapping)` reads the mapping alone.
_NO_ENV = "__SERVICE_SETTINGS_FROM_A_MAPPING__"


class SettingsError(ValueError):
    """An environment variable holds an invalid value; the message names it."""


def _cores() -> int:
    # The affinity mask capped by the cgroup's CPU quota: under a 2-CPU limit on a 64-core node,
    # the mask alone sized 4 workers of 16 intra-op threads each, throttled by the quota.
    return cores.count()


class Settings(BaseSettings):
    """Every knob of the service, with its default and its valid range."""

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore", protected_namespaces=())

    # -- where and what ----------------------------------------------------------------------------
    port: int = Field(8000, ge=1, le=65535)
    host: str = "0.0.0.0"
    model_repository: Path = Path("./models")
    model_name: str = "fashion-mnist"
    model_version: int | None = Field(None, ge=1)  # None: follow the newest version
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # -- processes and threads ---------------------------------------------------------------------
    web_concurrency: int = Field(default_factory=lambda: max(1, min(_cores(), 4)), ge=1)
    threads: int = Field(16, ge=1)  # gthread threads per worker: concurrent requests each worker can hold
    intra_op_threads: int = Field(0, ge=0)  # onnxruntime threads per session; 0: cores // workers
    # -- limits on what a client may send ----------------------------------------------------------
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_batch_images: int = Field(256, ge=1)
    max_image_pixels: int = Field(16_000_000, ge=1024)  # one decoded image
    max_request_pixels: int = Field(48_000_000, ge=1024)  # every image of one request together
    request_read_timeout: float = Field(10.0, gt=0)  # seconds for a request's head and body to arrive
    # -- decoding images, in processes the kernel limits (service/decode/) ---------------------------
    # Decoder processes per worker: at most this many costly images decode at once per worker. Each
    # holds 27 MB idle and up to DECODE_MEMORY_MB more while decoding: two workers of 137 MB with one
    # each stay under 600 MB, of the 1 GiB container limit.
    decode_processes: int = Field(1, ge=1, le=16)
    # Address space a decoder may add to its idle self (RLIMIT_AS). The largest ordinary decode under
    # MAX_IMAGE_PIXELS, a 16 MP transparent PNG (a 64 MB RGBA canvas), fits in 72 MB and not in 64.
    decode_memory_mb: int = Field(96, ge=32, le=4096)
    # CPU seconds a request's images may use in decoders, all together (ITIMER_PROF, RLIMIT_CPU). The
    # worst ordinary request under the pixel caps, three 16 MP transparent PNGs, uses 0.8 s on the
    # 2-core EPYC; a bomb costs this plus about 0.2 s (the worker's share, a new decoder's start).
    decode_cpu_seconds: float = Field(1.5, gt=0, le=60)
    # Wall seconds one image may take in a decoder before it is killed (stuck, or starved of CPU).
    decode_timeout: float = Field(10.0, gt=0, le=300)
    # Seconds a request waits for a free decoder; then 503 with Retry-After (a queue with a deadline).
    decode_wait_seconds: float = Field(5.0, ge=0, le=60)
    # -- batching ------------------------------------------------------------------------------------
    max_batch_size: int = Field(64, ge=1)
    max_queue_delay_ms: float = Field(2.0, ge=0)
    # -- lifecycle -----------------------------------------------------------------------------------
    reload_poll_seconds: float = Field(10.0, ge=0)
    graceful_timeout: int = Field(30, ge=1)
    admin_token: str = ""
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # -- metrics -------------------------------------------------------------------------------------
    # prometheus_client's multiprocess directory, set and wiped by `python -m service` before gunicorn
    # starts (never by the app). None: one process (tests), the default registry.
    prometheus_multiproc_dir: Path | None = None
    # -- the model repository ------------------------------------------------------------------------
    # A scan (or an admin call waiting on one) past this many seconds is abandoned: logged, counted
    # in serving_repository_scan_timeouts_total. A worker boots with what loaded by then. Sane: a
    # few times the slowest version's load and warm-up (seconds on a CPU, more for cuDNN tuning).
    repository_scan_timeout: float = Field(30.0, gt=0)
    # -- capture: what the model saw, kept for drift analysis and retraining (store/, capture.py) -----
    # Each classified image is kept as the model's input (v1: the 28×28 uint8 view; v2: the tensor)
    # with its prediction. SQLite by default (one file, relative to the working directory); a
    # postgresql+psycopg:// URL for several replicas. The request never waits for the store.
    capture_enabled: bool = True
    capture_url: str = "sqlite:///./captures.db"
    capture_sample_rate: float = Field(1.0, ge=0, le=1)  # share of images kept, drawn at random
    # Retention, enforced by each worker's writer every CAPTURE_PRUNE_SECONDS: the oldest rows go
    # past the row count, every row past the age. 1M rows of v1 captures is about 1 GB.
    capture_max_rows: int = Field(1_000_000, ge=1)
    capture_max_age_hours: float = Field(720.0, gt=0)  # 30 days
    capture_prune_seconds: float = Field(60.0, gt=0)
    # A worker's queue of captures waiting for its writer thread; past it captures are dropped
    # (serving_capture_dropped_total{reason="queue_full"}), never the request.
    capture_queue_size: int = Field(2048, ge=1, le=1_000_000)
    capture_batch_size: int = Field(256, ge=1, le=10_000)  # rows per INSERT transaction
    # -- feedback: true labels for captured images (POST /v1/feedback) ------------------------------
    # Labels train the next model, so a wrong one is an attack: by default only the holder of
    # FEEDBACK_TOKEN may label. FEEDBACK_PUBLIC=1 also takes labels from anyone (the web page's
    # "Wrong?"), stored as source "public" and limited per client address and worker.
    feedback_token: str = ""
    feedback_public: bool = False
    feedback_public_per_minute: int = Field(10, ge=1, le=10_000)
    # Proxies in front of the service that append the client's address to X-Forwarded-For (nginx
    # in the compose stack: 1). The client address, which public labels are limited by, is then
    # the one that many entries from the right; 0 takes the socket's peer, which behind a proxy is
    # the proxy, and every public client would share one limit. Never more than there are
    # proxies: a client can write the entries to their left.
    forwarded_for_hops: int = Field(0, ge=0, le=10)

    @field_validator("device", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("capture_url")
    @classmethod
    def _store_scheme(cls, url: str) -> str:
        # Checked here so a typo stops the launcher, rather than dropping every capture at run time.
        if not url.startswith(("sqlite:///", "postgresql+psycopg://")):
            raise ValueError("a sqlite:///path or postgresql+psycopg://user:password@host/database URL")
        return url

    @field_validator("model_repository", "prometheus_multiproc_dir")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return path.expanduser().resolve() if path is not None else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from os.environ (or from a mapping alone); overrides win. Raises SettingsError."""
        try:
            if environ is None:
                return cls(**overrides)
            values = {name: environ[name.upper()] for name in cls.model_fields if environ.get(name.upper())}
            return cls(_env_prefix=_NO_ENV, **(values | overrides))
        except ValidationError as exc:
            error = exc.errors()[0]
            variable = str(error["loc"][0]).upper() if error["loc"] else "a setting"
            raise SettingsError(f"{variable}: {error['msg']}, got {error.get('input')!r}") from None

    @property
    def session_threads(self) -> int:
        """onnxruntime intra-op threads, so that workers × threads ≈ cores."""
        return self.intra_op_threads or max(1, _cores() // self.web_concurrency)

    @property
    def every_core_threads(self) -> int:
        """Threads of the session a run uses when it is alone in the server (0: none; INTRA_OP_THREADS fixes it)."""
        return 0 if self.intra_op_threads else _cores()


ENV_VARS: tuple[str, ...] = tuple(name.upper() for name in Settings.model_fields)
