"""Signals as exceptions: every ``with``/``finally`` runs (temporary files removed, Lava workers
stopped) and the exit status says which signal ended the command (130 SIGINT, 143 SIGTERM).

Python turns SIGINT into KeyboardInterrupt but lets SIGTERM kill the process on the spot, with no
cleanup at all. :func:`raising` makes both raise :class:`Interrupted`, a KeyboardInterrupt (so
``except Exception`` never swallows it) that carries the signal number.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Sequence

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal asked this process to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_status(self) -> int:
        """128 + signal number, what a shell reports for a process the signal ended."""
        return 128 + self.signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def raising(signums: Sequence[int] = SIGNALS) -> Iterator[None]:
    """In this process the signals raise :class:`Interrupted` until the block ends; the previous
    handlers are restored after it. A forked child that inherits the handler gets the default
    action instead (it must not run this process's cleanup). Only the main thread can install
    handlers; elsewhere this does nothing."""
    if not _main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum: int, _frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred(signums: Sequence[int] = SIGNALS) -> Iterator[list[int]]:
    """For cleanup that must not be cut short: the signals are only recorded (the yielded list)
    until the block ends; the caller decides what to do with them afterwards."""
    received: list[int] = []
    if not _main_thread():
        yield received
        return
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum)) for s in signums}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
