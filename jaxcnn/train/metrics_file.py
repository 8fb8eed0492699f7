"""metrics.jsonl: JSON lines appended one record at a time, validated when read back.

An append is not atomic: a kill, a power loss or a full disk in the middle of one leaves a last line without
its newline, or with only part of its text. So each append is flushed and fsynced, an append that fails is
undone (the file is truncated back to its length before it, which needs no free space), and ``read`` checks
every line: a torn last line is reported with the file name and line number and dropped (the steps it held are
computed again after a resume from the checkpoint before them); a bad line before the last is corruption no
append produces, and is a ValueError naming the file and the line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from jaxcnn.train.atomic_files import with_filename


def append(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` as one line; on an OSError (a full disk) the file is left as it was before."""
    line = json.dumps(record) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        size = f.tell()
        try:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        except OSError as err:
            try:
                f.truncate(size)
            except OSError:
                pass  # the torn line is then dropped by read()
            raise with_filename(err, path) from err


def _record(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("step"), int) else None


def read(path: str | os.PathLike, warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The records of ``path`` (none if it does not exist). A torn last line is dropped, with a message to
    ``warn``; any other line that is not a JSON object with an integer "step" is a ValueError."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # tail: text after the last newline ("" when the file ends with one)
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        record = _record(line)
        if record is None:
            if number == len(complete) and not tail.strip():
                if warn is not None:
                    warn(f"{path}: line {number} is not a whole record (a write cut short); dropped")
                continue
            raise ValueError(
                f"{path}: line {number} is not a JSON record with a step: {line[:80]!r}; the file is corrupt "
                f"(delete the line, or start the run again with --overwrite)"
            )
        records.append(record)
    if tail.strip() and warn is not None:
        warn(f"{path}: line {len(complete) + 1} has no end of line (a write cut short); dropped")
    return records
