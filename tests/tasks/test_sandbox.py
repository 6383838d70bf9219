"""The sandbox against hostile programs: real subprocesses, nothing mocked.

Most tests run twice: ``host`` is the sandbox as this process gets it (as root: the code
runs as nobody, in new namespaces); ``unprivileged`` forces the code path of a non-root
caller (a user namespace, no uid change) where this process is root, so CI exercises
both. Timings are limits the tests set, not measurements.
"""

from __future__ import annotations

import dataclasses
import dis
import logging
import os
import subprocess
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path

import pytest

from taskloop.tasks import sandbox
from taskloop.tasks.sandbox import (
    BLOCKED_EXIT,
    SandboxJob,
    SandboxLimits,
    SandboxResult,
    SandboxStatus,
    SandboxUnavailableError,
    run_many,
    run_python,
)

FAST = SandboxLimits(wall_time_s=5.0, cpu_time_s=5, output_bytes=64_000)
IS_ROOT = os.geteuid() == 0
BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "sandbox_overhead.py"


@pytest.fixture(params=["host", "unprivileged"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the host's plan, and with the non-root plan forced where root."""
    if request.param == "unprivileged":
        plan = sandbox._host_plan()
        if not plan.privileged:
            pytest.skip("this process is not root: the host plan is already unprivileged")
        forced = dataclasses.replace(plan, privileged=False, keep_read_search=False)
        monkeypatch.setattr(sandbox, "_plan", lambda: forced)
    return str(request.param)


def run(source: str, **kwargs: object) -> SandboxResult:
    kwargs.setdefault("limits", FAST)
    return run_python(source, **kwargs)  # type: ignore[arg-type]


def survivors() -> list[int]:
    """Processes of sandbox runs whose directory is gone, i.e. of runs that ended.

    A run's processes have HOME set to its working directory, which is deleted only
    after the run was killed and reaped; one still alive afterwards escaped.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if not (item.startswith(b"HOME=") and b"taskloop-sandbox-" in item):
                continue
            if not Path(os.fsdecode(item[5:])).exists():
                found.append(int(entry.name))
    return found


def assert_blocked(result: SandboxResult, *words: str) -> None:
    assert result.status is SandboxStatus.BLOCKED, (result.status, result.detail, result.stderr)
    assert result.returncode == BLOCKED_EXIT
    for word in words:
        assert word in result.detail, result.detail


# --- ordinary programs -------------------------------------------------------------------


def test_passing_program(mode: str) -> None:
    result = run("import math, collections\nprint('hello', math.factorial(5))")
    assert result.status is SandboxStatus.PASSED, result.stderr
    assert result.passed and result.returncode == 0
    assert result.stdout == "hello 120\n"
    assert not result.truncated
    assert "audit_hook" in result.layers and "rlimits" in result.layers
    assert result.duration_s > 0


def test_exception_fails_with_the_exception_line(mode: str) -> None:
    result = run("def f():\n    return 1 / 0\n\nf()\n")
    assert result.status is SandboxStatus.FAILED
    assert result.returncode == 1
    assert result.detail == "ZeroDivisionError: division by zero"
    assert 'File "main.py", line 2, in f' in result.stderr


def test_syntax_error_fails() -> None:
    result = run("def f(:\n")
    assert result.status is SandboxStatus.FAILED
    assert result.detail.startswith("SyntaxError")


def test_non_zero_exit_fails() -> None:
    result = run("import sys\nsys.exit(3)")
    assert result.status is SandboxStatus.FAILED
    assert result.returncode == 3
    assert result.detail == "exit status 3"


def test_common_stdlib_works_under_the_hook() -> None:
    """What solutions and tests use: namedtuple/enum/typing (they look at frames),
    logging, dataclasses, regex, decimal, threads, tempfile, and user exit()."""
    program = """
import collections, dataclasses, decimal, enum, fractions, functools, heapq, itertools
import json, logging, math, random, re, statistics, string, tempfile, threading, typing
P = collections.namedtuple("P", "a b")
class N(typing.NamedTuple):
    x: int
E = enum.Enum("E", "a b")
@dataclasses.dataclass
class D:
    x: int = 1
logging.getLogger("t").warning("logged")
box = []
t = threading.Thread(target=lambda: box.append(sum(range(10))))
t.start(); t.join()
with tempfile.TemporaryDirectory() as d, open(d + "/f.txt", "w") as fh:
    fh.write("x")
print(P(1, 2), N(3), E.a, D(), box, decimal.Decimal("1.1") + 1, re.sub("a", "b", "aa"))
exit(0)
"""
    result = run(program)
    assert result.status is SandboxStatus.PASSED, result.stderr
    assert "P(a=1, b=2) N(x=3) E.a D(x=1) [45] 2.1 bb" in result.stdout
    assert "logged" in result.stderr


def test_files_are_in_the_working_directory_and_importable(mode: str) -> None:
    result = run(
        "import helper\nprint(helper.X, open('data/notes.txt').read())",
        files={"helper.py": "X = 42\n", "data/notes.txt": "hi"},
    )
    assert result.status is SandboxStatus.PASSED, result.stderr
    assert result.stdout == "42 hi\n"


@pytest.mark.parametrize("name", ["/etc/x", "../x", "a/../../x", ""])
def test_file_names_must_stay_inside(name: str) -> None:
    with pytest.raises(ValueError):
        run_python("pass", files={name: "x"})


def test_environment_is_scrubbed_and_stdin_empty(mode: str) -> None:
    result = run(
        "import os, sys\nprint(sorted(os.environ))\nprint(repr(sys.stdin.read()))\n"
        "print(os.environ['HOME'] == os.getcwd() == os.environ['TMPDIR'])"
    )
    assert result.status is SandboxStatus.PASSED, result.stderr
    keys, stdin, home = result.stdout.splitlines()
    assert keys == str(sorted(["HOME", "LANG", "LC_ALL", "PATH", "PYTHONHASHSEED", "TMPDIR"]))
    assert stdin == "''"
    assert home == "True"


def test_hash_seed_is_fixed() -> None:
    first = run("print(hash('taskloop'))").stdout
    assert first and run("print(hash('taskloop'))").stdout == first


def test_temporary_directory_is_removed(mode: str) -> None:
    result = run("import os\nprint(os.getcwd())\nopen('left.txt', 'w').write('x')")
    assert result.status is SandboxStatus.PASSED, result.stderr
    work = Path(result.stdout.strip())
    assert work.name == "work" and work.parent.name.startswith("taskloop-sandbox-")
    assert not work.parent.exists()


def test_main_block_runs_only_as_main() -> None:
    program = "if __name__ == '__main__':\n    print('main')\nprint(__name__)"
    assert run(program).stdout == "main\n__main__\n"
    assert run(program, module_name="solution").stdout == "solution\n"


# --- limits ----------------------------------------------------------------------------


def test_infinite_loop_hits_the_wall_time_limit(mode: str) -> None:
    limits = SandboxLimits(wall_time_s=1.5, cpu_time_s=30)
    started = time.monotonic()
    result = run_python("while True:\n    pass\n", limits=limits)
    assert result.status is SandboxStatus.TIMEOUT
    assert result.detail == "killed after 1.5 s wall time"
    assert time.monotonic() - started < 1.5 + 2


def test_cpu_time_limit() -> None:
    limits = SandboxLimits(wall_time_s=20, cpu_time_s=1)
    started = time.monotonic()
    result = run_python("while True:\n    pass\n", limits=limits)
    assert result.status is SandboxStatus.TIMEOUT
    assert result.detail == "CPU time limit of 1 s exceeded"
    assert result.cpu_s >= 0.9  # SIGXCPU comes at the limit, give or take a tick
    assert time.monotonic() - started < 20


def test_sleep_forever_hits_the_wall_time_limit(mode: str) -> None:
    limits = SandboxLimits(wall_time_s=1.0)
    started = time.monotonic()
    result = run_python("import time\ntime.sleep(10_000)", limits=limits)
    assert result.status is SandboxStatus.TIMEOUT
    assert "wall time" in result.detail
    assert time.monotonic() - started < 1.0 + 2


def test_closing_stdout_does_not_escape_the_wall_time_limit() -> None:
    result = run_python(
        "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(10_000)",
        limits=SandboxLimits(wall_time_s=1.0),
    )
    assert result.status is SandboxStatus.TIMEOUT


def test_huge_print_hits_the_output_limit() -> None:
    # 2 GiB of address space: enough for the 1 GB string and its encoding, so the limit
    # that stops it is the output one (with the default 1 GiB it is a MemoryError).
    limits = SandboxLimits(wall_time_s=30, memory_bytes=2 << 30, output_bytes=1 << 20)
    result = run_python("print('x' * 10**9)", limits=limits)
    assert result.status is SandboxStatus.OUTPUT_LIMIT, result.detail
    assert result.truncated
    assert len(result.stdout) + len(result.stderr) <= 1 << 20


def test_print_loop_hits_the_output_limit(mode: str) -> None:
    result = run("while True:\n    print('y' * 1000)")
    assert result.status is SandboxStatus.OUTPUT_LIMIT
    assert result.truncated
    assert len(result.stdout.encode()) + len(result.stderr.encode()) <= FAST.output_bytes
    assert set(result.stdout) <= {"y", "\n"}


def test_stderr_flood_counts_too() -> None:
    result = run("import sys\nwhile True:\n    sys.stderr.write('e' * 4096)")
    assert result.status is SandboxStatus.OUTPUT_LIMIT
    assert len(result.stderr) <= FAST.output_bytes


def test_writing_2_gb_to_a_file_is_stopped_by_the_file_size_limit(mode: str) -> None:
    program = (
        "with open('big.bin', 'wb') as fh:\n"
        "    for _ in range(2048):\n"
        "        fh.write(b'0' * (1 << 20))\n"
    )
    result = run(program)
    assert result.status is SandboxStatus.OUTPUT_LIMIT
    assert "file size limit" in result.detail


def test_many_written_files_are_refused() -> None:
    limits = SandboxLimits(max_files_written=10)
    result = run_python("for i in range(20):\n    open(f'f{i}', 'w').close()", limits=limits)
    assert_blocked(result, "more than 10 files")


def test_memory_hog_hits_the_memory_limit(mode: str) -> None:
    result = run("x = bytearray(10**10)")
    assert result.status is SandboxStatus.MEMORY
    assert result.detail == "MemoryError"


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="wall_time_s"):
        SandboxLimits(wall_time_s=0)
    with pytest.raises(ValueError, match="max_open_files"):
        SandboxLimits(max_open_files=3)


# --- processes -------------------------------------------------------------------------


def test_fork_loop_is_blocked(mode: str) -> None:
    result = run("import os\nwhile True:\n    os.fork()")
    assert_blocked(result, "os.fork")
    assert not survivors()


@pytest.mark.parametrize(
    ("program", "word"),
    [
        ("import subprocess\nwhile True:\n    subprocess.Popen(['sleep', '100'])", "import"),
        ("import os\nos.system('sleep 100')", "os.system"),
        ("import os\nos.execv('/bin/sh', ['sh'])", "os.exec"),
        ("import os\nos.posix_spawn('/bin/sh', ['sh'], {})", "os.posix_spawn"),
        ("import pty\npty.fork()", "os.forkpty"),
        (
            "import multiprocessing as mp\n"
            "if __name__ == '__main__':\n    mp.Pool(4).map(abs, range(100))",
            "",
        ),
    ],
)
def test_process_creation_is_blocked(mode: str, program: str, word: str) -> None:
    result = run(program)
    assert_blocked(result, word)
    assert not survivors()


def test_fork_bomb_without_the_hook_is_contained_and_leaves_no_survivors() -> None:
    """The layers under the hook: RLIMIT_NPROC stops the bomb, the PID namespace (or the
    process-group kill) takes every process with it."""
    plan = sandbox._plan()
    if not plan.privileged:
        pytest.skip("RLIMIT_NPROC applies only when the code runs as the dedicated uid")
    program = (
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        time.sleep(0.3)\n"
        "        break\n"
    )
    # A small limit: the count is per uid, so the bomb must not starve concurrent runs.
    limits = SandboxLimits(wall_time_s=10, max_processes=16)
    result = run_python(program, limits=limits, audit=False)
    assert result.status in (SandboxStatus.PASSED, SandboxStatus.FAILED), result.detail
    assert "Resource temporarily unavailable" in result.stdout + result.stderr or (
        result.status is SandboxStatus.PASSED
    )
    assert not survivors()
    assert "uid:65534" in result.layers


def test_children_that_leave_the_process_group_still_die(mode: str) -> None:
    program = (
        "import os, time\n"
        "for _ in range(5):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        time.sleep(10_000)\n"
        "print('parent done')\n"
    )
    result = run_python(program, limits=FAST, audit=False)
    if "ns:pid" not in result.layers:
        pytest.skip("no PID namespace here: a child that calls setsid() could survive")
    assert result.status is SandboxStatus.PASSED, result.stderr
    assert not survivors()


def test_stray_children_die_when_the_run_ends(mode: str) -> None:
    program = "import os, time\nif os.fork() == 0:\n    time.sleep(10_000)\nprint('done')"
    result = run_python(program, limits=FAST, audit=False)
    assert result.status is SandboxStatus.PASSED, result.stderr
    assert not survivors()


def test_kill_of_other_processes_is_blocked(mode: str) -> None:
    assert_blocked(run("import os\nos.kill(1, 9)"), "os.kill")
    assert run("import os, signal\nos.kill(os.getpid(), 0)\nprint('ok')").stdout == "ok\n"


# --- the completion marker -------------------------------------------------------------


MARKER = "taskloop-done-5f0c2a9e41d7b836"  # fixed: xdist workers must collect the same ids


@pytest.mark.parametrize(
    ("program", "passed"),
    [
        (f"print('tests ran')\nprint({MARKER!r})", True),
        (f"import sys\nsys.exit(0)\nprint({MARKER!r})", False),
        (f"import os\nos._exit(0)\nprint({MARKER!r})", False),
        (f"raise SystemExit\nprint({MARKER!r})", False),
        (f"print('taskloop-done-0000')\nimport sys\nsys.exit(0)\nprint({MARKER!r})", False),
        (f"print({MARKER!r})\nprint('more output')", False),
        (f"print({MARKER!r})\nimport sys\nsys.exit(1)", False),
    ],
    ids=[
        "tests-ran",
        "sys.exit(0)-first",
        "os._exit(0)-first",
        "SystemExit-first",
        "guessed-marker",
        "output-after-marker",
        "exit-1-after-marker",
    ],
)
def test_completion_marker(program: str, passed: bool) -> None:
    result = run(program, require_marker=MARKER)
    assert result.passed is passed, (result.status, result.detail, result.stdout)
    if not passed and result.returncode == 0:
        assert result.detail == "exited with status 0 before the completion marker"


def test_code_cannot_read_the_marker_out_of_its_own_code(mode: str) -> None:
    """Frames would reach the module's code object, whose constants hold the marker."""
    program = f"""
import gc, sys
found = []
def attempts():
    try:
        found.append(sys._getframe(1).f_code.co_consts)
    except ValueError:
        pass
    try:
        raise RuntimeError
    except RuntimeError as exc:
        frame = exc.__traceback__.tb_frame
        try:
            found.append(frame.f_back.f_code.co_consts)
        except AttributeError:
            pass
    try:
        import inspect
        found.append(inspect.currentframe())
    except ValueError:
        pass
attempts()
print("found", len(found))
sys.exit(0)
print({MARKER!r})
"""
    result = run(program, require_marker=MARKER)
    assert result.stdout == "found 0\n", result.stderr
    assert result.status is SandboxStatus.FAILED
    for walk in ("gc.get_objects()", "gc.get_referrers(print)"):
        assert_blocked(run(f"import gc\n{walk}\nprint({MARKER!r})", require_marker=MARKER))


def test_tracing_cannot_jump_over_the_tests() -> None:
    program = f"""
import sys
def tracer(frame, event, arg):
    return tracer
sys.settrace(tracer)
assert False, "the tests"
print({MARKER!r})
"""
    assert_blocked(run(program, require_marker=MARKER), "sys.settrace")


# --- files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    [
        "print(open('/etc/passwd').read())",
        "print(open(b'/etc/passwd').read())",
        "import pathlib\nprint(pathlib.Path('/etc/passwd').read_text())",
        "import os\nfd = os.open('/etc/passwd', os.O_RDONLY)\nprint(os.read(fd, 100))",
        "import io\nprint(io.FileIO('/etc/passwd').read())",
        "import shutil\nshutil.copy('/etc/passwd', 'p')",
        "class S(str):\n    pass\nprint(open(S('/etc/passwd')).read())",
        "import os\nos.chdir('/etc')",
        "import os\nprint(os.listdir('/'))",
        "print(open('/proc/self/environ').read())",
        "print(open('../program.py').read())",
    ],
)
def test_reading_outside_is_blocked(mode: str, program: str) -> None:
    assert_blocked(run(program), "sandbox directory")


