"""GET /v1/drift: whether recent inputs drifted from the reference (MiniLM MMD + KS)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from taskloop.serve.auth import ModelsAdmin
from taskloop.serve.deps import ServiceDep

router = APIRouter(prefix="/v1/drift", tags=["monitoring"])


class DriftOut(BaseModel):
    """The last drift check ("waiting" until both windows are full)."""

    status: str  # "waiting", "no drift", "drift"
    reference_size: int
    current_size: int
    report: dict[str, Any] | None = None


@router.get("", response_model=DriftOut)
async def drift(
    principal: ModelsAdmin,
    service: ServiceDep,
    run: Annotated[
        bool, Query(description="check now instead of returning the last check")
    ] = False,
) -> DriftOut:
    """Embedding drift (MMD with a permutation p-value on all-MiniLM-L6-v2 embeddings)
    and KS tests on input length, language and unknown-word rate (Bonferroni-corrected),
    between the reference window and the most recent inputs. Also exported as
    ``taskloop_drift_p_value`` and ``taskloop_drift_detected``."""
    monitor = service.drift
    if monitor is None:
        return DriftOut(status="waiting", reference_size=0, current_size=0)
    report = await asyncio.to_thread(monitor.check) if run else monitor.last
    status = "waiting" if report is None else ("drift" if report.drifted else "no drift")
    return DriftOut(
        status=status,
        reference_size=monitor.reference_size,
        current_size=monitor.current_size,
        report=None if report is None else report.model_dump(mode="json"),
    )
