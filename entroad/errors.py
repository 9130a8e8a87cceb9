"""Typed, actionable errors.

Every exception a *user* can cause derives from :class:`EntroADError`. The CLI turns these
into a one-line reason and a non-zero exit code (no traceback); anything else is a bug and
keeps its traceback. Messages say what was wrong *and* what to do about it.
"""

from __future__ import annotations


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
