"""The sandbox child's bootstrap, run as ``python -S -s -B -P -X utf8 -c <this text> <config>``.

:mod:`taskloop.tasks.sandbox` passes this file's text to a fresh interpreter, which runs
it single-threaded before any user code: it enters the namespaces, drops privileges,
sets the limits, installs the audit hook and then runs the program. It may use the
standard library only (the child cannot import taskloop), and its top level does
nothing but define names unless it runs as ``__main__``, so the parent can import the
constants below from it. Written for speed of start-up under the hook: no pathlib, no
f-strings built at import time, printf formatting.
"""

import os
import sys

#: Exit status of a child that could not set itself up (namespaces, privileges, limits).
SETUP_EXIT = 114
#: The line the audit hook writes to stderr before it ends a run.
BLOCKED_PREFIX = "[taskloop-sandbox] blocked: "
SETUP_PREFIX = "[taskloop-sandbox] setup failed: "


def _fail(message):
    os.write(2, ("\n" + SETUP_PREFIX + message + "\n").encode("utf-8", "replace"))
    os._exit(SETUP_EXIT)


def _set_limits(limits):
    import resource

    for name, soft, hard in limits:
        which = getattr(resource, name, None)
        if which is None:
            continue
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
        resource.setrlimit(which, (min(soft, hard), hard))


def _unshare(cfg):
    """Enter new namespaces where the kernel allows; returns (names, libc or None)."""
    if not sys.platform.startswith("linux"):
        return [], None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    NET, PID, IPC, UTS, USER = 0x40000000, 0x20000000, 0x08000000, 0x04000000, 0x10000000
    if cfg["privileged"]:
        attempts = [
            (NET | PID | IPC | UTS, ["net", "pid", "ipc", "uts"]),
            (NET | IPC | UTS, ["net", "ipc", "uts"]),
            (NET, ["net"]),
            (PID, ["pid"]),
        ]
    else:
        attempts = [
            (USER | NET | PID | IPC | UTS, ["user", "net", "pid", "ipc", "uts"]),
            (USER | NET, ["user", "net"]),
        ]
    uid, gid = os.geteuid(), os.getegid()
    for flags, names in attempts:
        if libc.unshare(flags) != 0:
            continue
        if "user" in names:
            try:
                for path, text in (
                    ("/proc/self/setgroups", "deny"),
                    ("/proc/self/uid_map", "%d %d 1" % (uid, uid)),
                    ("/proc/self/gid_map", "%d %d 1" % (gid, gid)),
                ):
                    with open(path, "w") as fh:
                        fh.write(text)
            except OSError as exc:
                _fail("cannot map ids in the user namespace: %s" % exc)
        return names, libc
    return [], libc


def _relay(status):
    """End this process the way the process that ran the code ended."""
    if os.WIFSIGNALED(status):
        import signal

        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _fork_under_init(info_fd):
    """Fork twice so that the code runs under a PID-namespace init; returns in the code's process.

    The process that called unshare(CLONE_NEWPID) stays outside and waits; its child is the
    namespace's init (pid 1), which forks the process that runs the code and reports how
    it ended. When init exits, the kernel kills whatever is left in the namespace.
    """
    r, w = os.pipe()
    try:
        init = os.fork()
    except OSError as exc:
        _fail("cannot fork: %s" % exc)
    if init:
        os.close(w)
        os.close(info_fd)
        _, status = os.waitpid(init, 0)
        data = b""
        while True:
            chunk = os.read(r, 64)
            if not chunk:
                break
            data += chunk
        _relay(int(data) if data.strip().isdigit() else status)
    os.close(r)
    try:
        child = os.fork()
    except OSError as exc:
        _fail("cannot fork: %s" % exc)
    if child:
        os.close(info_fd)
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                os._exit(1)
            if pid == child:
                os.write(w, str(status).encode())
                os._exit(0)
    os.close(w)


def _drop_privileges(cfg, libc):
    """Become the sandbox uid; keep CAP_DAC_READ_SEARCH only where imports need it."""
    uid = gid = cfg["uid"]
    keep = cfg["keep_read_search"] and libc is not None
    if keep:
        libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS: permitted caps survive setuid
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    layers = ["uid:%d" % uid]
    if keep:
        import ctypes

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [
                ("effective", ctypes.c_uint32),
                ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32),
            ]

        header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
        data = (Data * 2)()
        data[0].effective = data[0].permitted = 1 << 2  # CAP_DAC_READ_SEARCH only
        if libc.capset(ctypes.byref(header), data) != 0:
            _fail("cannot drop privileges: capset failed (errno %d)" % ctypes.get_errno())
        libc.prctl(8, 0, 0, 0, 0)
        layers.append("cap:dac_read_search")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        _fail("cannot drop privileges: setuid(0) still works")
    return layers