def test_reading_the_repository_and_home_is_blocked(mode: str) -> None:
    this_file = Path(__file__).resolve()
    assert_blocked(run(f"print(open({str(this_file)!r}).read())"), "outside")
    assert_blocked(run(f"import os\nprint(os.listdir({str(Path.home())!r}))"), "outside")
    # the repository is not on sys.path, and adding it does not help
    assert run("import taskloop").detail.startswith("ModuleNotFoundError")
    src = str(this_file.parents[2] / "src")
    assert_blocked(run(f"import sys\nsys.path.append({src!r})\nimport taskloop"), "outside")


def test_site_packages_stay_out_unless_asked() -> None:
    assert run("import numpy").detail.startswith("ModuleNotFoundError")
    assert_blocked(run("import cffi"), "import cffi")
    site = sandbox._plan().site_paths
    if site:
        assert_blocked(run(f"import sys\nsys.path.append({site[0]!r})\nimport pytest"))


def test_site_packages_on_request() -> None:
    pytest.importorskip("numpy")
    result = run("import numpy\nprint(int(numpy.arange(4).sum()))", site_packages=True)
    assert result.stdout == "6\n", result.stderr
    refused = run("import cffi", site_packages=True)  # still refused, as an ImportError
    assert refused.status is SandboxStatus.FAILED
    assert refused.detail == "ImportError: cffi is not available in the sandbox"
    assert_blocked(run("import ctypes"), "import ctypes")  # a hard stop without site_packages


