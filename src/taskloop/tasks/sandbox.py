"""Run untrusted Python (model-written code and tests) in a fresh, locked-down subprocess.

Each run gets a new interpreter (``python -S -s -B -P -X utf8``: no site-packages, no user
site, no bytecode writes, no script directory on ``sys.path``) whose working directory is
a fresh temporary directory, the only place it may write, deleted afterwards. The layers
of defence, outermost first:

1. **Resource limits** (``setrlimit``): CPU seconds, address space, size of any file
   written, open files, no core dumps, and processes (``RLIMIT_NPROC``) once the code
   runs as the dedicated uid. The run is a new session whose process group is killed at
   the end, on success too, and after ``wall_time_s`` of wall time.
2. **Privileges**: when the caller is root (CI is), the code runs as ``nobody`` (65534)
   with ``no_new_privs``. Where the Python installation is unreadable to ``nobody`` (an
   interpreter under ``/root``, say) the child keeps ``CAP_DAC_READ_SEARCH`` and nothing
   else, so that imports work; it still writes only where ``nobody`` may.
3. **Namespaces**: new network, PID, IPC and UTS namespaces (inside a new user namespace
   when unprivileged), entered where the kernel allows and skipped silently where not.
   The code runs under a PID-namespace init: when the run ends, every process it started
   dies with it, even one that left the process group.
4. **An audit hook** (:pep:`578`), installed before the user code and impossible to remove
   from Python, refuses sockets, process creation, native code (``ctypes``, ``cffi``,
   extension modules outside the standard library), tracing, heap walks, and file access
   outside the working directory except reads of the standard library. A refusal writes
   ``[taskloop-sandbox] blocked: ...`` to stderr and ends the process at once with
   :data:`BLOCKED_EXIT`, so a ``try``/``except`` in user code cannot swallow it. Frame
   introspection that reaches code objects (``sys._getframe``, ``frame.f_code``) fails
   softly, as on interpreters without frames, so a program cannot read the completion
   marker out of its own code.
5. **A scrubbed environment**: ``PATH``, ``LANG``/``LC_ALL=C.UTF-8``, ``PYTHONHASHSEED=0``,
   ``HOME`` and ``TMPDIR`` set to the working directory, nothing else; stdin is
   ``/dev/null``.

Output is read as it comes and kept up to ``output_bytes`` (stdout and stderr together);
a run that writes more is killed. A run can require a completion marker, a per-run random
nonce that the harness prints as the program's last line, so that a program that exits
early (``sys.exit(0)`` before the tests ran) does not pass.

The audit hook is what stops a program reading ``/etc/passwd``; the OS layers (uid,
namespaces, limits) are what still hold if a CPython bug let code past the hook.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import json
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from taskloop import progress
from taskloop.errors import ExitStatus, TaskloopError
from taskloop.log import logger
from taskloop.tasks import sandbox_child
from taskloop.tasks.sandbox_child import BLOCKED_PREFIX, SETUP_EXIT, SETUP_PREFIX

__all__ = [
    "BLOCKED_EXIT",
    "BLOCKED_PREFIX",
    "DEFAULT_LIMITS",
    "SandboxJob",
    "SandboxLimits",
    "SandboxResult",
    "SandboxStatus",
    "SandboxUnavailableError",
    "run_many",
    "run_python",
]

GiB = 1 << 30
MiB = 1 << 20

#: Exit status of a run that the audit hook stopped.
BLOCKED_EXIT = 113

#: The uid and gid the code runs as when the caller is root.
NOBODY = 65534

_READ_CHUNK = 1 << 16
_INFO_CAP = 1 << 14


class SandboxUnavailableError(TaskloopError):
    """The sandbox cannot be started here (temporary directory, interpreter, privileges)."""

    code = "sandbox.unavailable"
    exit_status = ExitStatus.IO


class SandboxStatus(enum.StrEnum):
    """How a sandboxed run ended."""

    PASSED = "passed"  # exit status 0 (and the completion marker, when one was required)
    FAILED = "failed"  # an exception, a non-zero exit, or an exit before the marker
    TIMEOUT = "timeout"  # the wall-time or CPU-time limit
    MEMORY = "memory"  # MemoryError under the address-space limit
    OUTPUT_LIMIT = "output_limit"  # too much stdout/stderr, or a file over the size limit
    BLOCKED = "blocked"  # the audit hook refused an operation
    ERROR = "error"  # the run died in a way the code does not explain (signal, fork failure)


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one run.

    Args:
        wall_time_s: the process group is killed after this many seconds of wall time.
        cpu_time_s: CPU seconds (``RLIMIT_CPU``: SIGXCPU, then SIGKILL a second later).
        memory_bytes: address space (``RLIMIT_AS``).
        output_bytes: stdout and stderr kept, together; more kills the run. Also the
            largest file the run may write (``RLIMIT_FSIZE``).
        max_processes: ``RLIMIT_NPROC`` once the code runs as the dedicated uid. The kernel
            compares it with every process and thread of that uid, those of concurrent
            runs included: a run stops forking (and starting threads) once all runs
            together hold this many, so keep it well above the number of workers.
        max_open_files: ``RLIMIT_NOFILE``.
        max_files_written: how many times the run may open a file for writing.
    """

    wall_time_s: float = 10.0
    cpu_time_s: int = 10
    memory_bytes: int = GiB
    output_bytes: int = MiB
    max_processes: int = 128
    max_open_files: int = 64
    max_files_written: int = 256

    def __post_init__(self) -> None:
        for name in (
            "wall_time_s",
            "cpu_time_s",
            "memory_bytes",
            "output_bytes",
            "max_processes",
            "max_files_written",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be positive")
        if self.max_open_files < 16:
            raise ValueError("SandboxLimits.max_open_files must be at least 16")


DEFAULT_LIMITS = SandboxLimits()


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """The outcome of one run.

    Args:
        status: how it ended.
        returncode: its exit status (negative: killed by that signal).
        stdout: what it printed, at most ``output_bytes`` together with stderr.
        stderr: its stderr, the sandbox's own messages included.
        truncated: the output went past the limit and was cut.
        duration_s: wall time from start to reaped.
        detail: a short explanation: the exception line, the limit hit, what was refused.
        cpu_s: user + system CPU seconds of the run's processes.
        layers: the isolation layers that were in force, as the child reported them.
    """

    status: SandboxStatus
    returncode: int
    stdout: str
    stderr: str
    truncated: bool
    duration_s: float
    detail: str
    cpu_s: float = 0.0
    layers: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status is SandboxStatus.PASSED


@dataclasses.dataclass(frozen=True)
class SandboxJob:
    """One program for :func:`run_many`, with the per-run options of :func:`run_python`."""

    source: str
    files: dict[str, str] | None = None
    require_marker: str | None = None
    module_name: str = "__main__"
    site_packages: bool = False


# --- the parent side -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What this host allows; worked out once per process."""

    privileged: bool  # running as root: the child drops to NOBODY
    keep_read_search: bool  # NOBODY cannot read the stdlib without CAP_DAC_READ_SEARCH
    read_roots: tuple[str, ...]
    deny_roots: tuple[str, ...]
    site_paths: tuple[str, ...]


def _stdlib_dirs() -> list[str]:
    # The base installation's, also inside a virtual environment.
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    dirs = {Path(sysconfig.get_path(k, vars=base)).resolve() for k in ("stdlib", "platstdlib")}
    dirs |= {d / "lib-dynload" for d in dirs}
    return sorted(str(d) for d in dirs if d.is_dir())


def _site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return sorted({os.path.realpath(paths[k]) for k in ("purelib", "platlib") if k in paths})


def _others_can_read(path: str) -> bool:
    """Whether an unrelated uid can reach ``path`` and list it (mode bits only)."""
    target = Path(path)
    try:
        if not target.stat().st_mode & stat.S_IROTH:
            return False
        return all(d.stat().st_mode & stat.S_IXOTH for d in [target, *target.parents])
    except OSError:
        return False


_downgraded: list[_Plan] = []  # set once when root cannot drop privileges here


def _plan() -> _Plan:
    return _downgraded[0] if _downgraded else _host_plan()


@functools.cache
def _host_plan() -> _Plan:
    stdlib = _stdlib_dirs()
    site = _site_dirs()
    # Third-party packages (cffi among them) can load native code past the audit hook, so
    # they stay unreadable unless a run asks for them; so does the stdlib's site-packages.
    deny = {
        str(Path(d) / n)
        for d in stdlib
        if not d.endswith("lib-dynload")
        for n in ("site-packages", "dist-packages")
    }
    zoneinfo = Path("/usr/share/zoneinfo")  # zoneinfo needs it; nothing secret in there
    roots = [*stdlib, *([str(zoneinfo)] if zoneinfo.is_dir() else [])]
    privileged = hasattr(os, "geteuid") and os.geteuid() == 0
    keep = privileged and not all(_others_can_read(d) for d in stdlib)
    return _Plan(privileged, keep, tuple(roots), tuple(sorted(deny | set(site))), tuple(site))


# Modules whose import the hook refuses: native-code loaders, process spawning that skips
# the audited paths, and C code that opens files without an audit event.
_DENY_MODULES = (
    "ctypes",
    "_ctypes",
    "cffi",
    "_cffi_backend",
    "_posixsubprocess",
    "_posixshmem",
    "_multiprocessing",
    "_xxsubinterpreters",
    "_xxinterpchannels",
    "_xxinterpqueues",
    "_interpreters",
    "_interpchannels",
    "_interpqueues",
    "readline",
    "pwd",
    "grp",
    "spwd",
    "nis",
    "_ssl",
    "_dbm",
    "_gdbm",
    "_tkinter",
)
_DENY_EVENTS = (
    "os.system",
    "os.fork",
    "os.forkpty",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.startfile",
    "os.link",
    "os.symlink",
    "os.chroot",
    "os.killpg",
    "resource.setrlimit",
    "resource.prlimit",
    "sys.settrace",  # a trace function can jump over the tests (frame.f_lineno)
    "sys.setprofile",
    "gc.get_objects",
    "gc.get_referrers",
    "gc.get_referents",
    "cpython.PyInterpreterState_New",  # subinterpreters start without the hook
    "sqlite3.enable_load_extension",
    "sqlite3.load_extension",
    "sys.monitoring.register_callback",
    "code.__new__",  # crafted bytecode can corrupt the interpreter (see marshal.loads too)
    "marshal.load",
)
_DENY_FAMILIES = ("socket", "ctypes", "subprocess", "pty", "webbrowser", "winreg", "_winapi")


def _rlimits(limits: SandboxLimits) -> list[tuple[str, int, int]]:
    return [
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_CPU", limits.cpu_time_s, limits.cpu_time_s + 1),
        ("RLIMIT_AS", limits.memory_bytes, limits.memory_bytes),
        ("RLIMIT_FSIZE", limits.output_bytes, limits.output_bytes),
        ("RLIMIT_NOFILE", limits.max_open_files, limits.max_open_files),
    ]


@functools.cache
def _bootstrap_source() -> str:
    """The child's bootstrap (``sandbox_child.py``), passed to ``python -c`` as text."""
    return Path(sandbox_child.__file__).read_text(encoding="utf-8")


def _write_files(work: Path, files: dict[str, str] | None) -> None:
    for name, content in (files or {}).items():
        rel = Path(name)
        if not rel.parts or rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"sandbox file names must be relative and stay inside: {name!r}")
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(Path(dirpath) / name, uid, uid, follow_symlinks=False)


