"""Bundled synthetic data (no real images, no real patients): textures with defects, raw
MVTec / VisA layouts, a processed dataset for tests, and a DICOM study with planted PHI.

The industrial generators are re-exported here (``from entroad.data.synthetic import
write_processed_dataset``); :mod:`.dicom_study` and :mod:`.samples` are imported by name.
"""

from entroad.data.synthetic.layouts import (
    DEFECTS,
    DIFFUSE_DEFECTS,
    FAMILIES,
    LOCALISED_DEFECTS,
    make_sample,
    sample_rng,
    write_mvtec_layout,
    write_processed_dataset,
    write_visa_layout,
)

__all__ = [
    "DEFECTS",
    "DIFFUSE_DEFECTS",
    "FAMILIES",
    "LOCALISED_DEFECTS",
    "make_sample",
    "sample_rng",
    "write_mvtec_layout",
    "write_processed_dataset",
    "write_visa_layout",
]
