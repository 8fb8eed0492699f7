"""Whole-file writes that a crash, a kill or a full disk cannot leave half done.

A file is written to a temporary name in its own directory, flushed and fsynced, then renamed over the target
with ``os.replace`` (atomic on POSIX: readers see the old file or the new one, never a mix), and the directory is
fsynced so the rename itself survives a power loss. On any error the temporary file is removed and the OSError is
raised again with the target's name as its ``filename``, so the message names the file the user knows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make the directory entries (a rename, a new file) durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def with_filename(err: OSError, path: str | os.PathLike) -> OSError:
    """The same OSError (errno and message kept) naming ``path``."""
    return type(err)(err.errno, err.strerror or str(err), os.fspath(path)) if err.errno else err


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by a file holding ``text``, atomically and durably."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise with_filename(err, path) from err
    fsync_directory(path.parent)


def write_json(path: str | os.PathLike, value: Any, allow_nan: bool = False) -> None:
    """``write_text`` of indented JSON; NaN or Infinity, which standard JSON lacks, are a ValueError unless
    ``allow_nan`` (then written as Python's json writes them)."""
    write_text(path, json.dumps(value, indent=2, allow_nan=allow_nan) + "\n")
