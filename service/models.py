"""The model manager: the one owner of what this worker serves.

Routes ask it for a served version, the repository index, a model card or a report file.
Operators load and unload through it, and it tells every other worker, replica and the
retraining job through the model's decision in the repository (service/decided.py): a
decision is tried here first and recorded only if it works, so a failed one changes nothing
anywhere. The poller calls `apply_decisions` and `scan` (and stops waiting for a stuck one).

Each model's own state and its moves live in service/slots.py; a broken version of one model
never stops the others.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import modelrepo
from modelrepo import Decision, Metadata
from service import metrics
from service.decided import Decided
from service.errors import LoadFailed, ModelNotFound, NotReady
from service.served import Served
from service.settings import Settings
from service.slots import Slot, VersionOpener

log = logging.getLogger(__name__)


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
        self._opener = VersionOpener(settings.model_repository, providers, settings.session_threads, settings.every_core_threads,
                                settings.max_batch_size,
                                settings.max_queue_delay_ms, warm_up_batch=max(settings.max_batch_size, settings.max_batch_images))
        # Replaced, never mutated, so request threads read a consistent dict without the lock.
        self._slots: dict[str, Slot] = {}
        self._lock = threading.RLock()
        self._decided = Decided(settings.model_repository, settings.model_name, settings.model_version)

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

    def sessions_released(self) -> int:
        """How many sessions this worker has stopped serving so far (the poller returns their memory)."""
        return sum(slot.sessions_released for slot in self._slots.values())

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

    def report_file(self, name: str, version: str, filename: str) -> bytes:
        """A file of one version's report/ folder: inside the repository, a regular file, capped."""
        number = modelrepo.parse_version(version)
        if number is None or number not in self.versions(name):
            raise ModelNotFound(f"no version {version!r} of {name!r}")
        try:
            return modelrepo.read_report(self._repository, name, number, filename)
        except (OSError, modelrepo.RepositoryError):
            raise ModelNotFound(f"no report file {filename!r} for {name}/{version}") from None

    # -- changing (start-up, poller, operators) -------------------------------------------------
    def start(self) -> None:
        """Know the default model (and its decision) before the first scan loads anything."""
        self._slot(self._settings.model_name)

    def scan(self) -> None:
        """Pick up new models and versions, the default model first; one model's failure never
        stops another's reload."""
        default = self._settings.model_name
        for name in [default, *sorted({*modelrepo.list_models(self._repository), *self._slots} - {default})]:
            try:
                self.refresh(name)
            except Exception:  # a bug of ours; the others must still be refreshed
                log.exception("refreshing %s failed", name)

    def refresh(self, name: str) -> None:
        """Serve the pinned or newest loadable version of `name`, if that is not served already."""
        with self._lock:
            self._slot(name).follow()

    def load(self, name: str, version: int | None) -> Served:
        """Serve `version` (a pin) or, with None, follow the newest; every worker and replica follows."""
        self._known(name)
        with self._operator():
            if version is not None and version not in self.versions(name):
                raise ModelNotFound(f"no version {version} of {name!r}; on disk: {self.versions(name)}")
            slot = self._slot(name)
            choice = slot.choose(version, retry=True)  # an explicit request retries failed versions
            if choice is None:
                raise LoadFailed(f"cannot load {name}/{version or 'newest'}: {slot.last_error or 'no valid version'}")
            decision = Decision(pinned=version)
            self._decided.record(name, decision)  # only once it is known to work; nothing changes here if it fails
            slot.decision = decision
            slot.take(choice)
            return slot.current

    def unload(self, name: str) -> None:
        """Stop serving `name` until it is loaded again; every worker and replica follows."""
        self._known(name)
        with self._operator():
            decision = Decision(unloaded=True)
            self._decided.record(name, decision)
            slot = self._slot(name)
            slot.decision = decision
            slot.drop()

    def apply_decisions(self) -> None:
        """Follow the decisions recorded since the last call (by any worker, replica or operator CLI)."""
        for name in sorted(self._slots):
            if not self._decided.changed(name):
                continue
            with self._lock:
                slot = self._slots[name]
                decision = self._decided.read(name, keep=slot.decision)
                if slot.decision != decision:
                    slot.decision = decision
                    slot.follow()

    # -- internals ------------------------------------------------------------------------------
    def _known(self, name: str) -> None:
        if name not in self._slots and name not in modelrepo.list_models(self._repository):
            raise ModelNotFound(f"unknown model {name!r}")

    def _slot(self, name: str) -> Slot:
        slot = self._slots.get(name)
        if slot is None:
            slot = Slot(name, self._decided.read(name), self._opener)
            metrics.declare_model(name)
            self._slots = {**self._slots, name: slot}
        return slot

    @contextmanager
    def _operator(self) -> Iterator[None]:
        """The manager's lock for an operator's call, waited for no longer than a scan may run."""
        if not self._lock.acquire(timeout=self._settings.repository_scan_timeout):
            raise NotReady(f"the model repository is busy: a scan has run for more than "
                           f"{self._settings.repository_scan_timeout:g} s (REPOSITORY_SCAN_TIMEOUT); try again later")
        try:
            yield
        finally:
            self._lock.release()

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

