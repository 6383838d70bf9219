"""POST /v1/blobs (a blob of task files in, a result blob out; large ones as jobs) and
GET /v1/jobs/{id}."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, BackgroundTasks, Depends

from taskloop.serve.auth import TasksRun
from taskloop.serve.deps import ServiceDep, SessionDep
from taskloop.serve.errors import NotFoundError
from taskloop.serve.ratelimit import rate_limited
from taskloop.serve.schemas import BlobIn, BlobOut, JobOut, Problem
from taskloop.serve.service import new_job, run_blob_job

router = APIRouter(tags=["blobs"], dependencies=[Depends(rate_limited)])


def _job_out(job: object) -> JobOut:
    return JobOut.model_validate(job, from_attributes=True)


@router.post(
    "/v1/blobs",
    response_model=BlobOut,
    responses={413: {"model": Problem}, 422: {"model": Problem}},
    summary="Run a blob of task files; the result blob comes back (or a job for large ones)",
)
async def run_blob(
    body: BlobIn, principal: TasksRun, service: ServiceDep, background: BackgroundTasks
) -> BlobOut:
    """Blobs up to ``max_sync_blob_bytes`` run now and return the finished job with its
    result blob; larger ones return a queued job (202) to poll at /v1/jobs/{id}."""
    job = new_job(service, principal.name)
    if len(body.blob) <= service.settings.max_sync_blob_bytes:
        await asyncio.to_thread(run_blob_job, service, job.id, body.blob)
        from taskloop.serve.storage import repo

        with service.sessions() as s:
            return BlobOut(job=_job_out(repo.get_job(s, job.id)))
    background.add_task(run_blob_job, service, job.id, body.blob)
    return BlobOut(job=_job_out(job))


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses={404: {"model": Problem}})
def get_job(job_id: str, principal: TasksRun, session: SessionDep) -> JobOut:
    """A job's state; ``result`` holds the result blob once it is done. Only its owner
    (or an admin) sees it."""
    from taskloop.serve.storage import repo

    job = repo.get_job(session, job_id)
    if job.principal != principal.name and "models:admin" not in principal.scopes:
        raise NotFoundError(f"no job {job_id!r}")
    return _job_out(job)