def test_standard_library_sources_are_readable() -> None:
    result = run("import os, json\nprint(len(open(json.__file__).read()) > 0)")
    assert result.stdout == "True\n", result.stderr


@pytest.mark.parametrize(
    ("program", "target"),
    [
        ("open({target!r}, 'w').write('x')", "/tmp"),
        ("import os\nos.mkdir({target!r})", "/tmp"),
        ("import pathlib\npathlib.Path({target!r}).write_text('x')", "/tmp"),
        ("import os\nos.symlink('/etc/passwd', 'link')", "/tmp"),
    ],
)
def test_writing_outside_is_blocked(mode: str, program: str, target: str) -> None:
    path = Path(tempfile.gettempdir()) / f"taskloop-escape-{uuid.uuid4().hex}"
    result = run(program.format(target=str(path)))
    assert result.status is SandboxStatus.BLOCKED, result.stderr
    assert not path.exists()


@pytest.mark.parametrize(
    "program",
    [
        "open('../escape', 'w').write('x')",
        "open('sub/../../escape', 'w').write('x')",
        "import os\nos.rename('mine.txt', '../escape')",
        "import os\nos.makedirs('d')\nos.chdir('d')\nopen('../../escape', 'w').write('x')",
        "import os\nfd = os.open('.', os.O_RDONLY)\nos.open('../escape', os.O_CREAT | os.O_WRONLY,"
        " dir_fd=fd)",
        "import os\nos.open('/usr', os.O_RDONLY)",
    ],
)
def test_escaping_the_directory_is_blocked(mode: str, program: str) -> None:
    result = run(program, files={"mine.txt": "x"})
    assert result.status is SandboxStatus.BLOCKED, result.stderr


