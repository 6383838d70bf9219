"""Service settings from the environment (``TASKLOOP_SERVE_*``), with embedded defaults.

Every default runs on one machine with nothing to install: SQLite (WAL) under
``$TASKLOOP_HOME``, a JWT signing key generated once and kept in ``$TASKLOOP_HOME``,
the offline task models. ``create_app`` takes a :class:`ServeSettings`; nothing else
reads the environment.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskloop.config import taskloop_home

SCOPES: dict[str, str] = {
    "tasks:run": "run tasks and blobs, read jobs",
    "feedback:write": "rate answers",
    "feedback:read": "export feedback",
    "models:admin": "see and manage models, users' data",
}


class ServeSettings(BaseSettings):
    """What ``taskloop serve`` runs with (env ``TASKLOOP_SERVE_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix="TASKLOOP_SERVE_", extra="ignore")

    database_url: str = ""  # "" = sqlite:///$TASKLOOP_HOME/serve.db
    jwt_secret: str = ""  # "" = generated once into $TASKLOOP_HOME/jwt.secret
    jwt_algorithm: str = "HS256"
    token_minutes: int = Field(60, ge=1)
    cors_origins: list[str] = Field(default_factory=list)
    rate_per_minute: int = Field(600, ge=1)  # per user or client, token bucket
    rate_burst: int = Field(60, ge=1)
    max_body_bytes: int = Field(16 * 2**20, ge=1024)
    max_sync_blob_bytes: int = Field(256 * 2**10, ge=1)  # larger blobs become jobs
    batch_max_size: int = Field(16, ge=1)
    batch_max_wait_ms: float = Field(2.0, ge=0)  # benchmarks: 10 ms halves 1-client throughput
    batch_queue_size: int = Field(256, ge=1)  # per model; full queue -> 503 Retry-After
    batching: bool = True
    torch_threads: int = Field(0, ge=0)  # 0: torch's choice; 1 when the CPU is shared
    models: dict[str, str] = Field(default_factory=dict)  # task -> model (run defaults else)
    drift_reference: str = ""  # JSONL of reference inputs ("" = the first window of traffic)
    drift_window: int = Field(200, ge=10)

    def resolved_database_url(self) -> str:
        """The database URL, the embedded SQLite file when none is set."""
        if self.database_url:
            return self.database_url
        home = taskloop_home()
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(home / 'serve.db').resolve()}"

    def resolved_jwt_secret(self) -> str:
        """The signing key: the setting, else one generated once and kept (mode 0600)."""
        if self.jwt_secret:
            return self.jwt_secret
        path: Path = taskloop_home() / "jwt.secret"
        if path.is_file():
            return path.read_text(encoding="ascii").strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key, encoding="ascii")
        return key
