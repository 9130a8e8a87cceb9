"""The direct read of uncompressed grey pixels equals pydicom's decode, unused high bits included."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array

from entroad.data.dicom.pixels import native_grey
from entroad.data.synthetic.dicom_study import write_dicom_image


@pytest.mark.parametrize(("stored", "signed", "implicit"), [(16, 0, False), (12, 0, False), (12, 1, False),
                                                              (12, 1, True), (10, 0, True)])
def test_native_read_equals_pydicom(tmp_path, stored, signed, implicit):
    rng = np.random.default_rng(stored + signed)
    path = write_dicom_image(tmp_path / "IM1.dcm", np.zeros((6, 10), np.uint16), "CT", seed=1)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = stored, stored - 1, signed
    # Random bits everywhere, the unused high ones too (PS3.5 8.1.1: they cannot be assumed zero).
    ds.PixelData = rng.integers(0, 2**16, (6, 10), dtype=np.uint16).astype("<u2").tobytes()
    if implicit:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(tmp_path / "IM2.dcm", enforce_file_format=True)
    again = pydicom.dcmread(tmp_path / "IM2.dcm")
    fast = native_grey(again)
    assert fast is not None
    ref = pixel_array(again)
    assert fast.dtype == ref.dtype and np.array_equal(fast, ref)


def test_other_layouts_go_to_pydicom(tmp_path):
    path = write_dicom_image(tmp_path / "IM1.dcm", np.zeros((6, 10), np.uint16), "CT", seed=1)
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "RGB"
    assert native_grey(ds) is None
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:-4]  # short
    assert native_grey(ds) is None
