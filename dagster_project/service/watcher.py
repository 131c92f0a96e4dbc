"""Hot reload: the service's models follow the registry's aliases with no restart.

A background thread asks the registry where ``champion`` (and ``challenger``, when an A/B split or the shadow needs
it) point, at start and then every ``reload_seconds``. When an alias moved, the new version is loaded in full
(downloaded, trust-checked, unpickled) while requests go on being answered by the old one; then one reference is
replaced. A request reads that reference once, so it is answered by the old models or the new ones, never by a
half-loaded model, and none waits or fails during the swap. A failed check or load keeps the models in service and
is reported (``last_error``, /readyz, /metrics); the next poll tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from dagster_project.defs.ml.aliases import version_by_alias
from dagster_project.defs.ml.tracking import CHALLENGER, CHAMPION
from dagster_project.defs.serving.predictor import LoadedModels, ModelSlot, load_slot
from dagster_project.resources import MlflowResource

logger = logging.getLogger(__name__)


class ModelWatcher:
    def __init__(
        self,
        store: MlflowResource,
        *,
        reload_seconds: float,
        with_challenger: bool,
        on_swap: Callable[[LoadedModels | None, LoadedModels], None] | None = None,
    ) -> None:
        self.store = store
        self.reload_seconds = reload_seconds
        self.with_challenger = with_challenger
        self.on_swap = on_swap
        self.models: LoadedModels | None = None  # the one reference requests read
        self.last_error: str | None = None
        self.last_check: float | None = None
        self.reloads = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> LoadedModels | None:
        return self.models

    def start(self) -> ModelWatcher:
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.reload_seconds)

    def check(self) -> bool:
        """Compare the aliases with the loaded versions; load and swap in what moved. True if models changed."""
        try:
            changed = self._check()
            self.last_error = None
            return changed
        except Exception as error:
            self.failures += 1
            self.last_error = f"{type(error).__name__}: {error}"
            logger.warning("model reload failed, the loaded models stay in service: %s", self.last_error)
            return False
        finally:
            self.last_check = time.time()

    def _check(self) -> bool:
        current = self.models
        champion_version = version_by_alias(self.store, CHAMPION)
        if champion_version is None:
            raise LookupError(
                f"registered model {self.store.model_name!r} has no {CHAMPION!r} version: train and promote one"
            )
        challenger_version = version_by_alias(self.store, CHALLENGER) if self.with_challenger else None
        wanted = {
            CHAMPION: str(champion_version.version),
            CHALLENGER: None if challenger_version is None else str(challenger_version.version),
        }
        if current is not None and current.versions() == wanted:
            return False
        champion = self._reuse_or_load(CHAMPION, wanted[CHAMPION], current)
        challenger = None
        if wanted[CHALLENGER] is not None:
            challenger = self._reuse_or_load(CHALLENGER, wanted[CHALLENGER], current)
        assert champion is not None
        loaded = LoadedModels(champion=champion, challenger=challenger)
        self.models = loaded  # the swap: one reference, read once per request
        self.reloads += 1
        logger.info("serving %s", loaded.versions())
        if self.on_swap is not None:
            self.on_swap(current, loaded)
        return True

    def _reuse_or_load(self, role: str, version: str, current: LoadedModels | None) -> ModelSlot | None:
        """The loaded slot of ``version`` if one is in service (in whichever role), else the version loaded anew."""
        for slot in (current.champion, current.challenger) if current is not None else ():
            if slot is not None and slot.version == version:
                return slot if slot.role == role else replace(slot, role=role)
        loaded = load_slot(self.store, role)
        if loaded is not None and loaded.version != version:  # the alias moved again meanwhile: next poll
            logger.info("%s moved to v%s while v%s was loading", role, loaded.version, version)
        return loaded
