"""The model manager: the one owner of what this worker serves.

Routes ask it for a served version, the repository index, a model card or a report file.
Operators load and unload through it, and it tells the other workers itself, through the
decisions file (modelrepo.Decisions): a decision is tried here first and recorded only if it
works, so a failed one changes nothing anywhere. The poller calls `apply_decisions` and `scan`.

A version that fails to be listed, read, verified, opened or warmed up, whatever the exception,
is failed: logged once, counted, and retried only when its files change. The version served
before keeps serving, and a broken version of one model never stops the others.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import modelrepo
from modelrepo import Decision, Metadata
from service import metrics
from service.batcher import Batcher
from service.errors import LoadFailed, ModelNotFound, NotReady
from service.runtime import InvalidModel, ModelRuntime
from service.served import Served
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    """One model's state in this worker."""

    name: str
    decision: Decision
    current: Served | None = None
    failed: dict[int, tuple] = field(default_factory=dict)  # version → its files' signature when it failed
    last_error: str = ""


@dataclass(frozen=True)
class Card:
    """What the model card page shows: the served version, else the newest whose metadata reads."""

    name: str
    metadata: Metadata | None
    version: int | None
    served: bool
    problem: str
    images: list[str]
    versions: list[dict]


class ModelManager:
    def __init__(self, settings: Settings, providers: list[str]):
        self._settings = settings
        self._repository = settings.model_repository
        self._providers = providers
        # Replaced, never mutated, so request threads read a consistent dict without the lock.
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.RLock()
        self._decisions = modelrepo.Decisions(settings.control_dir)
        self._decisions_seen: int | None = None

    # -- reading (the request path) -------------------------------------------------------------
    def get(self, name: str, version: str | None = None) -> Served:
        """The served version of `name`, checked against `version` when the URL names one."""
        slot = self._slots.get(name)
        if slot is None:
            raise ModelNotFound(f"unknown model {name!r}; available: {', '.join(sorted(self._slots)) or 'none'}")
        served = slot.current
        if served is None:
            why = "unloaded by an operator" if slot.decision.unloaded else f"not loaded: {slot.last_error or 'no valid version'}"
            raise NotReady(f"model {name!r} is {why}")
        if version is not None and version != str(served.version):
            raise ModelNotFound(f"version {version!r} of {name!r} is not served (serving version {served.version})")
        return served

    def ready(self, name: str | None = None) -> bool:
        slot = self._slots.get(name or self._settings.model_name)
        return slot is not None and slot.current is not None

    def names(self) -> frozenset[str]:
        """The models this worker knows (label values for metrics)."""
        return frozenset(self._slots)

    def versions(self, name: str) -> list[int]:
        try:
            return modelrepo.list_versions(self._repository, name)
        except modelrepo.RepositoryError:
            return []

    def index(self) -> list[dict]:
        """Every version on disk with its state, as the OIP repository extension lists them."""
        rows = []
        for name, slot in sorted(self._slots.items()):
            served = slot.current.version if slot.current else None
            for version in self.versions(name):
                state = "READY" if version == served else "UNAVAILABLE" if version in slot.failed else "AVAILABLE"
                rows.append({"name": name, "version": str(version), "state": state,
                             "reason": "failed to load" if version in slot.failed else ""})
        return rows

    def card(self, name: str) -> Card:
        problem, metadata, version = "", None, None
        try:
            served = self.get(name)
            metadata, version = served.metadata, served.version
        except (ModelNotFound, NotReady) as exc:
            problem = str(exc)
            metadata, version = self._newest_readable(name)
        images = [f for f in modelrepo.REPORT_IMAGES if version and self._report_exists(name, version, f)]
        rows = [row for row in self.index() if row["name"] == name]
        return Card(name, metadata, version, not problem, problem, images, rows)

    def report_file(self, name: str, version: str, filename: str) -> Path:
        """A file of one version's report/ folder, resolved safely inside the repository."""
        number = modelrepo.parse_version(version)
        if number is None or number not in self.versions(name):
            raise ModelNotFound(f"no version {version!r} of {name!r}")
        try:
            return modelrepo.report_file(self._repository, name, number, filename)
        except (OSError, modelrepo.RepositoryError):
            raise ModelNotFound(f"no report file {filename!r} for {name}/{version}") from None

    # -- changing (start-up, poller, operators) -------------------------------------------------
    def start(self) -> None:
        """Load every model in the repository; never raises, so a broken repository never stops a boot."""
        self._slot(self._settings.model_name)
        self.scan()
        self.apply_decisions()

    def scan(self) -> None:
        """Pick up new models and versions; one model's failure never stops another's reload."""
        for name in sorted({*modelrepo.list_models(self._repository), *self._slots}):
            try:
                self.refresh(name)
            except Exception:  # a bug of ours; the others must still be refreshed
                log.exception("refreshing %s failed", name)

    def refresh(self, name: str) -> None:
        """Serve the pinned or newest loadable version of `name`, if that is not served already."""
        with self._lock:
            slot = self._slot(name)
            if slot.decision.unloaded:
                self._drop(slot)
                return
            choice = self._choose(slot, slot.decision.pinned)
            if isinstance(choice, tuple):
                self._swap(slot, *choice)

    def load(self, name: str, version: int | None) -> Served:
        """Serve `version` (a pin) or, with None, follow the newest; every worker follows."""
        self._known(name)
        with self._lock:
            if version is not None and version not in self.versions(name):
                raise ModelNotFound(f"no version {version} of {name!r}; on disk: {self.versions(name)}")
            slot = self._slot(name)
            choice = self._choose(slot, version, retry=True)  # an explicit request retries failed versions
            if choice is None:
                raise LoadFailed(f"cannot load {name}/{version or 'newest'}: {slot.last_error or 'no valid version'}")
            decision = Decision(pinned=version)
            self._decisions.decide(name, decision)  # recorded only once it is known to work
            slot.decision = decision
            if isinstance(choice, tuple):
                self._swap(slot, *choice)
            return slot.current

    def unload(self, name: str) -> None:
        """Stop serving `name` until it is loaded again; every worker follows."""
        self._known(name)
        with self._lock:
            decision = Decision(unloaded=True)
            self._decisions.decide(name, decision)
            slot = self._slot(name)
            slot.decision = decision
            self._drop(slot)

    def apply_decisions(self) -> None:
        """Follow the decisions other workers recorded since the last call."""
        stamp = self._decisions.stamp()
        if stamp == self._decisions_seen:
            return
        self._decisions_seen = stamp
        for name, decision in self._decisions.read().items():
            with self._lock:
                slot = self._slot(name)
                if slot.decision != decision:
                    slot.decision = decision
                    self.refresh(name)

    # -- internals ------------------------------------------------------------------------------
    def _known(self, name: str) -> None:
        if name not in self._slots and name not in modelrepo.list_models(self._repository):
            raise ModelNotFound(f"unknown model {name!r}")

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            pinned = self._settings.model_version if name == self._settings.model_name else None
            slot = _Slot(name, Decision(pinned=pinned))
            metrics.declare_model(name)
            self._slots = {**self._slots, name: slot}
        return slot

    def _choose(self, slot: _Slot, pinned: int | None, retry: bool = False) -> Served | tuple[ModelRuntime, tuple] | None:
        """The best candidate: the served version if it comes first, a newly opened one (with its
        files' signature), or None when nothing loads. `retry`: an operator asked, so versions that
        failed before are tried again, and a served version whose files broke is refused."""
        try:
            versions = list(modelrepo.candidates(self._repository, slot.name, pinned))
        except modelrepo.RepositoryError as exc:
            if str(exc) != slot.last_error:  # logged once, not on every poll
                log.error("not refreshing %s: %s", slot.name, exc)
            slot.last_error = str(exc)
            return None
        for version in versions:
            signature = _signature(modelrepo.version_dir(self._repository, slot.name, version))
            if slot.current is not None and slot.current.version == version:
                return slot.current if self._intact(slot, signature) or not retry else None
            if not retry and slot.failed.get(version) == signature:
                continue
            try:
                runtime = ModelRuntime.load(self._repository, slot.name, version, self._providers, self._settings.session_threads,
                                            expect=slot.current.metadata if slot.current else None,
                                            max_batch=max(self._settings.max_batch_size, self._settings.max_batch_images))
            except Exception as exc:
                self._fail(slot, version, signature, exc)
                continue
            return runtime, signature
        return None

    def _intact(self, slot: _Slot, signature: tuple) -> bool:
        """Whether the served version's files still verify. It keeps serving from memory either
        way; a change that breaks them is logged and counted once, like any failed version."""
        served = slot.current
        if signature == served.files:
            return True
        try:
            modelrepo.verify(self._repository, slot.name, served.version)
        except modelrepo.RepositoryError as exc:
            slot.last_error = f"version {served.version} (served from memory) no longer verifies on disk: {exc}"
            if slot.failed.get(served.version) != signature:
                slot.failed[served.version] = signature
                metrics.LOAD_FAILURES.labels(slot.name).inc()
                log.error("%s/%s changed on disk and no longer verifies (%s); still serving it from memory",
                          slot.name, served.version, exc)
            return False
        slot.current = replace(served, files=signature)  # touched, still intact
        return True

    def _fail(self, slot: _Slot, version: int, signature: tuple, exc: Exception) -> None:
        slot.failed[version] = signature
        metrics.LOAD_FAILURES.labels(slot.name).inc()
        slot.last_error = f"version {version}: {exc}"
        # InvalidModel says what is wrong with the files; anything else is a bug worth a traceback.
        log.error("not serving %s/%s: %s", slot.name, version, exc, exc_info=None if isinstance(exc, InvalidModel) else exc)

    def _swap(self, slot: _Slot, runtime: ModelRuntime, files: tuple) -> None:
        s = self._settings
        batcher = Batcher(runtime.run, slot.name, s.max_batch_size, s.max_queue_delay_ms)
        old, slot.current = slot.current, Served(runtime, batcher, files)
        metrics.MODEL_INFO.labels(slot.name, str(runtime.version), runtime.provider).set(1)
        metrics.IMAGES.labels(slot.name, str(runtime.version))
        # Requests holding the old version finish on it; its session goes when they let go.
        if old is not None and old.version != runtime.version:
            metrics.MODEL_INFO.labels(slot.name, str(old.version), old.provider).set(0)
        log.info("serving %s/%s on %s (pid %d)", slot.name, runtime.version, runtime.provider, os.getpid())

    def _drop(self, slot: _Slot) -> None:
        if slot.current is not None:
            metrics.MODEL_INFO.labels(slot.name, str(slot.current.version), slot.current.provider).set(0)
            slot.current = None

    def _newest_readable(self, name: str) -> tuple[Metadata | None, int | None]:
        for version in reversed(self.versions(name)):
            try:
                return modelrepo.verify(self._repository, name, version), version
            except modelrepo.RepositoryError:
                continue
        return None, None

    def _report_exists(self, name: str, version: int, filename: str) -> bool:
        try:
            modelrepo.report_file(self._repository, name, version, filename)
        except (OSError, modelrepo.RepositoryError):
            return False
        return True


def _signature(directory: Path) -> tuple:
    """What a version's files look like now; a failed version is retried when this changes."""
    try:
        with os.scandir(directory) as entries:
            return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size, e.inode()) for e in entries))
    except OSError as exc:
        return ("unreadable", exc.errno)
