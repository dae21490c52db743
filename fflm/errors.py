"""fflm's errors and warnings. Every error fflm raises on purpose is an `FflmError`: a problem with the
input, the files or the options, never a bug. Its `exit_code` is what the command line returns for it: 2 for a
usage error (`UsageError`), 1 for a failure. Anything else that escapes is a bug and is reported as one.

The classes that also subclass a built-in error (ValueError, OSError) keep it, so that code catching the built-in
still catches them."""

from __future__ import annotations


class FflmError(Exception):
    """Base of fflm's own errors."""

    exit_code = 1


class UsageError(FflmError, ValueError):
    """An option or argument the library cannot use as given (an unknown device, precision or tiling)."""

    exit_code = 2


class MissingExtra(UsageError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class ImageError(FflmError):
    """An image that cannot be read: missing, not an image, truncated or of an unsupported kind."""


class WeightsError(FflmError):
    """A missing, corrupt or mismatched weights file."""


class DetectorModelError(WeightsError):
    """A missing, corrupt or mismatched detector model file."""


class AnnotationError(FflmError, ValueError):
    """A malformed annotation file; the message names the file and line."""


class SchemeError(FflmError, ValueError):
    """A landmark scheme that cannot be used: unknown name, unreadable file, or points and regions that do not agree."""


class BoxesFileError(FflmError, ValueError):
    """An unreadable, empty or malformed boxes file."""


class OutputError(FflmError, OSError):
    """An output that cannot be written; the message names the path asked for and why, in words."""


class TrainError(FflmError):
    """A training run that cannot start or continue (bad data, run directory or options)."""


class TrainInterrupted(TrainError):
    """Training stopped by SIGINT/SIGTERM after saving its checkpoint (the CLI exits 130)."""


class BoxWarning(UserWarning):
    """A given face box had to be clipped to the image."""