def _remove_tree(path: Path) -> None:
    """Delete a run's directory, whatever modes the run left on it."""
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            with contextlib.suppress(OSError):
                (Path(dirpath) / name).chmod(0o700, follow_symlinks=False)
    shutil.rmtree(path, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _has_exited(pid: int) -> bool:
    # WNOWAIT: the zombie stays, so its process-group id cannot be reused before killpg
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


@dataclasses.dataclass
class _Capture:
    stdout: bytearray = dataclasses.field(default_factory=bytearray)
    stderr: bytearray = dataclasses.field(default_factory=bytearray)
    info: bytearray = dataclasses.field(default_factory=bytearray)
    truncated: bool = False
    killed: str | None = None  # "wall" or "output": the parent killed the run
    status: int = 0  # wait status
    cpu_s: float = 0.0


def _pump(proc: subprocess.Popen[bytes], info_fd: int, deadline: float, cap: int) -> _Capture:
    """Read the child's output as it comes until it ends or hits a limit, then reap it."""
    assert proc.stdout is not None and proc.stderr is not None
    out = _Capture()
    buffers = {proc.stdout.fileno(): out.stdout, proc.stderr.fileno(): out.stderr}
    buffers[info_fd] = out.info
    sel = selectors.DefaultSelector()
    for fd in buffers:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    exited = False
    drain_until: float | None = None  # after exit: strays may hold the pipes open
    try:
        while sel.get_map() and out.killed is None:
            now = time.monotonic()
            if drain_until is not None and now >= drain_until:
                break
            if not exited and now >= deadline:
                out.killed = "wall"
                break
            if not exited and _has_exited(proc.pid):
                exited = True
                _kill_group(proc.pid)
                drain_until = now + 1.0
            wait = min(0.05, max(0.0, deadline - now)) if not exited else 0.05
            for key, _ in sel.select(wait):
                fd = int(key.fd)
                try:
                    chunk = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(fd)
                    continue
                if fd == info_fd:
                    out.info += chunk[: max(0, _INFO_CAP - len(out.info))]
                    continue
                room = cap - len(out.stdout) - len(out.stderr)
                buffers[fd] += chunk[: max(0, room)]
                if len(chunk) > room:
                    out.truncated = True
                    out.killed = "output"
                    break
    finally:
        sel.close()
    while out.killed is None and not exited:
        # Every pipe is closed but the process lives on (it closed stdout and stderr).
        if _has_exited(proc.pid):
            break
        if time.monotonic() >= deadline:
            out.killed = "wall"
            break
        time.sleep(0.005)
    _kill_group(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.status = status
    out.cpu_s = usage.ru_utime + usage.ru_stime
    return out


def _classify(
    returncode: int,
    out: _Capture,
    stdout: str,
    stderr: str,
    limits: SandboxLimits,
    require_marker: str | None,
) -> tuple[SandboxStatus, str]:
    """Status and detail of a finished run."""
    last = _last_line(stderr)
    if out.killed == "output":
        return SandboxStatus.OUTPUT_LIMIT, (
            f"output went past {limits.output_bytes} bytes (stdout+stderr); killed"
        )
    if out.killed == "wall":
        return SandboxStatus.TIMEOUT, f"killed after {limits.wall_time_s:g} s wall time"
    if returncode == BLOCKED_EXIT and last.startswith(BLOCKED_PREFIX.strip()):
        return SandboxStatus.BLOCKED, last.removeprefix(BLOCKED_PREFIX.strip()).strip()
    if returncode == SETUP_EXIT and last.startswith(SETUP_PREFIX.strip()):
        return SandboxStatus.ERROR, last
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and out.cpu_s >= limits.cpu_time_s):
            return SandboxStatus.TIMEOUT, f"CPU time limit of {limits.cpu_time_s} s exceeded"
        if sig == signal.SIGXFSZ:
            return SandboxStatus.OUTPUT_LIMIT, (
                f"file size limit of {limits.output_bytes} bytes exceeded"
            )
        return SandboxStatus.ERROR, f"killed by {_signal_name(sig)}"
    if returncode != 0:
        if last.startswith("MemoryError"):
            return SandboxStatus.MEMORY, last
        if last.startswith("OSError: [Errno 27]") or "File too large" in last:
            return SandboxStatus.OUTPUT_LIMIT, (
                f"file size limit of {limits.output_bytes} bytes exceeded ({last})"
            )
        return SandboxStatus.FAILED, last or f"exit status {returncode}"
    if require_marker is not None and (out.truncated or _last_line(stdout) != require_marker):
        return SandboxStatus.FAILED, "exited with status 0 before the completion marker"
    return SandboxStatus.PASSED, ""


def run_python(
    source: str,
    *,
    limits: SandboxLimits = DEFAULT_LIMITS,
    files: dict[str, str] | None = None,
    require_marker: str | None = None,
    module_name: str = "__main__",
    site_packages: bool = False,
    audit: bool = True,
) -> SandboxResult:
    """Run ``source`` as a program in a fresh sandboxed interpreter.

    Args:
        source: the program text.
        limits: its resource limits.
        files: extra files (relative name -> text) put in the working directory, which is
            also first on ``sys.path``.
        require_marker: when given, the run passes only if it exits 0 and the last line of
            its stdout is exactly this string. Make it a fresh random nonce per run that
            the harness prints after the tests, so the code under test cannot print it.
        module_name: the program's ``__name__``; ``"__main__"`` runs its main block.
        site_packages: let the program import installed third-party packages. This
            weakens the audit hook: their C extensions can read and write files without
            audit events (``numpy.fromfile``, say); the OS layers still hold. Refused
            modules (``ctypes``, ``cffi``...) then raise ImportError, which packages with
            optional native helpers handle, rather than stopping the run.
        audit: install the audit hook. Only tests of the other layers turn it off.

    Returns:
        The :class:`SandboxResult`: a failing program is a result, not an exception.

    Raises:
        SandboxUnavailableError: the sandbox cannot start here (temporary directory,
            interpreter, privileges).
        ValueError: a name in ``files`` is absolute or leaves the directory.
    """
    plan = _plan()
    try:
        return _run_once(
            plan, source, limits, files, require_marker, module_name, site_packages, audit
        )
    except _DropFailedError as exc:
        if _downgraded:
            raise SandboxUnavailableError(str(exc)) from None
        # Root without CAP_SETUID, or without CAP_DAC_READ_SEARCH where the interpreter is
        # unreadable to NOBODY (root in a default Docker container): keep the other layers.
        logger.warning(
            "sandbox: cannot drop privileges (%s); runs stay uid 0, with limits, namespaces "
            "where allowed and the audit hook",
            exc,
        )
        _downgraded.append(dataclasses.replace(plan, privileged=False, keep_read_search=False))
        return _run_once(
            _downgraded[0],
            source,
            limits,
            files,
            require_marker,
            module_name,
            site_packages,
            audit,
        )


class _DropFailedError(Exception):
    """The child could not become NOBODY."""


def _run_once(
    plan: _Plan,
    source: str,
    limits: SandboxLimits,
    files: dict[str, str] | None,
    require_marker: str | None,
    module_name: str,
    site_packages: bool,
    audit: bool,
) -> SandboxResult:
    started = time.perf_counter()
    try:
        base = Path(tempfile.mkdtemp(prefix="taskloop-sandbox-"))
    except OSError as exc:
        raise SandboxUnavailableError(
            f"cannot create a sandbox directory in {tempfile.gettempdir()}: {exc}",
            hint="set TMPDIR to a writable directory",
        ) from exc
    try:
        work = base / "work"
        program = base / "program.py"  # outside work; the child reads and deletes it
        try:
            work.mkdir(mode=0o700)
            _write_files(work, files)
            program.write_text(source, encoding="utf-8", errors="surrogateescape")
            program.chmod(0o600)
            if plan.privileged:
                base.chmod(0o711)  # NOBODY may pass through to work, not list base
                _chown_tree(work, NOBODY)
        except OSError as exc:
            raise SandboxUnavailableError(f"cannot prepare {base}: {exc}") from exc
        work_real = os.path.realpath(work)
        info_r, info_w = os.pipe()
        cfg = {
            "program": str(program),
            "work": work_real,
            "info_fd": info_w,
            "privileged": plan.privileged,
            "uid": NOBODY if plan.privileged else None,
            "keep_read_search": plan.keep_read_search,
            "rlimits": _rlimits(limits),
            "rlimits_dropped": [("RLIMIT_NPROC", limits.max_processes, limits.max_processes)],
            "read_roots": [*plan.read_roots, *(plan.site_paths if site_packages else ())],
            "deny_roots": [] if site_packages else list(plan.deny_roots),
            "extra_paths": list(plan.site_paths) if site_packages else [],
            "deny_modules": list(_DENY_MODULES),
            "soft_imports": site_packages,
            "deny_events": list(_DENY_EVENTS),
            "deny_families": list(_DENY_FAMILIES),
            "blocked_exit": BLOCKED_EXIT,
            "max_files_written": limits.max_files_written,
            "module_name": module_name,
            "audit": audit,
        }
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "HOME": work_real,
            "TMPDIR": work_real,
        }
        # -S no site, -s no user site, -B no .pyc writes, -P no script dir on sys.path.
        # Not -I/-E: the environment is ours entirely, and PYTHONHASHSEED must count.
        cmd = [sys.executable, "-S", "-s", "-B", "-P", "-X", "utf8", "-c", _bootstrap_source()]
        try:
            proc = subprocess.Popen(  # noqa: S603 - our interpreter, our arguments
                [*cmd, json.dumps(cfg)],
                cwd=work_real,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(info_w,),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(info_r)
            raise SandboxUnavailableError(f"cannot start {sys.executable}: {exc}") from exc
        finally:
            os.close(info_w)
        try:
            out = _pump(proc, info_r, time.monotonic() + limits.wall_time_s, limits.output_bytes)
        finally:
            os.close(info_r)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
    finally:
        _remove_tree(base)
    returncode = proc.returncode
    stdout = out.stdout.decode("utf-8", "replace")
    stderr = out.stderr.decode("utf-8", "replace")
    try:
        layers = tuple(json.loads(out.info.decode())["layers"])
    except (ValueError, KeyError, TypeError):
        layers = ()
    last = _last_line(stderr)
    if returncode == SETUP_EXIT and last.startswith(SETUP_PREFIX.strip()):
        reason = last.removeprefix(SETUP_PREFIX.strip()).strip()
        if reason.startswith("cannot drop privileges") and plan.privileged:
            raise _DropFailedError(reason)
        if not reason.startswith("cannot fork"):  # the rest would fail every run the same way
            raise SandboxUnavailableError(f"the sandbox child could not set itself up: {reason}")
    status, detail = _classify(returncode, out, stdout, stderr, limits, require_marker)
    duration = time.perf_counter() - started
    logger.debug(
        "sandbox run %s",
        status.value,
        extra={
            "step": "sandbox.run",
            "status": status.value,
            "returncode": returncode,
            "duration_ms": round(duration * 1000, 2),
            "cpu_ms": round(out.cpu_s * 1000, 2),
            "in_bytes": len(source),
            "out_bytes": len(out.stdout) + len(out.stderr),
            "detail": detail,
        },
    )
    return SandboxResult(
        status=status,
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        truncated=out.truncated,
        duration_s=duration,
        detail=detail,
        cpu_s=out.cpu_s,
        layers=layers,
    )


def run_many(
    sources: Sequence[str | SandboxJob],
    limits: SandboxLimits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> list[SandboxResult]:
    """Run many programs, ``workers`` at a time, each in its own sandbox.

    Args:
        sources: programs, or :class:`SandboxJob` where a run needs its own options.
        limits: the limits of every run.
        workers: runs at a time (default: the number of CPUs).

    Returns:
        One result per source, in the order given.
    """
    jobs = [s if isinstance(s, SandboxJob) else SandboxJob(s) for s in sources]
    if not jobs:
        return []

    def one(job: SandboxJob) -> SandboxResult:
        result = run_python(
            job.source,
            limits=limits,
            files=job.files,
            require_marker=job.require_marker,
            module_name=job.module_name,
            site_packages=job.site_packages,
        )
        progress.advance(1)
        return result

    progress.start("sandbox runs", len(jobs), "items")

    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(one, jobs))
