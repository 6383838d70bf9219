"""Settings come from TASKLOOP_* variables and fail on bad values."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from taskloop.config import Settings


def test_defaults(monkeypatch):
    monkeypatch.delenv("TASKLOOP_LOG_FORMAT", raising=False)
    monkeypatch.delenv("TASKLOOP_LOG_LEVEL", raising=False)
    settings = Settings()
    assert settings.log_format == "text"
    assert settings.log_level == logging.INFO


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("TASKLOOP_LOG_FORMAT", "json")
    monkeypatch.setenv("TASKLOOP_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.log_format == "json"
    assert settings.log_level == logging.DEBUG


@pytest.mark.parametrize(
    ("var", "value"), [("TASKLOOP_LOG_FORMAT", "xml"), ("TASKLOOP_LOG_LEVEL", "loud")]
)
def test_bad_values_fail(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        Settings()