def test_writing_inside_works(mode: str) -> None:
    program = (
        "import os, shutil\n"
        "os.makedirs('a/b')\n"
        "open('a/b/f.txt', 'w').write('x')\n"
        "os.rename('a/b/f.txt', 'a/g.txt')\n"
        "os.chdir('a')\n"
        "print(open('g.txt').read(), sorted(os.listdir('.')))\n"
        "os.chdir('..')\n"
        "shutil.rmtree('a')\n"
        "print(os.listdir('.'))\n"
    )
    result = run(program)
    assert result.status is SandboxStatus.PASSED, result.stderr
    assert result.stdout == "x ['b', 'g.txt']\n[]\n"


# --- network, native code, the hook itself -----------------------------------------------


@pytest.mark.parametrize(
    "program",
    [
        "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 22))",
        "import socket\nsocket.create_connection(('127.0.0.1', 80), timeout=1)",
        "import socket\nsocket.getaddrinfo('example.com', 80)",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:1/')",
    ],
)
def test_network_is_blocked(mode: str, program: str) -> None:
    assert_blocked(run(program))


def test_network_namespace_without_the_hook(mode: str) -> None:
    program = (
        "import socket\ns = socket.socket()\ns.settimeout(2)\n"
        "try:\n    s.connect(('127.0.0.1', 22))\nexcept OSError as exc:\n    print(exc.errno)"
    )
    result = run(program, audit=False)
    if "ns:net" not in result.layers:
        pytest.skip("no network namespace here")
    assert result.stdout.strip() == "101"  # ENETUNREACH: not even loopback is up


