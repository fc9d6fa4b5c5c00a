"""The models this worker serves: initial load, polling for new versions, atomic swaps, pins.

Each worker keeps its own sessions. A swap replaces one reference: requests that already hold
the old version finish on it, new requests get the new one. A version that fails to load is
remembered by its files' signature, so it is retried only when those files change.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import modelrepo
from service import control
from service.batcher import Batcher
from service.errors import ModelNotFound, NotReady
from service.metrics import LOAD_FAILURES, MODEL_INFO
from service.runtime import InvalidModel, ModelRuntime
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Served:
    """A loaded version and the batcher that feeds it."""

    runtime: ModelRuntime
    batcher: Batcher

    @property
    def version(self) -> int:
        return self.runtime.version

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.batcher.submit(images)


@dataclass
class Slot:
    name: str
    pinned: int | None = None
    unloaded: bool = False
    current: Served | None = None
    failed: dict[int, tuple] = field(default_factory=dict)
    last_error: str = ""


def _signature(directory: Path) -> tuple:
    try:
        return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir()))
    except FileNotFoundError:
        return ()


class Registry:
    def __init__(self, settings: Settings, providers: list[str]):
        self.settings = settings
        self.providers = providers
        self.slots: dict[str, Slot] = {}
        self._lock = threading.RLock()
        self._control = control.Reader(settings.control_dir)
        self._stop = threading.Event()

    # -- reading (request path) -------------------------------------------------------------
    def get(self, name: str, version: str | None = None) -> Served:
        """The served version of `name` (checked against `version` when given)."""
        slot = self.slots.get(name)
        if slot is None:
            raise ModelNotFound(f"unknown model {name!r}; available: {', '.join(sorted(self.slots)) or 'none'}")
        served = slot.current
        if served is None:
            raise NotReady(f"model {name!r} is {'unloaded' if slot.unloaded else 'not loaded: ' + (slot.last_error or 'no valid version')}")
        if version is not None and version != str(served.version):
            raise ModelNotFound(f"version {version!r} of {name!r} is not served (serving version {served.version})")
        return served

    def ready(self, name: str | None = None) -> bool:
        slot = self.slots.get(name or self.settings.model_name)
        return slot is not None and slot.current is not None

    def versions(self, name: str) -> list[int]:
        return modelrepo.list_versions(self.settings.model_repository, name)

    def index(self) -> list[dict]:
        """Every version on disk with its state, as the OIP repository extension lists them."""
        rows = []
        for name, slot in sorted(self.slots.items()):
            for version in modelrepo.list_versions(self.settings.model_repository, name):
                serving = slot.current is not None and slot.current.version == version
                state = "READY" if serving else ("UNAVAILABLE" if version in slot.failed else "AVAILABLE")
                reason = "failed to load" if version in slot.failed else ""
                rows.append({"name": name, "version": str(version), "state": state, "reason": reason})
        return rows

    # -- changing (start-up, poller, admin) ----------------------------------------------------
    def start(self) -> None:
        """Load every model in the repository, then poll for changes in the background."""
        initial = {self.settings.model_name: self.settings.model_version}
        for name in {*modelrepo.list_models(self.settings.model_repository), self.settings.model_name}:
            self._slot(name, pinned=initial.get(name))
            self.refresh(name)
        self._apply_control()
        threading.Thread(target=self._poll, name="model-poller", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _slot(self, name: str, pinned: int | None = None) -> Slot:
        if name not in self.slots:
            # Touch the series so it is exported at 0: increase() needs a value before the first failure.
            LOAD_FAILURES.labels(name)
            self.slots[name] = Slot(name, pinned=pinned)
        return self.slots[name]

    def refresh(self, name: str) -> None:
        """Serve the pinned or newest loadable version of `name`, if that is not served already."""
        with self._lock:
            slot = self.slots[name]
            if slot.unloaded:
                return
            wanted = [slot.pinned] if slot.pinned else reversed(modelrepo.list_versions(self.settings.model_repository, name))
            for version in wanted:
                if slot.current is not None and slot.current.version == version:
                    return
                directory = modelrepo.version_dir(self.settings.model_repository, name, version)
                signature = _signature(directory)
                if slot.failed.get(version) == signature:
                    continue
                try:
                    runtime = ModelRuntime.load(self.settings.model_repository, name, version, self.providers, self.settings.session_threads,
                                                expect=slot.current.runtime.metadata if slot.current else None,
                                                max_batch=max(self.settings.max_batch_size, self.settings.max_batch_images))
                except InvalidModel as exc:
                    slot.failed[version], slot.last_error = signature, str(exc)
                    LOAD_FAILURES.labels(name).inc()
                    log.error("not serving %s/%s: %s", name, version, exc)
                    continue
                self._swap(slot, runtime)
                return

    def _swap(self, slot: Slot, runtime: ModelRuntime) -> None:
        s = self.settings
        served = Served(runtime, Batcher(runtime.run_first, slot.name, s.max_batch_size, s.max_queue_delay_ms))
        old, slot.current = slot.current, served
        MODEL_INFO.labels(slot.name, str(runtime.version), runtime.provider).set(1)
        # Requests holding the old version finish on it; the session goes when they let go.
        if old is not None:
            if old.version != runtime.version:
                MODEL_INFO.labels(slot.name, str(old.version), old.runtime.provider).set(0)
        log.info("serving %s/%s on %s (pid %d)", slot.name, runtime.version, runtime.provider, os.getpid())

    def unload(self, name: str) -> None:
        with self._lock:
            slot = self.slots[name]
            slot.unloaded = True
            if slot.current is not None:
                MODEL_INFO.labels(name, str(slot.current.version), slot.current.runtime.provider).set(0)
                slot.current = None

    def load(self, name: str, version: int | None) -> None:
        """Serve `version` (pinned) or, with None, follow the newest; raises if it cannot load."""
        with self._lock:
            slot = self._slot(name)
            slot.pinned, slot.unloaded = version, False
            slot.failed.pop(version, None)
            self.refresh(name)
            if slot.current is None or (version and slot.current.version != version):
                raise InvalidModel(f"cannot load {name}/{version or 'newest'}: {slot.last_error}")

    # -- coordination across workers ---------------------------------------------------------------
    def publish_control(self) -> None:
        """Share this worker's admin decisions (pins, unloads) with the other workers."""
        control.write(self.settings.control_dir, {n: {"pinned": s.pinned, "unloaded": s.unloaded} for n, s in self.slots.items()})

    def _apply_control(self) -> None:
        state = self._control.read()
        for name, wanted in (state or {}).items():
            if name not in self.slots:
                continue
            if wanted["unloaded"]:
                self.unload(name)
            else:
                slot = self.slots[name]
                slot.pinned, slot.unloaded = wanted["pinned"], False
                self.refresh(name)

    def _poll(self) -> None:
        interval = self.settings.reload_poll_seconds
        next_scan = time.monotonic() + interval
        while not self._stop.wait(min(1.0, interval) if interval else 1.0):
            try:
                self._apply_control()
                if interval and time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + interval
                    for name in {*modelrepo.list_models(self.settings.model_repository), *self.slots}:
                        self._slot(name)
                        self.refresh(name)
            except Exception:  # the poller must survive anything the filesystem does
                log.exception("model repository poll failed")
