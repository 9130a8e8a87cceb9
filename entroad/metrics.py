"""Stable import path for the metric functions (they live in :mod:`entroad.evaluation`)."""

from entroad.evaluation.metrics import (  # noqa: F401
    AUPRO_DEFINITIONS,
    auroc,
    average_precision,
    f1_max,
    image_metrics,
)
from entroad.evaluation.pixel_metrics import aupro, pixel_metrics  # noqa: F401