@pytest.mark.parametrize(
    ("program", "word"),
    [
        ("import ctypes\nctypes.CDLL(None).system(b'id')", "import ctypes"),
        ("import importlib\nimportlib.import_module('ctypes').CDLL(None)", "ctypes"),
        ("import importlib\nimportlib.import_module('_ctypes').dlopen(None, 2)", "ctypes"),
        ("import importlib\nimportlib.import_module('_posixsubprocess')", "_posixsubprocess"),
        ("import _posixsubprocess", "import _posixsubprocess"),
        ("import pwd\nprint(pwd.getpwall())", "import pwd"),
        ("def f():\n    pass\nf.__code__.replace(co_consts=(1,))", "code.__new__"),
        ("import marshal\nmarshal.loads(marshal.dumps(compile('1', 'x', 'eval')))", "marshal"),
        (
            "import importlib.machinery as m\nm.ExtensionFileLoader('x', '/tmp/x.so')"
            ".create_module(m.ModuleSpec('x', None, origin='/tmp/x.so'))",
            "native code",
        ),
        ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))", "setrlimit"),
    ],
)
def test_native_code_and_limit_changes_are_blocked(mode: str, program: str, word: str) -> None:
    assert_blocked(run(program), word)


def test_the_hook_cannot_be_removed_or_fooled(mode: str) -> None:
    program = """
import builtins, os, sys
sys.addaudithook(lambda *a: None)       # refused quietly: no extra hooks
sys.addaudithook = lambda hook: None
sys.audit = lambda *a: None
os.lstat = lambda p: None                # the hook bound its own references
os.readlink = lambda p: '/tmp'
builtins.len = lambda x: 0
builtins.type = lambda x: str
print('patched', flush=True)
print(open('/etc/passwd').read())
"""
    result = run(program)
    assert result.stdout == "patched\n"
    assert_blocked(result, "/etc/passwd")