def _install_hook(cfg):
    """Install the audit hook. From here on a refused event ends the process."""
    import _thread
    import io
    import stat
    import types

    # Everything the hook calls is bound here: user code can rebind os.lstat or
    # builtins.len, but not these cells. Arguments are used only once they are known to be
    # exact str/bytes/int, so no user-defined method ever runs inside the hook.
    _lstat = os.lstat
    _stat = os.stat
    _readlink = os.readlink
    _getcwd = os.getcwd
    _getpid = os.getpid
    _write = os.write
    _exit = os._exit
    _islnk = stat.S_ISLNK
    _isdir = stat.S_ISDIR
    _str = str
    _bytes = bytes
    _int = int
    _type = type
    _tuple = tuple
    _len = len
    _repr = repr
    _copy_str = str.__str__  # exact copy of a str subclass, C only
    _decode = bytes.decode
    _encode = str.encode
    _frame_type = types.FrameType
    _BaseException = BaseException
    _OSError = OSError
    _TypeError = TypeError
    _ValueError = ValueError
    _AttributeError = AttributeError
    _RuntimeError = RuntimeError
    _ImportError = ImportError
    _stdout = sys.stdout
    _stderr = sys.stderr
    _lock = _thread.allocate_lock()
    _get_ident = _thread.get_ident
    _thread_count = _thread._count
    _open_code = io.open_code
    _blocked_prefix = BLOCKED_PREFIX

    work = cfg["work"]
    read_roots = tuple(cfg["read_roots"])
    deny_roots = tuple(cfg["deny_roots"])
    blocked_exit = cfg["blocked_exit"]
    max_written = cfg["max_files_written"]
    written = [0]
    cache = {}
    last_pyc = {}  # thread -> the stdlib .pyc it opened last (for marshal.loads)
    dev_read = frozenset(
        ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random", "/dev/stdin"]
    )
    dev_write = frozenset(["/dev/null", "/dev/full", "/dev/stdout", "/dev/stderr"])
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    deny_modules = frozenset(cfg["deny_modules"])
    soft_imports = cfg["soft_imports"]
    deny_events = frozenset(cfg["deny_events"])
    deny_families = frozenset(cfg["deny_families"])
    soft_frames = frozenset(["sys._getframe", "sys._current_frames", "sys._current_exceptions"])
    path_reads = frozenset(["os.listdir", "os.scandir", "os.getxattr", "os.listxattr"])
    path_writes = frozenset(
        [
            "os.remove",
            "os.rmdir",
            "os.mkdir",
            "os.chmod",
            "os.chown",
            "os.chflags",
            "os.lchflags",
            "os.lchmod",
            "os.utime",
            "os.truncate",
            "os.setxattr",
            "os.removexattr",
        ]
    )

    def refuse(what):
        for stream in (_stdout, _stderr):
            try:
                stream.flush()
            except _BaseException:
                pass
        _write(2, _encode("\n" + _blocked_prefix + what + "\n", "utf-8", "replace"))
        _exit(blocked_exit)

    def text(path):
        """An exact str for a path argument, or None for a type the hook does not accept."""
        kind = _type(path)
        if kind is _str:
            return path
        if kind is _bytes:
            return _decode(path, "utf-8", "surrogateescape")
        try:
            return _copy_str(path)
        except _TypeError:
            return None

    def show(obj):
        kind = _type(obj)
        if kind is _str or kind is _bytes or kind is _int:
            return _repr(obj)
        return "<object>"

    def inside(path, root):
        return path == root or path.startswith(root + "/")

    def climbs(rel):
        """Whether a relative path goes above the directory it starts from."""
        depth = 0
        for part in rel.split("/"):
            if part == "..":
                depth -= 1
                if depth < 0:
                    return True
            elif part and part != ".":
                depth += 1
        return False

    def resolve(path):
        """The real path of an absolute path (symlinks followed; a missing tail kept)."""
        parts = path.split("/")
        parts.reverse()
        done = ""
        hops = 0
        while parts:
            part = parts.pop()
            if not part or part == ".":
                continue
            if part == "..":
                done = done[: done.rfind("/")]
                continue
            candidate = done + "/" + part
            try:
                mode = _lstat(candidate).st_mode
            except _OSError:
                done = candidate
                continue
            if _islnk(mode):
                hops += 1
                if hops > 40:
                    return None
                target = _readlink(candidate)
                if target.startswith("/"):
                    done = ""
                more = target.split("/")
                more.reverse()
                parts.extend(more)
                continue
            done = candidate
        return done or "/"

    def real(path):
        """resolve() of an absolute path, its directory part cached."""
        head, _, tail = path.rpartition("/")
        if tail in ("", ".", ".."):
            return resolve(path)
        base = cache.get(head)
        if base is None:
            base = resolve(head or "/")
            if base is None:
                return None
            if _len(cache) < 4096:
                cache[head] = base
        return resolve(base.rstrip("/") + "/" + tail)

    def in_work(path):
        if not path.startswith("/"):
            path = _getcwd() + "/" + path
        target = real(path)
        return target is not None and inside(target, work)

    def readable(path):
        if path in dev_read:
            return True
        if not path.startswith("/"):
            # Relative to the cwd or to a directory fd, both inside the work directory
            # (chdir and directory opens elsewhere are refused), unless it climbs out.
            return not climbs(path)
        target = real(path)
        if target is None:
            return False
        if inside(target, work):
            return True
        for root in deny_roots:
            if inside(target, root):
                return False
        for root in read_roots:
            if inside(target, root):
                return True
        return False

    def writable(path):
        if path in dev_write:
            return True
        if not path.startswith("/"):
            return not climbs(path)
        target = real(path)
        return target is not None and inside(target, work)

    def check_open(args):
        if _len(args) < 3:
            return
        path, flags = args[0], args[2]
        if _type(path) is _int:
            return  # an fd the process already holds
        name = text(path)
        if name is None or _type(flags) is not _int:
            refuse("open() of an unsupported path object")
        if flags & write_flags:
            if not writable(name):
                refuse("open(%s) for writing outside the sandbox directory" % _repr(name))
            with _lock:
                written[0] += 1
                count = written[0]
            if count > max_written:
                refuse("more than %d files opened for writing" % max_written)
            return
        if not readable(name):
            refuse("open(%s) outside the sandbox directory" % _repr(name))
        if name.endswith(".pyc"):
            target = real(name if name.startswith("/") else _getcwd() + "/" + name)
            if target is not None and not inside(target, work):
                last_pyc[_get_ident()] = target
        if name.startswith("/") and name not in dev_read and not in_work(name):
            try:
                is_dir = _isdir(_stat(name).st_mode)
            except _OSError:
                is_dir = False
            if is_dir:  # a directory fd would let relative paths start outside
                refuse("open(%s): a directory outside the sandbox directory" % _repr(name))

    def check_unmarshal(args):
        """Let marshal.loads read only the stdlib .pyc this thread just opened.

        Crafted bytecode can corrupt the interpreter and so get past any hook; imports
        load .pyc files with marshal.loads, which must keep working.
        """
        path = last_pyc.pop(_get_ident(), None)
        if path is None or not args or _type(args[0]) is not _bytes:
            refuse("marshal.loads of data that is not a standard library .pyc")
        if _thread_count() != 0:  # another thread could change the buffer after the check
            refuse("marshal.loads while other threads run")
        with _open_code(path) as fh:
            content = fh.read()
        if content[16:] != args[0]:
            refuse("marshal.loads of data that is not a standard library .pyc")

    def hook(event, args):
        if _type(event) is not _str or _type(args) is not _tuple:
            return
        if event == "open":
            check_open(args)
            return
        if event == "marshal.loads":
            check_unmarshal(args)
            return
        if event == "import":
            if _len(args) < 2:
                return
            # Raised by __import__ (filename None) and again, with the file, when an
            # extension module is loaded: importlib.import_module() skips the first.
            module, filename = args[0], args[1]
            if _type(module) is _str:
                top = module.partition(".")[0]
                if top in deny_modules or top.startswith("_test"):
                    if soft_imports and filename is None:
                        # third-party packages try optional imports (numpy: ctypes)
                        raise _ImportError("%s is not available in the sandbox" % module)
                    refuse("import %s" % module)
            elif filename is not None:
                refuse("loading native code for a module of an unsupported name type")
            if filename is not None:  # an extension module: native code
                name = text(filename)
                if name is None or not name.startswith("/"):
                    refuse("loading native code from %s" % show(filename))
                target = real(name)
                if target is None or inside(target, work) or not readable(target):
                    refuse("loading native code from %s" % _repr(name))
            return
        if event in path_reads:
            path = args[0] if args else None
            if path is None or _type(path) is _int:
                return
            name = text(path)
            if name is None or not readable(name):
                refuse("%s(%s) outside the sandbox directory" % (event, show(path)))
            return
        if event in path_writes:
            if not args:
                return
            path = args[0]
            if _type(path) is _int:
                if event == "os.truncate":
                    return  # needs an fd open for writing, which only work files give
                refuse("%s on a file descriptor" % event)
            name = text(path)
            if name is None or not writable(name):
                refuse("%s(%s) outside the sandbox directory" % (event, show(path)))
            return
        if event == "os.rename":
            for path in args[:2]:
                name = text(path)
                if name is None or not writable(name):
                    refuse("os.rename(%s) outside the sandbox directory" % show(path))
            return
        if event == "os.chdir":
            path = args[0] if args else None
            if _type(path) is _int:
                return
            name = text(path)
            if name is None or not in_work(name):
                refuse("os.chdir(%s) out of the sandbox directory" % show(path))
            return
        if event == "object.__getattr__":
            if (
                _len(args) >= 2
                and _type(args[0]) is _frame_type
                and _type(args[1]) is _str
                and args[1] == "f_code"
            ):
                raise _AttributeError("frame.f_code is not available in the sandbox")
            return
        if event in soft_frames:
            raise _ValueError("call stack introspection is not available in the sandbox")
        if event == "sys.addaudithook":
            raise _RuntimeError("the sandbox accepts no further audit hooks")
        if event == "os.kill":
            if args and _type(args[0]) is _int and args[0] == _getpid():
                return
            refuse("os.kill of another process")
        if event == "sqlite3.connect":
            db = text(args[0]) if args else None
            if db is None or not (db == ":memory:" or db == "" or writable(db)):
                refuse("sqlite3.connect(%s) outside the sandbox directory" % show(db))
            return
        if event in deny_events or event.partition(".")[0] in deny_families:
            refuse(event)

    sys.addaudithook(hook)


