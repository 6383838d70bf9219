"""Helpers shared by the CLI modules: error display, exit statuses, size options."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from taskloop import progress
from taskloop.errors import EXIT_STATUS_HELP, ExitStatus, TaskloopError
from taskloop.log import logger

F = TypeVar("F", bound=Callable[..., Any])

# "\b" keeps Click from re-wrapping the paragraph, so each status stays on its own line.
EPILOG = "\b\n" + EXIT_STATUS_HELP


def fail(exc: TaskloopError) -> NoReturn:
    """Print an expected error the way people read it and exit with its status."""
    logger.debug("error %s", exc.code, exc_info=exc)
    typer.echo(f"error[{exc.code}]: {exc.message}", err=True)
    if exc.hint:
        typer.echo(f"  hint: {exc.hint}", err=True)
    raise typer.Exit(int(exc.exit_status))


def handle_errors(func: F) -> F:
    """Turn expected errors into messages and exit statuses; never show a raw traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TaskloopError as exc:
            fail(exc)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader went away (`taskloop run ... | head`): stop quietly, as Unix tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(141) from None
        except Exception as exc:
            logger.debug("internal error", exc_info=exc)
            typer.echo(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "  this is a bug in taskloop; rerun with --debug to see the traceback",
                err=True,
            )
            raise typer.Exit(int(ExitStatus.INTERNAL)) from None

    return wrapper  # type: ignore[return-value]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


def parse_size(text: str) -> int:
    """'8GiB', '500MB', '1048576' -> bytes."""
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower() if match else ""
    if not match or unit not in _UNITS:
        raise typer.BadParameter(f"{text!r} is not a size (examples: 4096, 500MB, 8GiB)")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_weights(
    values: Iterable[str],
    *,
    option: str,
    known: Collection[str] | None = None,
    bare: float | None = None,
    error: type[TaskloopError] = TaskloopError,
) -> dict[str, float]:
    """``NAME=W`` options (``--weight tests=2``) as {name: weight}.

    Args:
        option: the option's name, for messages (``--weight``).
        known: the names allowed (None: any).
        bare: the weight of a bare ``NAME`` (None: a bare name is an error).
        error: the error class raised.

    Raises:
        error: no name, a weight that is not a finite number >= 0, an unknown name, or a
            name given twice.
    """
    out: dict[str, float] = {}
    names = f"; names: {', '.join(known)}" if known is not None else ""
    for raw in values:
        name, sep, number = raw.partition("=")
        name = name.strip()
        try:
            weight = float(number) if sep else float(bare) if bare is not None else None
        except ValueError:
            weight = None
        problem = (
            f"{number.strip()!r} is not a number" if name and sep and weight is None
            else "expected NAME=W" if not name or weight is None
            else "W must be a finite number >= 0" if not (0 <= weight < float("inf"))
            else f"unknown name {name!r}" if known is not None and name not in known
            else f"{name!r} given twice" if name in out
            else ""
        )  # fmt: skip
        if problem:
            raise error(f"{option} {raw!r}: {problem}", hint=f"e.g. {option} NAME=1.5{names}")
        assert weight is not None
        out[name] = weight
    return out


class _UnitColumn(ProgressColumn):
    """Bytes done and speed for byte phases; "done/total" for item phases."""

    def __init__(self) -> None:
        super().__init__()
        self.size = DownloadColumn(binary_units=True)
        self.speed = TransferSpeedColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit", "bytes") == "bytes":
            return Text.assemble(self.size.render(task), " ", self.speed.render(task))
        return Text(f"{int(task.completed)}/{int(task.total or 0)} items")


class BarReporter:
    """Shows progress phases as bars on stderr (byte phases under 16 MiB stay hidden).

    Item phases nest: a run's "tasks" bar stays while a task's "generate" bar fills
    below it; a finished phase is hidden and later advances go to the phase around it.
    A new byte phase replaces the previous byte phase (decode, then check, then extract).
    """

    MIN_TOTAL = 16 << 20

    def __init__(self, bars: Progress) -> None:
        self.bars = bars
        self.stack: list[tuple[TaskID, str]] = []

    @property
    def task(self) -> TaskID | None:
        return self.stack[-1][0] if self.stack else None

    def _pop_finished(self, also_bytes: bool) -> None:
        while self.stack:
            task_id, unit = self.stack[-1]
            task = self.bars.tasks[task_id] if task_id < len(self.bars.tasks) else None
            if task is None or task.finished or (also_bytes and unit == "bytes"):
                self.bars.update(task_id, visible=False)
                self.stack.pop()
            else:
                break

    def start(self, phase: str, total: int, unit: str = "bytes") -> None:
        self._pop_finished(also_bytes=True)
        visible = total >= self.MIN_TOTAL if unit == "bytes" else total > 1
        task_id = self.bars.add_task(phase, total=total, visible=visible, unit=unit)
        self.stack.append((task_id, unit))

    def advance(self, n: int) -> None:
        self._pop_finished(also_bytes=False)
        if self.stack:
            self.bars.advance(self.stack[-1][0], n)


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Progress bars for long work when ``enabled`` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield
        return
    bars = Progress(
        TextColumn("{task.description:>14}"),
        BarColumn(),
        _UnitColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bars, progress.reporting(BarReporter(bars)):
        yield
