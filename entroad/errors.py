"""Typed, actionable errors.

Every exception a *user* can cause derives from :class:`EntroADError`. The CLI turns these
into a one-line reason and a non-zero exit code (no traceback); anything else is a bug and
keeps its traceback. Messages say what was wrong *and* what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches


class EntroADError(Exception):
    """Base class of every user-facing error of the project."""

    exit_code = 2


class ConfigError(EntroADError):
    """params.yaml (or a CLI override) is invalid; the message names the key."""


class WeightsNotFoundError(EntroADError):
    """Pretrained backbone weights are not on this machine (and may not be downloaded)."""


class UnsupportedBackboneError(EntroADError):
    """The requested open_clip model cannot be used by EntroAD (e.g. not a ViT)."""


class CheckpointError(EntroADError):
    """A checkpoint folder is missing, malformed or does not match the running code."""


class BackboneMismatchError(CheckpointError):
    """A checkpoint was trained on a different backbone (name, size or weights hash)."""


class InputError(EntroADError):
    """Bad input data: wrong shape, non-finite values, unreadable image, empty dataset..."""


class DatasetError(EntroADError):
    """A dataset folder, manifest or raw layout is invalid."""


class ManifestError(DatasetError):
    """A manifest record is invalid (unknown keys, path escaping the dataset folder, ...)."""


class IngestError(DatasetError):
    """Ingestion of a raw dataset failed as a whole (single bad files are skipped and reported)."""


class DicomError(IngestError):
    """A DICOM-specific failure (e.g. a missing pixel-data decoder plugin)."""


class VersioningError(EntroADError):
    """A DVC operation failed (not a DVC repo, lock held, remote unreachable...)."""


class EvaluationError(EntroADError):
    """An evaluation cannot produce a trustworthy number (incompatible model/data, NaN maps...)."""


class TrackingError(EntroADError):
    """The MLflow tracking server or registry is unreachable or in an unexpected state."""


class PromotionError(TrackingError):
    """The promotion gate cannot decide (e.g. candidate and champion evaluated on different data)."""


class UndefinedMetricError(EvaluationError):
    """A metric is undefined for this data (e.g. a class with a single label); the reason says why."""


class PipelineBusyError(EntroADError):
    """Another retrain/promotion holds the pipeline lock; the message names the holder."""


class DatasetNotConfiguredError(ConfigError, DatasetError):
    """A dataset name is neither in params.yaml nor processed; the message says how to add it."""


class DatasetNotIngestedError(DatasetError):
    """A configured dataset has no processed data yet; the message gives the ingest command."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'my-line'?)"`` for the closest of ``choices`` ('' when none is close).

    ``my_line`` and ``My-Line`` match ``my-line``: case and ``_``/``-`` are compared loosely.
    """
    options = list(dict.fromkeys(choices))

    def norm(s: str) -> str:
        return s.lower().replace("_", "-")

    by_norm = {norm(c): c for c in options}
    match = by_norm.get(norm(word)) or next(iter(get_close_matches(norm(word), list(by_norm), n=1, cutoff=0.6)), None)
    if match is not None and match in by_norm:
        match = by_norm[match]
    return f" (did you mean {match!r}?)" if match and match != word else ""


class StageError(EntroADError):
    """An ``entroad`` command run by a DVC stage failed; the message is that command's own reason."""
