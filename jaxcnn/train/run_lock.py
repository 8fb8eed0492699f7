"""One run directory, one writer: an advisory lock held for the life of a training run.

The lock is ``fcntl.flock`` on ``<run_dir>/.jaxcnn.lock``, a file holding the holder's pid, host and start
time. The kernel releases a flock when its process ends however it ends (SIGKILL included), so a lock file left
by a dead process is stale by construction: the next run locks it and says whose it was. A second process
finds the lock taken and gets `RunDirectoryLocked` naming the holder. Releasing removes the file; a process
that locked a file another one has just removed notices (the path no longer leads to its inode) and tries
again, so two processes can never both believe they hold the directory.

flock works between processes of one machine and on local filesystems; on NFS it depends on the mount.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".jaxcnn.lock"


class RunDirectoryLocked(RuntimeError):
    """Another process holds the run directory's lock."""


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"process {holder.get('pid')} on host {holder.get('host')} (running since {since})"


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}


class RunLock:
    """``acquire()`` takes the lock of ``run_dir`` (created if missing) or raises RunDirectoryLocked;
    ``release()`` gives it back. ``stale`` is the description of the dead holder whose lock file was found,
    or None."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.stale: str | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _read_holder(fd)
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise RunDirectoryLocked(
                        f"run directory {self.run_dir} is in use by {_describe(holder)}: one run directory takes "
                        f"one training at a time; wait for it to end, stop it, or choose another --run-dir"
                    ) from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and removed by its holder between our open and our flock
                os.close(fd)
                continue
            holder = _read_holder(fd)
            if holder:  # its writer no longer holds the flock: it ended without releasing (a kill, a crash)
                self.stale = _describe(holder)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode())
            self._fd = fd
            return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
