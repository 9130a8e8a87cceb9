"""Site prediction: score an unlabelled folder of images (or DICOM series) with a trained
model, for a hospital or plant team.

Writes into ``out``:

* ``scores.csv`` — one row per image: ``id, score, flagged, threshold, overlay, random_init``
  (ids are paths relative to the input folder; for DICOM the pseudonymous ids of the
  de-identification, never a path, name or UID);
* ``overlays/<id>.png`` — the image beside its anomaly-map overlay, at the original size;
* ``failures.csv`` — files that could not be read, with the reason (they are retried on the
  next run);
* ``predict.json`` — model identity, threshold and its origin, counts.

Resumable: rows are appended and flushed batch by batch; a rerun skips ids already in
``scores.csv`` (and refuses to mix in scores of a different model or threshold).

On a Dask cluster (``dask=``), the listing is scored in shards, one result file each under
``shards/``, merged into the same ``scores.csv``; a rerun scores only the missing shards.

Modules: ``inputs`` (what to score), ``operating_point`` (the threshold), ``overlays``
(pictures), ``scoring`` (a batch: decode, score, rows), ``run`` (the job and its resumable
outputs), ``shards`` (split, per-shard files, merge), ``distributed`` (the Dask tasks).
"""

from entroad.predict.inputs import PredictItem, collect_items
from entroad.predict.operating_point import OPERATING_POINT_FILE, resolve_threshold, save_operating_point
from entroad.predict.overlays import overlay_image, overlay_name
from entroad.predict.run import FAILURES_FILE, META_FILE, SCORES_FILE, PredictResult, predict

__all__ = [
    "FAILURES_FILE", "META_FILE", "OPERATING_POINT_FILE", "SCORES_FILE", "PredictItem", "PredictResult",
    "collect_items", "overlay_image", "overlay_name", "predict", "resolve_threshold", "save_operating_point",
]
