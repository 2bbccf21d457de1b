"""The package's own error types.

Library code raises these; the CLI turns each into one line on stderr and an exit code, never a
traceback. Anything else escaping to the CLI is a bug in bmd-edge.
"""

from __future__ import annotations


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
