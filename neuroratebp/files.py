"""Writing outputs without losing inputs: atomic replace, one-line OS errors, run locks.

Every file the project writes goes through :func:`write_atomic`: its bytes are complete in memory
first (a torch checkpoint, the HDF5 image of a NIR or netx file), then go to a temporary file
beside the target, are fsynced and renamed over it. A full disk, a missing permission or a kill
mid-write therefore leaves the previous file intact, and the error is the operating system's
reason in one line. (Written in place, h5py crashed on a full disk and torch's zip writer
reported "unexpected pos" instead of "No space left on device".)
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

CHUNK = 1 << 22
"""Bytes per ``os.write`` call."""


def _umask() -> int:
    """The process umask, read without changing it where the kernel tells it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def write_atomic(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Replace ``path`` by ``data`` all at once; mode 0666 minus the umask, as ``open`` gives.

    Any OSError becomes ``OSError("cannot write PATH: REASON")``; the temporary file is removed
    on every failure, interrupts included.
    """
    path = Path(path)
    tmp: str | None = None
    fd = -1
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        view = memoryview(data).cast("B")
        while view:
            written = os.write(fd, view[:CHUNK])
            view = view[written:]
        os.fchmod(fd, 0o666 & ~_umask())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise OSError(f"cannot write {path}: {_reason(e)}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    """Same file: one path, a symlink to the other, or a hard link (same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def refuse_overwrite(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]],
                     flag: str = "-o") -> None:
    """Refuse, before anything is written, an output that is one of the command's inputs."""
    for source in inputs:
        if _same_file(Path(output), Path(source)):
            raise ValueError(f"{flag} {output} is the input {source}: writing there would "
                             "destroy it; choose another output")


def remove_temporaries(directory: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Delete what :func:`write_atomic` leaves behind when killed (``.NAME.*.tmp``).

    Only safe where no other writer can be active, e.g. in a directory held by :class:`RunLock`.
    """
    removed = []
    for name in names:
        for tmp in Path(directory).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


class RunLock:
    """Exclusive use of a run directory (``flock`` on the directory, released by the kernel
    when the process ends however it ends), so two runs never write into one directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._fd = -1

    def __enter__(self) -> RunLock:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise OSError(f"cannot use run directory {self.directory}: {_reason(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(f"{self.directory} is in use by another training run; wait for it "
                             "to end or choose another -o") from None
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the last descriptor releases the lock
            self._fd = -1
