"""POST /v1/feedback (a rating tied to a stored prediction), GET /v1/feedback/export (JSONL
for reward training), GET /v1/feedback/queue (what the page shows to rate)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import StreamingResponse

from taskloop.serve.auth import FeedbackRead, FeedbackWrite
from taskloop.serve.deps import ServiceDep, SessionDep
from taskloop.serve.ratelimit import rate_limited
from taskloop.serve.records import FeedbackIn, FeedbackRecord, PredictionRecord
from taskloop.serve.schemas import Problem, QueueItemOut

router = APIRouter(prefix="/v1/feedback", tags=["feedback"], dependencies=[Depends(rate_limited)])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FeedbackRecord,
    responses={404: {"model": Problem}, 422: {"model": Problem}},
    summary="Rate an answer: thumbs, a 1-5 score, a comment, or A-vs-B",
)
def add_feedback(
    body: FeedbackIn, principal: FeedbackWrite, session: SessionDep, service: ServiceDep
) -> FeedbackRecord:
    """Acknowledged (201) only after the rating is committed: a rating the caller saw
    accepted survives a crash of the server."""
    from taskloop.monitor.metrics import observe_feedback
    from taskloop.serve.storage import repo

    record = repo.add_feedback(session, body, rater=principal.name)
    value = body.thumbs or (str(body.score) if body.score is not None else body.preferred)
    observe_feedback(service.metrics, body.kind, value or "-")
    return record


@router.get(
    "/export",
    summary="Feedback as JSON Lines in the shapes reward training reads",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def export(
    principal: FeedbackRead,
    session: SessionDep,
    shape: Annotated[Literal["pairs", "thumbs", "scores"], Query()] = "pairs",
) -> StreamingResponse:
    """pairs: {prompt, chosen, rejected, ...} from A-vs-B ratings (and score gaps);
    thumbs: {prompt, completion, label}; scores: {prompt, completion, score}."""
    from taskloop.serve.storage import repo

    rows = [
        json.dumps(r, ensure_ascii=False, default=str) + "\n"
        for r in repo.export_feedback(session, shape)
    ]
    return StreamingResponse(iter(rows), media_type="application/x-ndjson")


@router.get("/queue", response_model=list[QueueItemOut], summary="What to rate next")
def queue(
    principal: FeedbackWrite,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[QueueItemOut]:
    """Items queued for labelling (active learning) first, then recent predictions."""
    from taskloop.serve.storage import repo

    items: list[QueueItemOut] = []
    for q in repo.queue_items(session, limit):
        item = QueueItemOut(
            prediction_id=q["prediction_id"],
            task=q["task"],
            input=q["input"],
            reason=q["reason"],
            queued=True,
            priority=q["priority"],
        )
        if item.prediction_id:
            prediction = repo.get_prediction(session, item.prediction_id)
            item = _with_answers(session, item, prediction)
        items.append(item)
    # Then recent answers, each shown once: an answer already offered (alone or as the
    # other side of a pair) is not offered again.
    seen = {i for item in items for i in (item.prediction_id, item.other_prediction_id) if i}
    for p in repo.recent_predictions(session, 2 * limit):
        if len(items) >= limit:
            break
        if p.id in seen:
            continue
        item = _with_answers(
            session, QueueItemOut(prediction_id=p.id, task=p.task, input=p.input), p
        )
        seen.update(i for i in (item.prediction_id, item.other_prediction_id) if i)
        items.append(item)
    return items[:limit]


def _with_answers(session: object, item: QueueItemOut, p: PredictionRecord) -> QueueItemOut:
    """The item with its answer and, when another answer to the same input exists, that
    one too (the page then asks which is better)."""
    from taskloop.serve.storage import repo

    other = repo.other_answer(session, p)  # type: ignore[arg-type]
    return item.model_copy(
        update={
            "output": p.output,
            "other_prediction_id": other.id if other else None,
            "other_output": other.output if other else None,
        }
    )
