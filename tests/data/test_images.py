"""Image conversions and the PNG writer."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from entroad.data.images import encode_png, mask_from_array, read_image, read_mask, save_png, scale_to_uint8


def test_scale_by_bit_depth_not_minmax():
    a = np.array([[0, 2048, 4095]], np.uint16)
    np.testing.assert_array_equal(scale_to_uint8(a), [[0, 128, 255]])
    b = np.array([[0, 1000]], np.uint16)  # 12-bit range assumed, not stretched to 255
    assert scale_to_uint8(b)[0, 1] == round(1000 * 255 / 4095)
    c = np.array([[0, 65535]], np.uint16)
    np.testing.assert_array_equal(scale_to_uint8(c), [[0, 255]])


def test_rgba_palette_and_grayscale(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128  # half transparent -> composited onto black
    Image.fromarray(rgba).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.mode == "RGB" and abs(int(np.asarray(img)[0, 0, 0]) - 100) <= 1
    Image.fromarray(np.full((4, 4), 7, np.uint8)).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").mode == "RGB"
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").mode == "L"


def test_masks_binarised():
    np.testing.assert_array_equal(mask_from_array(np.array([[0, 1, 2]], np.uint8)), [[0, 255, 255]])
    np.testing.assert_array_equal(mask_from_array(np.array([[0, 100, 200]], np.uint8)), [[0, 0, 255]])
    np.testing.assert_array_equal(mask_from_array(np.array([[0, 3]], np.uint8), lossy=True), [[0, 0]])
    np.testing.assert_array_equal(mask_from_array(np.array([[0, 65535]], np.uint16)), [[0, 255]])


def test_truncated_file_raises(tmp_path):
    from entroad.data.images import ImageReadError

    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 9).save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "t.png")
    with pytest.raises(ImageReadError):
        read_mask(tmp_path / "t.png")


@pytest.mark.parametrize("shape", [(13, 17), (9, 5, 3)])
def test_png_writer_roundtrip_and_no_metadata(tmp_path, shape):
    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    img = Image.open(io.BytesIO(encode_png(a)))
    np.testing.assert_array_equal(np.asarray(img), a)
    # An image that carries text/ICC metadata loses it on save
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "DOE^JANE")
    Image.fromarray(a).save(tmp_path / "meta.png", pnginfo=info)
    src = Image.open(tmp_path / "meta.png")
    assert src.info.get("Author") == "DOE^JANE"
    save_png(src, tmp_path / "out.png")
    assert b"DOE" not in (tmp_path / "out.png").read_bytes()
    with pytest.raises(ValueError):
        encode_png(a.astype(np.uint16))
