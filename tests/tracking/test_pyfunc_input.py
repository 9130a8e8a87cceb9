"""Input rows of the MLflow pyfunc: what a caller can get wrong is named, row by row."""

from __future__ import annotations

import base64
import io

import pandas as pd
import pytest
from PIL import Image

from entroad.errors import InputError
from entroad.tracking.pyfunc import _load_row

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _rows(*b64: str) -> list[pd.Series]:
    frame = pd.DataFrame({"image": [""] * len(b64), "image_b64": list(b64)}, index=[f"r{i}" for i in range(len(b64))])
    return [row for _, row in frame.iterrows()]


def test_valid_b64_png_becomes_a_tensor():
    (row,) = _rows(base64.b64encode(_png_bytes()).decode())
    assert tuple(_load_row(row, 16, MEAN, STD).shape) == (3, 16, 16)


def test_undecodable_image_bytes_name_the_row_and_the_reason():
    rows = _rows(base64.b64encode(_png_bytes()).decode(), base64.b64encode(b"this is not an image").decode())
    with pytest.raises(InputError) as err:
        _load_row(rows[1], 16, MEAN, STD)
    msg = str(err.value)
    assert msg.startswith("row r1: image_b64 decodes to 20 bytes that are not a readable image")
    assert "not an image format Pillow knows" in msg
    assert "BytesIO" not in msg and " at 0x" not in msg


def test_truncated_png_says_what_is_wrong_with_the_data():
    (row,) = _rows(base64.b64encode(_png_bytes()[:40]).decode())
    with pytest.raises(InputError) as err:
        _load_row(row, 16, MEAN, STD)
    msg = str(err.value)
    assert msg.startswith("row r0: image_b64 decodes to 40 bytes") and "BytesIO" not in msg


def test_invalid_base64_and_empty_rows_name_the_row():
    (bad,) = _rows("@@not base64@@")
    with pytest.raises(InputError, match=r"^row r0: image_b64 is not valid base64"):
        _load_row(bad, 16, MEAN, STD)
    (empty,) = _rows("")
    with pytest.raises(InputError, match=r"^row r0: has neither 'image' nor 'image_b64'"):
        _load_row(empty, 16, MEAN, STD)
