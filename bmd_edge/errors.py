"""The package's own error types.

Library code raises these; the CLI turns each into one line on stderr and an exit code, never a
traceback. Anything else escaping to the CLI is a bug in bmd-edge.
"""

from __future__ import annotations

import re


class BmdEdgeError(Exception):
    """Base of every error bmd-edge raises on purpose."""

    exit_code: int = 1


class InputError(BmdEdgeError):
    """Bad input from the user: arguments, image, metadata, manifest. Exit code 2."""

    exit_code = 2


class ImageReadError(InputError):
    """An image file that cannot be read (corrupt, truncated, wrong type, implausible size)."""


class UnsupportedImageError(ImageReadError):
    """A readable file whose content we do not support; the message names what would help."""


class MetadataError(InputError):
    """A clinical field that is missing, malformed or implausible; the message names the field,
    and `field` carries its name for code (a manifest's column) — never parsed from the text."""

    def __init__(self, message: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ManifestError(InputError):
    """A cohort manifest (CSV) that cannot be used; the message names the line and column."""


class QualityGateError(InputError):
    """An image that is clearly not a hip/pelvis radiograph (override with --force)."""


class BundleError(BmdEdgeError):
    """A model bundle or checkpoint that is missing, tampered with or of an unknown format."""

    exit_code = 2


class DependencyError(BmdEdgeError):
    """An optional package needed for this feature is not installed; the message says which."""

    exit_code = 2


# --- wording: every message is one line, whatever the user or a native library put in it -------

MAX_SHOWN = 120  # characters of a user's value echoed back; the rest is counted, not printed
MAX_LINE = 1000  # characters of one error line; a longer one is cut with a count


# C0/C1 controls and the Unicode line/paragraph separators: anything that could split a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with newlines, ESC and every other control character written as `\x0a`-style
    escapes, and file-name bytes that are not UTF-8 as `\xff`, so a value can never break a
    message into two lines or drive the terminal. The same spelling as
    `file_checks.display_name`, so a name reads the same in every message."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a file name's bytes
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")

    def esc(m: re.Match[str]) -> str:
        code = ord(m.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(esc, text)


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """A user's value (a path, an option) as we echo it: control characters escaped, cut to
    `limit` characters with the length said, so a 100,000-character value costs one short line."""
    text = escape_controls(str(value))
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(str(value)):,} characters)"


def quoted(value: object, limit: int = MAX_SHOWN) -> str:
    """repr-like quoting of a user's value, cut like `shown`: 'F', 'abc…(100,000 characters)'."""
    if isinstance(value, str):
        return f"'{shown(value, limit)}'"
    return shown(repr(value), limit)


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """Any message as one printable line: control characters (newlines too) escaped, cut to
    `limit` characters."""
    return shown(text.strip(), limit)


_BOILERPLATE = ("exception from src/", "check '", "[ general_error ]")


def native_reason(err: BaseException) -> str:
    """The informative part of a native library's exception (OpenVINO, ONNX Runtime, libjpeg).

    OpenVINO's messages start with "Exception from src/inference/src/cpp/core.cpp:132:" and put
    the reason on the next lines; taking the first line alone tells the user nothing. This keeps
    every line that is not a source location, joined into one line.
    """
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.lower().startswith(_BOILERPLATE)]
    text = " ".join(useful or lines) or type(err).__name__
    return one_line(text, limit=400)
