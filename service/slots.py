"""One model's state in a worker, and its moves: which version serves, which failed, and why.

A version that fails to be listed, read, verified, opened or warmed up, whatever the exception,
is failed: logged once, counted, and retried only when its files change (or when an operator
asks for it). The version served before keeps serving.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import modelrepo
from modelrepo import Decision
from service import metrics
from service.batcher import Batcher
from service.runtime import InvalidModel, ModelRuntime
from service.served import Served

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionOpener:
    """How this worker opens versions (repository, providers, threads) and feeds them (batching)."""

    repository: Path
    providers: list[str]
    threads: int
    every_core_threads: int
    max_batch_size: int
    max_queue_delay_ms: float
    warm_up_batch: int

    def open(self, name: str, version: int, expect: Served | None) -> ModelRuntime:
        return ModelRuntime.load(self.repository, name, version, self.providers, self.threads,
                                 expect=expect.metadata if expect else None, max_batch=self.warm_up_batch,
                                 every_core_threads=self.every_core_threads)

    def serve(self, runtime: ModelRuntime, files: tuple) -> Served:
        wait = runtime.merge_wait(self.max_queue_delay_ms / 1000, probe=min(8, self.max_batch_size)) if self.max_batch_size > 1 else 0.0
        return Served(runtime, Batcher(runtime.run, runtime.name, self.max_batch_size, wait), files)


@dataclass(frozen=True)
class Choice:
    """The version `Slot.choose` settled on: the one served now (`opened` None), or one newly
    opened, with its files' signature, to swap to."""

    version: int
    opened: ModelRuntime | None = None
    files: tuple = ()


@dataclass
class Slot:
    name: str
    decision: Decision
    opener: VersionOpener
    current: Served | None = None
    failed: dict[int, tuple] = field(default_factory=dict)  # version → its files' signature when it failed
    last_error: str = ""
    sessions_released: int = 0  # how many sessions this slot stopped serving (their memory can be returned)

    def follow(self) -> None:
        """Serve what the decision says: nothing, the pinned version, or the newest that loads."""
        if self.decision.unloaded:
            self.drop()
            return
        choice = self.choose(self.decision.pinned)
        if choice is not None:
            self.take(choice)

    def choose(self, pinned: int | None, retry: bool = False) -> Choice | None:
        """The best candidate: the served version if it comes first, a newly opened one, or None
        when nothing loads. `retry`: an operator asked, so versions that failed before are tried
        again, and a served version whose files broke is refused."""
        try:
            versions = list(modelrepo.candidates(self.opener.repository, self.name, pinned))
        except modelrepo.RepositoryError as exc:
            if str(exc) != self.last_error:  # logged once, not on every poll
                log.error("not refreshing %s: %s", self.name, exc)
            self.last_error = str(exc)
            return None
        for version in versions:
            signature = _signature(modelrepo.version_dir(self.opener.repository, self.name, version))
            if self.current is not None and self.current.version == version:
                return Choice(version) if self._intact(signature) or not retry else None
            if not retry and self.failed.get(version) == signature:
                continue
            try:
                return Choice(version, self.opener.open(self.name, version, self.current), signature)
            except Exception as exc:
                self._fail(version, signature, exc)
        return None

    def take(self, choice: Choice) -> None:
        """Serve what `choose` settled on: a newly opened version replaces the served one."""
        if choice.opened is not None:
            self.swap(choice.opened, choice.files)

    def swap(self, runtime: ModelRuntime, files: tuple) -> None:
        """Serve runtime from now on; requests holding the old version finish on it."""
        old, self.current = self.current, self.opener.serve(runtime, files)
        metrics.MODEL_INFO.labels(self.name, str(runtime.version), runtime.provider).set(1)
        metrics.IMAGES.labels(self.name, str(runtime.version))
        if old is not None:
            self.sessions_released += 1
            if old.version != runtime.version:
                metrics.MODEL_INFO.labels(self.name, str(old.version), old.provider).set(0)
        log.info("serving %s/%s on %s (pid %d)", self.name, runtime.version, runtime.provider, os.getpid())

    def drop(self) -> None:
        if self.current is not None:
            metrics.MODEL_INFO.labels(self.name, str(self.current.version), self.current.provider).set(0)
            self.current = None
            self.sessions_released += 1

    def _intact(self, signature: tuple) -> bool:
        """Whether the served version's files still verify. It keeps serving from memory either
        way; a change that breaks them is logged and counted once, like any failed version."""
        served = self.current
        if signature == served.files:
            return True
        try:
            modelrepo.verify(self.opener.repository, self.name, served.version)
        except modelrepo.RepositoryError as exc:
            self.last_error = f"version {served.version} (served from memory) no longer verifies on disk: {exc}"
            if self.failed.get(served.version) != signature:
                self.failed[served.version] = signature
                metrics.LOAD_FAILURES.labels(self.name).inc()
                log.error("%s/%s changed on disk and no longer verifies (%s); still serving it from memory",
                          self.name, served.version, exc)
            return False
        self.current = replace(served, files=signature)  # touched, still intact
        return True

    def _fail(self, version: int, signature: tuple, exc: Exception) -> None:
        self.failed[version] = signature
        metrics.LOAD_FAILURES.labels(self.name).inc()
        self.last_error = f"version {version}: {exc}"
        # InvalidModel says what is wrong with the files; anything else is a bug worth a traceback.
        log.error("not serving %s/%s: %s", self.name, version, exc, exc_info=None if isinstance(exc, InvalidModel) else exc)


def _signature(directory: Path) -> tuple:
    """What a version's files look like now; a failed version is retried when this changes."""
    try:
        with os.scandir(directory) as entries:
            return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size, e.inode()) for e in entries))
    except OSError as exc:
        return ("unreadable", exc.errno)
