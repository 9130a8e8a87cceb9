"""Anchor numbers of METHOD.md §9 (published zero-shot results) and the dataset names they match."""

from __future__ import annotations

import re
from collections.abc import Mapping

from entroad.errors import ConfigError

# METHOD.md §9: zero-shot reference numbers (%, per-class mean), keyed by our metric names.
REFERENCE: dict[str, dict[str, dict[str, float]]] = {
    "mvtec": {
        "WinCLIP (paper)": {"image_auroc": 91.8, "image_ap": 96.5, "pixel_auroc": 85.1, "pixel_aupro": 64.6},
        "APRIL-GAN": {"image_auroc": 86.1, "image_ap": 93.5, "pixel_auroc": 87.6, "pixel_aupro": 44.0},
        "AnomalyCLIP": {"image_auroc": 91.5, "image_ap": 96.2, "pixel_auroc": 91.1, "pixel_aupro": 81.4},
        "EntroAD (third-party report)": {"pixel_aupro": 86.2},
    },
    "visa": {
        "WinCLIP (paper)": {"image_auroc": 78.1, "image_ap": 81.2, "pixel_auroc": 79.6, "pixel_aupro": 56.8},
        "APRIL-GAN": {"image_auroc": 78.0, "image_ap": 81.4, "pixel_auroc": 94.2, "pixel_aupro": 86.8},
        "AnomalyCLIP": {"image_auroc": 82.1, "image_ap": 85.4, "pixel_auroc": 95.5, "pixel_aupro": 87.0},
        "EntroAD (third-party report)": {"pixel_auroc": 94.8},
    },
    "btad": {"EntroAD (third-party report)": {"pixel_auroc": 96.1}},
    "brainmri": {"EntroAD (third-party report)": {"image_auroc": 96.1}},
}
REFERENCE_TITLES = {"mvtec": "MVTec AD", "visa": "VisA", "btad": "BTAD", "brainmri": "BrainMRI"}
_REFERENCE_ALIASES = {"mvtec": "mvtec", "mvtecad": "mvtec", "visa": "visa", "btad": "btad", "brainmri": "brainmri"}


def reference_key(dataset: str, explicit: Mapping[str, str] | None = None) -> str | None:
    """Which §9 reference row (if any) a dataset name stands for."""
    if explicit and dataset in explicit:
        key = explicit[dataset].lower()
        if key not in REFERENCE:
            raise ConfigError(
                f"evaluation.reference_names: {dataset!r} -> {key!r} is not one of {sorted(REFERENCE)}"
            )
        return key
    return _REFERENCE_ALIASES.get(re.sub(r"[^a-z0-9]", "", dataset.lower()))


