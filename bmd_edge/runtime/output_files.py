"""Output files that never destroy an input, each other, or leave partial results behind.

Why each piece:
- `check_output_path`: `--out m.csv` over the manifest, or `--report` over the radiograph, would
  replace the input; a folder, a FIFO or an unwritable place must give one clear line, not a
  traceback. Checked before any work is done.
- `output_lock`: two runs writing the same file would both report success while one result set
  is silently lost. The lock (`.NAME.lock` beside the output, `flock`, released by the kernel even
  on `kill -9`) makes the second run stop at once with a clear line.
- `temp_path` / `sweep_stale_temps`: results are written to `.NAME.tmp-PID` and renamed into
  place when complete. `kill -9` cannot be caught, so a later run removes the temporaries of
  processes that no longer exist (with `--include-ids` they hold patient names).
- `interrupt_signals`: SIGTERM, SIGHUP (terminal closed) and SIGQUIT raise KeyboardInterrupt in
  the main thread, like Ctrl-C, so the `finally` blocks that remove temporaries run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from bmd_edge.errors import InputError
from bmd_edge.file_checks import display_name, one_line

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)(?P<suffix>\.png)?$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INTERRUPT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGQUIT")
                          if hasattr(signal, n))


def _ident(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_output_path(out: Path, inputs: Iterable[Path], option: str = "--out",
                      example: str = "results.csv") -> Path:
    """`out` made absolute, or InputError when writing it would be wrong or cannot work.

    Refused: an existing folder or non-regular file (FIFO, device), a path whose folder is a
    file, and any path that is (links and hard links included) one of `inputs`.
    Nothing is created here; `prepare_output_folder` does that once every check passed.
    """
    out = Path(os.path.abspath(out))
    shown = display_name(out)
    try:
        st = os.stat(out)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise InputError(f"{option} {shown}: part of its folder path is a file, not a folder; "
                         f"give a file name in an existing or new folder") from None
    except OSError as err:
        raise InputError(f"cannot write {option} {shown}: "
                         f"{one_line(err.strerror or str(err))}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{option} {shown} is a folder; give a file name such as {example}")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{option} {shown} is not a regular file (a FIFO, socket or "
                             f"device); give a file name such as {example}")
        me = (st.st_dev, st.st_ino)
        for p in inputs:
            if _ident(p) == me:
                raise InputError(f"{option} {shown} is the input {display_name(p)}; writing it "
                                 f"would destroy the input: choose another file")
    for parent in out.parents:  # the nearest existing ancestor must be a folder
        if os.path.lexists(parent):
            if not os.path.isdir(parent):
                raise InputError(f"{option} {shown}: {display_name(parent)} is a file, not a "
                                 f"folder; give a file name in a folder")
            break
    return out


def prepare_output_folder(out: Path, option: str = "--out") -> None:
    """Create the output's folder if needed; one clear line when that is impossible."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot write {option} {display_name(out)}: cannot create its folder "
                         f"({one_line(err.strerror or str(err))})") from None


def create_temp(tmp: Path, option: str = "--out") -> int:
    """Create `tmp` afresh for writing (fd): never through a link or onto an existing file.

    Whatever sits at the name (a leftover of a dead process with our pid, a planted link) is
    removed as a name first; the link's target is never touched.
    """
    clear_temp(tmp)
    try:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
    except OSError as err:
        raise InputError(f"cannot write {option}: cannot create {display_name(tmp)}: "
                         f"{one_line(err.strerror or str(err))}") from None


def clear_temp(tmp: Path) -> None:
    """Remove whatever is at the temporary's name (not a folder), never what a link points at."""
    with contextlib.suppress(OSError):
        if not stat.S_ISDIR(os.lstat(tmp).st_mode):
            os.unlink(tmp)


def temp_path(out: Path, pid: int | None = None, suffix: str = "") -> Path:
    """Where results go until complete: a dot-name beside `out`, tagged with the writer's pid.

    `suffix` (".png") keeps writers that choose the format from the name working.
    """
    return out.with_name(f".{out.name}.tmp-{os.getpid() if pid is None else pid}{suffix}")