def test_hook_functions_make_no_global_lookups() -> None:
    """Every name the hook and its helpers use is a closure cell bound at install time,
    so user code cannot rebind builtins or module globals underneath it."""
    module = compile(sandbox._bootstrap_source(), "<bootstrap>", "exec")
    install = next(
        c
        for c in module.co_consts
        if isinstance(c, types.CodeType) and c.co_name == "_install_hook"
    )
    nested = [c for c in install.co_consts if isinstance(c, types.CodeType)]
    assert {c.co_name for c in nested} >= {"hook", "check_open", "readable", "resolve"}
    for code in nested:
        for sub in [code, *(c for c in code.co_consts if isinstance(c, types.CodeType))]:
            loads = {i.argval for i in dis.get_instructions(sub) if i.opname == "LOAD_GLOBAL"}
            assert not loads, f"{sub.co_name} looks up {loads}"


# --- privileges -------------------------------------------------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="the uid change needs root")
def test_root_drops_to_nobody() -> None:
    result = run("import os\nprint(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())")
    assert result.stdout == "65534 65534 65534 []\n", result.stderr
    assert "uid:65534" in result.layers and "no_new_privs" in result.layers
    # without the hook, what the OS alone enforces: no writing to root's files
    result = run("open('/etc/taskloop-sandbox-test', 'w')", audit=False)
    assert result.status is SandboxStatus.FAILED
    assert "Permission denied" in result.detail
    assert not Path("/etc/taskloop-sandbox-test").exists()


