"""Writing outputs without destroying anything: a regular file is replaced atomically (readers see the old file
or the whole new one), a symlink keeps being a symlink (its target gets the data), and what is not a regular
file (stdout as `-`, a device, a FIFO, /proc/self/fd/N) is written by streaming into it, never replaced."""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

from fflm.errors import OutputError

STDOUT = "-"

_UMASK_LOCK = threading.Lock()  # reading the umask means setting it: threads writing at once must take turns

_WHY = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
    errno.ENOENT: "its folder does not exist",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENAMETOOLONG: "the name is too long",
}


def why(e: OSError) -> str:
    """An OSError's reason in words, without errno numbers or file names (temp names mean nothing to a user)."""
    return _WHY.get(e.errno, os.strerror(e.errno).lower() if e.errno else "the system refused it")


def _umask() -> int:
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def is_stream(path: str | Path) -> bool:
    """Whether writing to `path` must stream into it: stdout (`-`), or an existing thing that is neither a
    regular file nor a folder (character or block device, FIFO, socket; /proc/self/fd/N resolves to one)."""
    if str(path) == STDOUT:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def real_target(path: str | Path) -> Path:
    """Where the bytes of `path` end up: a symlink's (final) target, else the path itself."""
    return Path(os.path.realpath(path))


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path`: atomically for a regular file or a symlink to one (a temp file beside the real
    target, then renamed over it), by streaming for stdout, devices and FIFOs. Raises OutputError."""
    payload = data.encode() if isinstance(data, str) else data
    if is_stream(path):
        with open_stream(path, binary=True) as f:
            f.write(payload)
        return
    with atomic_file(path) as f:
        f.write(payload)


class atomic_file:
    """`with atomic_file(path) as f:` a binary file that replaces `path`'s real target when the block ends
    without an error (and is discarded otherwise). Raises OutputError naming `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.target = real_target(path)
        self.tmp: str | None = None

    def __enter__(self) -> IO[bytes]:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            if self.target.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {why(e)}") from None
        self.file = os.fdopen(fd, "wb")
        return self.file

    def __exit__(self, kind, value, tb) -> None:  # noqa: ANN001
        try:
            self.file.close()
            if kind is None:
                os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
                os.replace(self.tmp, self.target)
                self.tmp = None
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {why(e)}") from None
        finally:
            if self.tmp is not None:
                Path(self.tmp).unlink(missing_ok=True)


def open_stream(path: str | Path, binary: bool = False) -> IO:
    """A file to stream into: stdout for `-` (left open when closed), else `path` opened for writing in place
    (its real target for a symlink; a device or FIFO is written, never replaced). Raises OutputError."""
    if str(path) == STDOUT:
        out = sys.stdout.buffer if binary and hasattr(sys.stdout, "buffer") else sys.stdout
        return _Unclosed(out)
    target = path if is_stream(path) else real_target(path)
    try:
        if not is_stream(path):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        return open(target, "wb" if binary else "w", **({} if binary else {"newline": "", "encoding": "utf-8"}))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {why(e)}") from None


class _Unclosed:
    """A stream whose `close` only flushes (stdout stays usable after an output is done)."""

    def __init__(self, f: IO) -> None:
        self._f = f

    def __getattr__(self, name: str):
        return getattr(self._f, name)

    def close(self) -> None:
        self._f.flush()

    def __enter__(self) -> "_Unclosed":
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()


def check_writable(path: str | Path, folder: bool = False) -> None:
    """Raise OutputError unless `path` (a file, or a folder with `folder`) can be written, by creating and
    removing a probe file where the output will go: permissions, read-only mounts and a file in the way
    of a folder are all found before any work is done (root passes permission checks, not this)."""
    if str(path) == STDOUT:
        return
    p = Path(path)
    if is_stream(p):
        if folder:
            raise OutputError(f"cannot write into {p}: it is not a folder")
        if not os.access(p, os.W_OK):
            raise OutputError(f"cannot write {p}: permission denied")
        return
    target = real_target(p) if p.exists() or p.is_symlink() else p.absolute()
    if target.exists() and target.is_dir() != folder:
        raise OutputError(f"cannot write {p}: it is a folder" if not folder else
                          f"cannot write into {p}: it is a file, not a folder")
    where = target if folder else target.parent
    existing = next(a for a in (where, *where.parents) if a.exists() or a.is_symlink())
    if not existing.is_dir():
        raise OutputError(f"cannot write {'into ' if folder else ''}{p}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fflm-probe.", dir=existing)
    except OSError as e:
        raise OutputError(f"cannot write {'into ' if folder else ''}{p}: {why(e)}") from None
    os.close(fd)
    os.unlink(probe)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same real path, or the same inode (hard links, bind mounts)."""
    if str(a) == STDOUT or str(b) == STDOUT:
        return False
    if real_target(a) == real_target(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
