"""Image loading: awkward real files and generated formats."""

import io

import numpy as np
import pytest
from PIL import Image

from facesearch.errors import ImageError
from facesearch.imaging.decode import load_image


@pytest.mark.timeout(30)
def test_not_an_image_and_truncated_are_reported(data_dir):
    with pytest.raises(ImageError, match="not an image"):
        load_image(data_dir / "photos/edge/not-an-image.jpg")
    with pytest.raises(ImageError, match="truncated"):
        load_image(data_dir / "photos/edge/truncated.jpg")
    with pytest.raises(ImageError, match="not found"):
        load_image(data_dir / "photos/edge/does-not-exist.jpg")
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


@pytest.mark.timeout(30)
def test_rgba_png_becomes_rgb_on_white(data_dir):
    img = load_image(data_dir / "photos/edge/32bit.png")
    assert img.rgb.ndim == 3 and img.rgb.shape[2] == 3 and img.rgb.dtype == np.uint8
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    buf = io.BytesIO(); Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    assert (load_image(buf.getvalue()).rgb == 255).all()


@pytest.mark.timeout(30)
def test_exif_orientation_is_applied():
    # A 40x20 landscape image tagged "rotate 90 CW" (orientation 6) must load as 20x40.
    arr = np.zeros((20, 40, 3), np.uint8); arr[:, :20] = 255
    exif = Image.Exif(); exif[0x0112] = 6
    buf = io.BytesIO(); Image.fromarray(arr).save(buf, "JPEG", exif=exif)
    assert load_image(buf.getvalue()).shape == (40, 20)


@pytest.mark.timeout(30)
def test_grayscale_and_16_bit():
    g = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    buf = io.BytesIO(); Image.fromarray(g, "L").save(buf, "PNG")
    rgb = load_image(buf.getvalue()).rgb
    assert rgb.shape == (8, 8, 3) and (rgb[..., 0] == rgb[..., 1]).all()
    g16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    buf = io.BytesIO(); Image.fromarray(g16).save(buf, "PNG")
    rgb16 = load_image(buf.getvalue()).rgb
    # The 16-bit range is stretched, not clipped to white.
    assert rgb16.min() == 0 and rgb16.max() == 255
    assert load_image(np.zeros((5, 5), np.uint16)).rgb.shape == (5, 5, 3)


@pytest.mark.timeout(30)
def test_same_bytes_same_hash(data_dir):
    p = data_dir / "photos/people/obama/obama.jpg"
    assert load_image(p).sha1 == load_image(p.read_bytes()).sha1
