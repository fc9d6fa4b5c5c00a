"""`python -m service`: validate settings, prepare the metrics directory, exec gunicorn."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from service.device import DeviceUnavailable, providers
from service.settings import Settings, SettingsError

CONFIG = Path(__file__).with_name("gunicorn.conf.py")
MALLOC_ARENAS = 2


def _fresh_dir(path: Path) -> None:
    # Files left by a previous run would be summed into this run's metrics.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def main() -> None:
    try:
        settings = Settings.from_env()
        provider = providers(settings.device)[0]
    except (SettingsError, DeviceUnavailable) as exc:
        sys.exit(f"error: {exc}")
    metrics_dir = settings.prometheus_multiproc_dir or Path(tempfile.gettempdir()) / f"serving-metrics-{settings.port}"
    _fresh_dir(metrics_dir)
    # For gunicorn's processes: prometheus_client reads the variable itself, and their Settings too.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # glibc gives each thread that allocates its own arena (up to 8 a core), and freed memory stays
    # in them, fragmented: sessions loaded and unloaded by request threads and the poller grew the
    # soak's workers by 12% and 34% in 5 minutes; with 2 arenas, -2% and -4% (RELIABILITY.md).
    # Read by glibc when gunicorn starts, after the exec below; an operator's value wins.
    os.environ.setdefault("MALLOC_ARENA_MAX", str(MALLOC_ARENAS))
    print(f"serving {settings.model_repository} on {settings.host}:{settings.port} with {settings.web_concurrency} workers, {provider}", flush=True)
    # The worker builds this app with the settings gunicorn.conf.py read (ServiceWorker.load_wsgi).
    gunicorn = [sys.executable, "-m", "gunicorn", "--config", str(CONFIG), "service.app:create_app()"]
    os.execv(sys.executable, gunicorn)


if __name__ == "__main__":
    main()
