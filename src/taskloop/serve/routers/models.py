"""GET /v1/models: which model answers each task, and whether it is loaded."""

from __future__ import annotations

from fastapi import APIRouter

from taskloop.data.records import TASKS
from taskloop.serve.auth import ModelsAdmin
from taskloop.serve.deps import ServiceDep
from taskloop.serve.schemas import ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=list[ModelOut])
def list_models(principal: ModelsAdmin, service: ServiceDep) -> list[ModelOut]:
    """Per task: the configured model (or the offline default) and, once a request has
    used it, its loaded description with version."""
    out = []
    for task in TASKS:
        configured = service.settings.models.get(task) or "offline default"
        loaded = service.loaded.get(task)
        out.append(ModelOut(task=task, model=loaded or configured, loaded=loaded is not None))
    return out
