"""Settings: defaults, parsing, and start-up failures that name the variable."""
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import ENV_VARS, Settings, SettingsError
from tests.harness import ROOT


def test_defaults():
    s = Settings.from_env({})
    assert (s.port, s.host, s.model_repository, s.model_name, s.model_version) == (8000, "0.0.0.0", Path("models").resolve(), "fashion-mnist", None)
    assert (s.device, s.max_request_bytes, s.max_batch_images, s.max_batch_size, s.max_queue_delay_ms) == ("auto", 8 << 20, 256, 64, 2.0)
    assert s.reload_poll_seconds == 10 and s.admin_token == ""
    assert s.session_threads * s.web_concurrency >= 1


@pytest.mark.parametrize("name, value", [
    ("PORT", "eighty"), ("PORT", "70000"), ("DEVICE", "tpu"), ("WEB_CONCURRENCY", "0"), ("MAX_REQUEST_BYTES", "-1"),
    ("MAX_BATCH_IMAGES", "0"), ("MAX_BATCH_SIZE", "x"), ("MAX_QUEUE_DELAY_MS", "-2"), ("RELOAD_POLL_SECONDS", "soon"),
    ("MODEL_VERSION", "0"), ("MODEL_VERSION", "latest"), ("LOG_LEVEL", "loud"), ("REPOSITORY_SCAN_TIMEOUT", "0"),
])
def test_invalid_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_every_setting_has_an_env_var():
    assert {"PORT", "MODEL_REPOSITORY", "DEVICE", "MAX_BATCH_SIZE", "RELOAD_POLL_SECONDS", "ADMIN_TOKEN"} <= set(ENV_VARS)


@pytest.mark.parametrize("env, message", [({"PORT": "x"}, "PORT"), ({"DEVICE": "cuda"}, "CUDAExecutionProvider")])
def test_the_launcher_refuses_to_start(env, message):
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