def _main():
    import json

    cfg = json.loads(sys.argv[1])
    info_fd = cfg["info_fd"]
    try:
        with open(cfg["program"], "rb") as fh:
            source = fh.read()
        os.unlink(cfg["program"])
    except OSError as exc:
        _fail("cannot read the program: %s" % exc)
    _set_limits([x for x in cfg["rlimits"] if x[0] == "RLIMIT_CORE"])
    namespaces, libc = _unshare(cfg)
    if "pid" in namespaces:
        _fork_under_init(info_fd)
    layers = ["ns:" + name for name in namespaces]
    limits = cfg["rlimits"]
    if cfg["privileged"] and cfg["uid"] is not None:
        try:
            layers += _drop_privileges(cfg, libc)
        except OSError as exc:
            _fail("cannot drop privileges: %s" % exc)
        limits = limits + cfg["rlimits_dropped"]
    try:
        _set_limits(limits)
    except (OSError, ValueError) as exc:
        _fail("cannot set resource limits: %s" % exc)
    layers.append("rlimits")
    if libc is not None and libc.prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS
        layers.append("no_new_privs")
    if cfg["audit"]:
        layers.append("audit_hook")
    os.write(info_fd, json.dumps({"layers": layers, "uid": os.getuid()}).encode())
    os.close(info_fd)
    libc = None
    for name in list(sys.modules):
        if name.partition(".")[0] in ("ctypes", "_ctypes"):
            del sys.modules[name]
    import builtins
    import types

    sys.dont_write_bytecode = True
    # The interpreter's own search path (stdlib zip, stdlib, lib-dynload) stays readable:
    # the traceback printer looks for source files along it.
    cfg["read_roots"] += [os.path.realpath(p) for p in sys.path if p.startswith("/")]
    sys.path[:0] = [cfg["work"]] + cfg["extra_paths"]
    sys.argv = ["main.py"]
    builtins.exit = builtins.quit = sys.exit  # site (-S) is not there to add them
    module = types.ModuleType(cfg["module_name"])
    module.__file__ = cfg["work"] + "/main.py"
    module.__builtins__ = builtins
    sys.modules[cfg["module_name"]] = module
    code = compile(source.decode("utf-8", "surrogateescape"), "main.py", "exec")
    if cfg["audit"]:
        _install_hook(cfg)
    return code, module.__dict__


# The code object is never bound to a name here: user code that walks frames back to this
# module finds no reference to it (and frame.f_code is refused).
if __name__ == "__main__":
    exec(*_main())
