"""Annotated dependencies the routers take: the service and a database session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from taskloop.serve.service import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def get_session(service: Annotated[Service, Depends(get_service)]) -> Iterator[Session]:
    """A session per request; the repository functions commit what must be durable."""
    session: Session = service.sessions()
    try:
        yield session
    finally:
        session.close()


ServiceDep = Annotated[Service, Depends(get_service)]
SessionDep = Annotated[Session, Depends(get_session)]