def pid_alive(pid: int) -> bool:
    """True unless the process certainly no longer exists (never guesses towards deleting)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def sweep_stale_temps(folder: Path, header: str | bytes) -> list[Path]:
    """Remove `.NAME.tmp-PID` files in `folder` whose writer is dead; return what was removed.

    Only bmd-edge's own: the file is empty or starts with `header` (the results CSV header, or
    the PNG signature for `.NAME.tmp-PID.png` report temporaries). A temporary whose pid is
    alive (another run, or a reused pid) is left alone.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    want = header.encode("utf-8") if isinstance(header, str) else header
    for name in names:
        m = _TEMP.match(name)
        if not m or bool(m.group("suffix")) != (want == PNG_MAGIC) \
                or pid_alive(int(m.group("pid"))):
            continue
        path = folder / name
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):  # opening a FIFO would block
                continue
            with open(path, "rb") as fh:
                head = fh.read(len(want))
            if head and head != want:
                continue
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def output_lock(out: Path, option: str = "--out") -> Iterator[None]:
    """Hold an exclusive lock on `out` for this run; a second writer gets InputError at once."""
    lock = out.with_name(f".{out.name}.lock")
    while True:
        try:  # never through a link: a planted `.NAME.lock -> manifest.csv` must not be opened
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK, 0o644)
        except OSError as err:
            why = (f"{display_name(lock.name)} beside it is a symbolic link; remove it"
                   if err.errno == errno.ELOOP else one_line(err.strerror or str(err)))
            raise InputError(f"cannot write {option} {display_name(out)}: {why}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # a FIFO, or a hard link to a file
            os.close(fd)
            raise InputError(f"cannot write {option} {display_name(out)}: "
                             f"{display_name(lock.name)} beside it is not bmd-edge's lock file "
                             f"(not a plain file, or linked to another); remove it")
        if not _try_lock(fd):
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise InputError(f"{option} {display_name(out)} is being written by another "
                             f"bmd-edge run (pid {holder}); wait for it to finish or choose "
                             f"another file")
        # The previous holder may have removed the lock file between our open and our lock:
        # then we hold a lock on an orphan; start again with the file now at that path.
        held = os.fstat(fd)
        if _ident(lock) == (held.st_dev, held.st_ino):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.name == "posix":  # removed while still held, so no other run can slip in
                lock.unlink()
        os.close(fd)
        if os.name != "posix":
            with contextlib.suppress(OSError):
                lock.unlink()


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def interrupt_signals() -> Iterator[Callable[[], contextlib.AbstractContextManager[None]]]:
    """SIGTERM/SIGHUP/SIGQUIT raise KeyboardInterrupt in the main thread while inside.

    Yields `quiet()`: a context manager that holds those signals (and SIGINT) back while
    cleanup runs, so a second signal cannot cut a temporary file's removal short.
    """
    if threading.current_thread() is not threading.main_thread():
        yield contextlib.nullcontext
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in INTERRUPT_SIGNALS}

    @contextlib.contextmanager
    def quiet() -> Iterator[None]:
        held = {*INTERRUPT_SIGNALS, signal.SIGINT}
        if not hasattr(signal, "pthread_sigmask"):
            yield
            return
        before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    try:
        yield quiet
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def atomic_output(out: Path, option: str, header: str | bytes, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path for `out`; rename it onto `out` when the block completes.

    Under the output lock and with TERM/HUP/QUIT turned into KeyboardInterrupt: any failure or
    signal removes the temporary, so `out` is either complete or untouched. Stale temporaries
    of dead writers (starting with `header`) are swept first.
    """
    prepare_output_folder(out, option)
    with interrupt_signals() as quiet, output_lock(out, option):
        sweep_stale_temps(out.parent, header)
        tmp = temp_path(out, suffix=suffix)
        clear_temp(tmp)
        try:
            yield tmp
            try:
                os.replace(tmp, out)
            except OSError as err:
                raise InputError(f"cannot write {option} {display_name(out)}: "
                                 f"{one_line(err.strerror or str(err))}") from None
        except BaseException:
            with quiet(), contextlib.suppress(OSError):
                tmp.unlink()
            raise
