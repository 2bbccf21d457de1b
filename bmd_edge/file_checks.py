"""Which input paths are safe to read, and how to name any path safely in one line of text.

Why: a batch meets whatever is on disk: links that loop, dangle or leave the folder, FIFOs that
would block a read forever, names longer than the file system allows, names whose bytes are not
UTF-8. Each must become one row's clear reason, never the end of the run (nor a hang), and a
name must never break the one-row-per-image results file or the one-line error.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from bmd_edge.errors import escape_controls


def display_name(text: str | os.PathLike[str]) -> str:
    """`text` as one printable line that encodes as UTF-8.

    Bytes of a file name that are not UTF-8 (Python holds them as lone surrogates) become
    `\\xe9`-style escapes, as do control characters such as a newline inside a name.
    """
    return escape_controls(os.fspath(text))


def one_line(text: str) -> str:
    """A message squeezed onto one safe line (whitespace runs become one space)."""
    return " ".join(display_name(" ".join(str(text).split())).split())


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _longest_name(path: Path) -> int:
    return max((len(os.fsencode(part)) for part in path.parts), default=0)


def os_error_reason(path: Path, err: OSError, names: bool = True) -> str:
    """What an OSError from stat/open on `path` means, in words a user can act on.

    `names=False` leaves out every file name (a link's target), for outputs that must not hold
    names (they may be patients' names).
    """
    if err.errno == errno.ELOOP:
        return "is a symbolic link loop (links that point at each other); it is not read"
    if err.errno == errno.ENOENT and os.path.islink(path):
        if not names:
            return "is a link to a missing file; it is not read"
        try:
            target = display_name(os.readlink(path))
        except OSError:
            target = "?"
        return f"is a link to a missing file ({target}); it is not read"
    if err.errno == errno.ENOENT:
        return "was not found"
    if err.errno == errno.ENAMETOOLONG:
        return (f"has a name longer than the file system allows ({_longest_name(path)} bytes in "
                f"one name; the usual limit is 255)")
    if err.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read: permission denied"
    if err.errno == errno.ENOTDIR:
        return "has a file where a folder should be in its path"
    return f"cannot be read: {one_line(err.strerror or str(err))}"


def unreadable_reason(path: Path, names: bool = True) -> str | None:
    """None when `path` (links followed) is a regular file; else why it will not be read.

    Called before every read, so a FIFO, a socket or a device never blocks the run.
    `names=False`: the reason names no file (see `os_error_reason`).
    """
    try:
        st = os.stat(path)
    except OSError as err:
        return os_error_reason(path, err, names)
    except ValueError:  # an embedded NUL byte
        return "has a NUL character in its name; it is not read"
    if stat.S_ISREG(st.st_mode):
        return None
    return f"is {_kind(st.st_mode)}, not a regular file; it is not read"


def special_kind(path: Path) -> str | None:
    """'a FIFO (named pipe)', 'a socket', 'a device' when `path` (links followed) is one: a read
    of it could block forever or never end. None for files, folders and what cannot be stat-ed
    (the read itself then reports that)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else _kind(mode)


def link_leaving(path: Path, root: Path, names: bool = True) -> str | None:
    """When `path` is a link whose target lies outside `root` (resolved): the reason, else None.

    `names=False`: the reason does not name the target.
    """
    if not os.path.islink(path):
        return None
    try:
        target = Path(os.path.realpath(path))
    except (OSError, RuntimeError, ValueError):
        return None  # a loop: unreadable_reason names it
    if target == root or target.is_relative_to(root):
        return None
    where = display_name(target) if names else "a file"
    return f"is a link to {where} outside the folder; links leaving the folder are not followed"
