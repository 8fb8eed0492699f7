"""A full disk, said in one line: which file could not be written, and from which step the run can resume.

Writers raise ENOSPC as an OSError, but orbax's asynchronous checkpoint writer wraps it in its own errors and
threads, and tensorstore (which writes orbax's arrays) reports it as a ValueError whose message ends in
``[os_error_code='28']``; ``find_disk_full`` walks the chain of causes and reads such messages.
"""

from __future__ import annotations

import errno
import os
import re


class DiskFull(RuntimeError):
    """The disk of the run directory filled up; the message says what to do."""


def find_disk_full(err: BaseException) -> OSError | None:
    """The ENOSPC (or EDQUOT, a full quota) OSError among ``err``, its causes and contexts; None if none."""
    seen: set[int] = set()
    pending = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        code = re.search(r"os_error_code='(\d+)'", str(current))
        if code and int(code.group(1)) in (errno.ENOSPC, errno.EDQUOT):
            return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
        pending += [current.__cause__, current.__context__]
        pending += [e for e in getattr(current, "exceptions", ()) if isinstance(e, BaseException)]
    return None


def disk_full_message(err: OSError, fallback_file: str, resume_step: int | None) -> str:
    """``no space left on device while writing <file>; the run can be resumed from step N once space is freed``."""
    what = "no space left on device" if err.errno == errno.ENOSPC else "disk quota exceeded"
    target = err.filename or fallback_file
    if resume_step is None:
        then = "no checkpoint was saved yet: the run starts from step 0 once space is freed"
    else:
        then = f"the run can be resumed from step {resume_step} once space is freed (--resume)"
    return f"{what} while writing {target}; {then}"
