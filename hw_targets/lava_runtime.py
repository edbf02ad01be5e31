"""Lifecycle of a Lava process graph: nothing outlives the command, however the command ends.

Lava runs each process of a graph as an OS process forked from this one, plus a shared-memory
manager whose segments live in /dev/shm. Left to themselves, Ctrl-C (SIGINT to the whole process
group) kills every worker with a traceback, after which ``stop()`` waits forever for answers
from the dead; SIGTERM to the main process ends it at once and orphans the workers, /dev/shm
segments and all. :class:`LavaSession` makes the project own that lifecycle:

- processes forked while a session is open ignore SIGINT and SIGTERM (the session decides when
  they stop) and get SIGKILL if this process dies (``PR_SET_PDEATHSIG``, so not even ``kill -9``
  of the main process orphans them);
- in this process both signals raise :class:`neuroratebp.interrupts.Interrupted` (exit status
  130 / 143 through the CLI);
- leaving the session, by return, exception or signal, stops the graph's runtime within
  ``stop_timeout`` seconds; whatever the session started and is still alive then is killed and
  reaped, and every /dev/shm segment its processes had mapped is removed.

Any Lava graph of the project uses it the same way (one session at a time)::

    with LavaSession(root):          # root: any process of the graph; its runtime is the graph's
        root.run(condition=RunSteps(n), run_cfg=cfg)
        ...                          # more runs, Var.get, ...

:class:`~hw_targets.loihi2.lava_backend.LavaNetwork` and the netx runner enter one in their own
``with`` blocks.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections import defaultdict
from multiprocessing import shared_memory
from pathlib import Path
from types import TracebackType
from typing import Any

from neuroratebp import interrupts

STOP_TIMEOUT = 5.0
"""Seconds ``runtime.stop()`` may take before the session kills the graph's processes."""
EXIT_GRACE = 2.0
"""Seconds the processes get to exit after a clean stop, and to disappear after SIGKILL."""
SHM = "/dev/shm/"
PR_SET_PDEATHSIG = 1

_owner: int | None = None
"""PID of the process with an open session (read by the fork hook, in the child's copy)."""
_fork_in_main_thread = False
_libc: Any = None


def _before_fork() -> None:
    global _fork_in_main_thread
    _fork_in_main_thread = threading.current_thread() is threading.main_thread()


def _after_fork_in_child() -> None:
    """A process forked during a session: deaf to SIGINT/SIGTERM, dies with its creator."""
    if _owner is None:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # the death signal follows the forking thread: only set it for forks from the main thread
    if _libc is not None and _fork_in_main_thread and os.getppid() == _owner:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != _owner:  # the creator died before prctl: follow it now
            os._exit(128 + signal.SIGKILL)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _children() -> dict[int, list[int]]:
    """Every live process's children, from /proc (zombies excluded: they hold nothing)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            children[int(fields[1])].append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid``, deepest first."""
    children, out, level = _children(), [], [pid]
    while level:
        level = [c for p in level for c in children.get(p, [])]
        out = level + out
    return out


def shm_segments(pids: list[int]) -> set[str]:
    """/dev/shm files the processes have mapped (what Lava's channels live in)."""
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    path = line.split(maxsplit=5)[-1].strip()
                    if path.startswith(SHM) and not path.endswith("(deleted)"):
                        found.add(path)
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _unlink_segment(name: str) -> None:
    """Remove a segment through multiprocessing, so this process's resource tracker forgets it
    too (else it warns about 'leaked shared_memory objects' at exit)."""
    try:
        segment = shared_memory.SharedMemory(name=name)
    except (FileNotFoundError, ValueError):  # gone already (a clean stop unlinks them)
        return
    segment.close()
    segment.unlink()


def _call_with_deadline(fn: Any, seconds: float) -> bool:
    """Run ``fn`` in a daemon thread; True if it returned within ``seconds`` without raising.
    A call stuck on a dead worker stays behind, blocked, and never prints."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 -- reported as "not clean" to the caller
            outcome.append(e)

    thread = threading.Thread(target=target, name="lava-stop", daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(outcome) and outcome[0] is None


def _tracker_pid() -> int | None:
    """This process's multiprocessing resource tracker: it outlives sessions by design."""
    from multiprocessing import resource_tracker
    return getattr(resource_tracker._resource_tracker, "_pid", None)  # noqa: SLF001


class LavaSession:
    """Owns the OS processes and /dev/shm segments of one Lava graph (see the module doc)."""

    def __init__(self, process: Any, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.process = process
        self.stop_timeout = stop_timeout
        self.forced = False
        """Whether the last teardown had to kill processes (the stop did not finish in time)."""
        self._signals = interrupts.raising()

    def __enter__(self) -> LavaSession:
        global _owner, _libc
        if _owner == os.getpid():
            raise RuntimeError("a Lava session is already open in this process")
        if _libc is None:
            try:
                _libc = ctypes.CDLL(None, use_errno=True)
                _libc.prctl  # noqa: B018 -- Linux only; elsewhere no death signal
            except (OSError, AttributeError):
                _libc = False
        self._before = set(descendants(os.getpid()))
        self._mapped_before = shm_segments([os.getpid()])
        self._signals.__enter__()
        _owner = os.getpid()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _owner
        try:
            with interrupts.deferred() as received:
                self.teardown()
        finally:
            _owner = None
            self._signals.__exit__(None, None, None)
        if received and exc is None:
            raise interrupts.Interrupted(received[0])

    def teardown(self) -> None:
        """Stop the runtime; kill, reap and unlink whatever is left of the session."""
        ours = [p for p in descendants(os.getpid()) if p not in self._before and p != _tracker_pid()]
        segments = shm_segments([os.getpid(), *ours]) - self._mapped_before
        runtime = getattr(self.process, "runtime", None)
        clean = runtime is None or _call_with_deadline(runtime.stop, self.stop_timeout)
        deadline = time.monotonic() + EXIT_GRACE
        while clean and any(map(_alive, ours)) and time.monotonic() < deadline:
            time.sleep(0.02)
        survivors = [p for p in ours if _alive(p)]
        self.forced = bool(survivors) or not clean
        if self.forced:
            self._kill(survivors, runtime)
        for path in segments:
            _unlink_segment(Path(path).name)

    def _kill(self, pids: list[int], runtime: Any) -> None:
        managed = {p.pid: p for p in multiprocessing.active_children()}
        for pid in pids:  # deepest first: a tracker dies before it sees its parent go
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:  # reap our children (multiprocessing's own bookkeeping where it has one)
            if pid in managed:  # Process.join: Lava's SystemProcess.join takes no timeout
                multiprocessing.Process.join(managed[pid], EXIT_GRACE)
            else:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:  # a grandchild: its new parent reaps it
                    pass
        deadline = time.monotonic() + EXIT_GRACE
        while any(map(_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if runtime is not None:
            # the runtime must not wait for the dead again (Lava's __del__ calls stop): mark it
            # stopped and let stop() release its channels and join the reaped workers
            runtime._is_started = runtime._is_running = False  # noqa: SLF001
            _call_with_deadline(runtime.stop, EXIT_GRACE)