def test_layers_reported(mode: str) -> None:
    layers = run("pass").layers
    if mode == "unprivileged":
        assert "uid:65534" not in layers
        if "ns:user" in layers:
            assert "ns:net" in layers
    elif IS_ROOT:
        assert "uid:65534" in layers


# --- running many, errors, logging -----------------------------------------------------


def test_run_many_keeps_order() -> None:
    sources: list[str | SandboxJob] = [
        "print(1)",
        "1/0",
        SandboxJob("print('f')", files={"x.txt": "f"}),
        "open('/etc/passwd')",
        SandboxJob("import sys\nsys.exit(0)", require_marker="never"),
    ]
    results = run_many(sources, limits=FAST, workers=3)
    assert [r.status for r in results] == [
        SandboxStatus.PASSED,
        SandboxStatus.FAILED,
        SandboxStatus.PASSED,
        SandboxStatus.BLOCKED,
        SandboxStatus.FAILED,
    ]
    assert results[0].stdout == "1\n" and results[2].stdout == "f\n"
    assert run_many([], limits=FAST) == []


def test_unavailable_when_no_temporary_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/taskloop")
    with pytest.raises(SandboxUnavailableError) as info:
        run_python("pass")
    assert info.value.code == "sandbox.unavailable"
    assert "/nonexistent/taskloop" in info.value.message


def test_each_run_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="taskloop"):
        run("1/0")
    records = [r for r in caplog.records if getattr(r, "step", None) == "sandbox.run"]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert records[0].status == "failed"  # type: ignore[attr-defined]
    assert records[0].detail.startswith("ZeroDivisionError")  # type: ignore[attr-defined]


def test_benchmark_quick_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| sandbox run of `pass` |" in proc.stdout
    assert "overhead per run" in proc.stdout
