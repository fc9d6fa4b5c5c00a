"""Operators' decisions as one server follows them: the one recorded in the repository for a
model (modelrepo/decisions.py, shared by every replica and the retraining job), else the
server's own start-up setting (MODEL_VERSION for the default model, the newest for the others).
"""
from __future__ import annotations

import logging
from pathlib import Path

import modelrepo
from modelrepo import Decision
from service.errors import Conflict, ModelNotFound

log = logging.getLogger(__name__)


class Decided:
    def __init__(self, repository: Path, default_model: str, pinned: int | None):
        self._repository = repository
        self._default_model, self._pinned = default_model, pinned
        self._seen: dict[str, tuple] = {}  # model → the decision file's stamp when last read

    def default(self, name: str) -> Decision:
        """What a model follows without an operator's decision."""
        return Decision(pinned=self._pinned if name == self._default_model else None)

    def changed(self, name: str) -> bool:
        """Whether the model's decision file changed since the last `read` (a stat, no read)."""
        return modelrepo.decision_stamp(self._repository, name) != self._seen.get(name)

    def read(self, name: str, keep: Decision | None = None) -> Decision:
        """The recorded decision, else the default; `keep` (if given) while the file cannot be read."""
        self._seen[name] = modelrepo.decision_stamp(self._repository, name)
        try:
            recorded = modelrepo.read_decision(self._repository, name)
        except modelrepo.RepositoryError as exc:  # logged once per change of the file
            log.error("keeping the current decision for %s: %s", name, exc)
            return keep or self.default(name)
        return self.default(name) if recorded is None else recorded

    def record(self, name: str, decision: Decision) -> None:
        """Record a decision for every worker, replica and the job; 409 where this server cannot write it."""
        try:
            modelrepo.record_decision(self._repository, name, decision)
        except modelrepo.Unwritable as exc:
            raise Conflict(f"{exc}. Decisions are kept in the model repository, for every replica and the "
                           "retraining job: mount it writable here, or pin with MODEL_VERSION") from None
        except modelrepo.RepositoryError as exc:  # pruned between the check and the lock
            raise ModelNotFound(f"decision for {name!r} not recorded: {exc}") from None
