"""Masks for DICOM volumes: NIfTI volumes aligned to the series grid, or PNG slices.

A NIfTI mask is mapped onto the DICOM voxel grid through both affines (NIfTI is RAS,
DICOM is LPS): the voxel-to-voxel transform must be a signed axis permutation (what
dcm2niix and most tools produce, flips included); anything else - a different grid or
resolution - is refused with a message to resample the mask. A multi-frame file without
per-frame positions needs the NIfTI axes in (column, row, frame) order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from entroad.data.dicom.scan import Volume, volume_affine
from entroad.data.images import mask_from_array, read_mask

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


class MaskError(Exception):
    """A mask cannot be used for its image (reason is PHI-free)."""


def _load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for broken files
        raise MaskError(f"unreadable NIfTI mask ({type(e).__name__})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise MaskError(f"NIfTI mask must be 3-D, got shape {data.shape}")
    return data, np.asarray(img.affine, dtype=float)


def nifti_on_grid(path: Path, vol: Volume) -> np.ndarray:
    """The mask as bool array (slices, rows, columns) in the volume's slice order."""
    data, affine = _load_nifti(path)
    rows, cols = vol.shape
    n = len(vol.slices)
    dicom = volume_affine(vol)
    if dicom is None:
        if data.shape != (cols, rows, n):
            raise MaskError(
                f"NIfTI mask shape {data.shape} does not match (columns, rows, slices) = {(cols, rows, n)} "
                "and the DICOM has no geometry to align it"
            )
        return np.transpose(data, (2, 1, 0)) > 0
    m = np.linalg.inv(dicom) @ (_LPS @ affine)
    rot, shift = m[:3, :3], m[:3, 3]
    perm = np.round(rot)
    if not (np.allclose(rot, perm, atol=0.05) and (np.abs(perm).sum(0) == 1).all() and (np.abs(perm).sum(1) == 1).all()):
        raise MaskError("NIfTI mask is not on the series' voxel grid (rotated or resampled); resample it onto the series")
    axes = [int(np.argmax(np.abs(perm[a]))) for a in range(3)]  # DICOM axis a <- NIfTI axis axes[a]
    out = np.transpose(data, axes)  # now (column, row, slice)
    want = (cols, rows, n)
    if out.shape != want:
        raise MaskError(f"NIfTI mask grid {out.shape} differs from the series grid {want} (columns, rows, slices)")
    for a in range(3):
        sign, t = perm[a, axes[a]], shift[a]
        if sign > 0 and abs(t) < 0.05:
            continue
        if sign < 0 and abs(t - (want[a] - 1)) < 0.05:
            out = np.flip(out, axis=a)
            continue
        raise MaskError("NIfTI mask is shifted against the series (origin differs); resample it onto the series")
    return np.ascontiguousarray(np.transpose(out, (2, 1, 0))) > 0


def png_mask(path: Path, rows: int, cols: int) -> np.ndarray:
    """A PNG/other image mask as bool (rows, columns); size must match the DICOM image."""
    try:
        m = read_mask(path)
    except Exception as e:
        raise MaskError(f"unreadable mask ({type(e).__name__})") from None
    if m.shape != (rows, cols):
        raise MaskError(f"mask size differs from image ({m.shape[1]}x{m.shape[0]} vs {cols}x{rows})")
    return m > 0


__all__ = ["MaskError", "mask_from_array", "nifti_on_grid", "png_mask"]
