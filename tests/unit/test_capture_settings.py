"""The capture and feedback variables: each bad value refused at start-up, naming its variable."""
from __future__ import annotations

import pytest

from service.feedback import RateLimit
from service.settings import Settings, SettingsError


@pytest.mark.parametrize("name, value", [
    ("CAPTURE_ENABLED", "maybe"), ("CAPTURE_URL", "mysql://db/captures"), ("CAPTURE_URL", "postgresql://h/db"),
    ("CAPTURE_SAMPLE_RATE", "1.5"), ("CAPTURE_SAMPLE_RATE", "-0.1"), ("CAPTURE_MAX_ROWS", "0"),
    ("CAPTURE_MAX_AGE_HOURS", "0"), ("CAPTURE_PRUNE_SECONDS", "never"), ("CAPTURE_QUEUE_SIZE", "0"),
    ("CAPTURE_BATCH_SIZE", "0"), ("FEEDBACK_PUBLIC", "perhaps"), ("FEEDBACK_PUBLIC_PER_MINUTE", "0"),
])
def test_invalid_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_defaults_keep_everything_for_30_days_and_take_labels_from_the_token_only():
    settings = Settings.from_env({})
    assert settings.capture_enabled and settings.capture_sample_rate == 1.0 and settings.capture_url.startswith("sqlite:///")
    assert settings.capture_max_age_hours == 720 and not settings.feedback_public and settings.feedback_token == ""


def test_public_labels_are_limited_per_client_and_refill_with_time():
    limit = RateLimit(per_minute=2)
    assert [limit.allow("a", now=0.0) for _ in range(3)] == [True, True, False]
    assert limit.allow("b", now=0.0)  # another client has its own budget
    assert limit.allow("a", now=30.0) and not limit.allow("a", now=30.0)  # one label back every 30 s
