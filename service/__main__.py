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
    metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or Path(tempfile.gettempdir()) / f"serving-metrics-{settings.port}")
    _fresh_dir(metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if os.environ.get("CONTROL_DIR"):
        # Gone since decisions moved into the repository; said once, not silently ignored.
        print(f"warning: CONTROL_DIR is no longer used: operators' decisions live in {settings.model_repository}/<model>/decisions.json",
              file=sys.stderr, flush=True)
    print(f"serving {settings.model_repository} on {settings.host}:{settings.port} with {settings.web_concurrency} workers, {provider}", flush=True)
    gunicorn = [sys.executable, "-m", "gunicorn", "--config", str(CONFIG), "service.app:create_app()"]
    os.execv(sys.executable, gunicorn)


if __name__ == "__main__":
    main()
