"""Health and metrics, without authentication: /livez, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from taskloop.serve.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/livez", summary="The process is up")
def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready to answer: database reachable and models loaded",
    responses={503: {"description": "not ready yet"}},
)
def readyz(service: ServiceDep, response: Response) -> dict[str, object]:
    if not service.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "loading"}
    return {"status": "ready", "models": service.loaded}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(service: ServiceDep) -> Response:
    from taskloop.monitor.metrics import render, update_process

    update_process(service.metrics)
    body, content_type = render(service.metrics)
    return Response(content=body, media_type=content_type)
