"""Format readers, one module per on-disk layout; ``get_format(name)`` looks them up.

DICOM is one of them (:mod:`entroad.data.formats.dicom`); it brings its own converter.
"""

from __future__ import annotations

from entroad.data.formats import (
    anomalyclip,
    br35h,
    brainmri,
    btad,
    cvc_clinicdb,
    cvc_colondb,
    dicom,
    dtd_synthetic,
    folder,
    headct,
    isic,
    ksdd2,
    kvasir,
    mpdd,
    mvtec,
    visa,
)
from entroad.data.formats.base import ImageFormat
from entroad.errors import ConfigError, did_you_mean

FORMATS: dict[str, ImageFormat] = {
    m.FORMAT.name: m.FORMAT
    for m in (mvtec, visa, btad, mpdd, ksdd2, dtd_synthetic, brainmri, headct, br35h, isic,
              cvc_colondb, cvc_clinicdb, kvasir, folder, anomalyclip, dicom)
}
FORMAT_NAMES: tuple[str, ...] = tuple(sorted(FORMATS))


def get_format(name: str) -> ImageFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset format {name!r}{did_you_mean(name, FORMAT_NAMES)}; known formats: "
            f"{', '.join(FORMAT_NAMES)} (details: `entroad data formats NAME`)"
        ) from None
