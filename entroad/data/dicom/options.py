"""Settings of the DICOM format (``data.datasets.<name>.options``), validated by pydantic.

The defaults here are the documented ones (STACK_NOTES). ``model_dump()`` keeps the key
order and values of the former options dict, so dataset.json and the input fingerprint of
an unchanged dataset stay the same.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from entroad.data.dicom.pixels import parse_display
from entroad.data.dicom.scan import select_slices
from entroad.errors import ConfigError

DICOM_FORMAT = "dicom"
DICOM_DOMAIN = "medical"
DEFAULT_DISPLAY: dict[str, str] = {"CT": "brain", "MR": "percentile", "default": "file"}


class DicomOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: str | None = "labels.csv"  # CSV relative to the source folder; None = no labels
    unlabelled: Literal["skip", "normal", "error"] = "skip"  # slices without a label
    # Display per modality: window preset | "C/W" | file | percentile.
    display: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_DISPLAY))
    percentiles: list[float] = Field(default_factory=lambda: [1.0, 99.0], min_length=2, max_length=2)
    slices: str = "all"  # all | middle | every:K | range:A:B
    # Output side in pixels; None: native resolution padded to a square (resampled once, by
    # the loader, to the model size). A number resizes at ingest (the layout before 2026-12).
    size: int | None = Field(None, ge=4)
    resize: Literal["pad", "stretch"] = "pad"  # pad keeps the aspect with black borders
    class_name: str | None = None  # default: the modality in lower case ("ct", "mr")
    allow_burned_in: bool = False  # BurnedInAnnotation=YES files may show names in pixels
    workers: int = Field(0, ge=0)  # processes; 0 = one per CPU core; 1 = all in the calling process
    chunk: int = Field(16, ge=1)  # slices per work unit when a volume can be split
    salt: str | None = None  # prefer $ENTROAD_DEID_SALT or salt_file: params.yaml is committed
    salt_file: str | None = None
    # A fixed salt that is public on purpose: only for bundled synthetic samples (no real
    # patients), so every clone produces the same bytes and dvc.lock stays unchanged.
    public_salt: str | None = None

    @field_validator("display", mode="before")
    @classmethod
    def _merge_display(cls, given: Any) -> dict[str, str]:
        if not isinstance(given, dict):
            raise ValueError("display must map a modality (or 'default') to a window, 'file' or 'percentile'")
        merged = {**DEFAULT_DISPLAY, **{k if k == "default" else str(k).upper(): v for k, v in given.items()}}
        for v in merged.values():
            parse_display(v)  # ValueError names the bad value and the choices
        return {k: str(v) for k, v in merged.items()}

    @field_validator("slices")
    @classmethod
    def _check_slices(cls, how: str) -> str:
        select_slices(3, how)
        return how


def resolve_dicom_options(given: dict[str, Any]) -> dict[str, Any]:
    """Validated options with defaults filled in, as a plain dict (what the ingest reads)."""
    try:
        opts = DicomOptions.model_validate(given or {})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: "
            f"{'unknown option' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in err.errors()
        )
        raise ConfigError(
            f"format {DICOM_FORMAT!r}: {problems}; known options: {sorted(DicomOptions.model_fields)}"
        ) from None
    out = opts.model_dump()
    if out["public_salt"] is None:
        del out["public_salt"]  # absent unless used: unchanged fingerprints for real data
    return out
