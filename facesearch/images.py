"""Reading images from whatever a user hands us, into one canonical form.

Canonical form: ``(h, w, 3) uint8`` RGB, upright (EXIF orientation applied), plus the
SHA-1 of the original bytes, which identifies the photo in the gallery whatever its name.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

# A decompression bomb check that still admits 100-megapixel phone panoramas.
Image.MAX_IMAGE_PIXELS = 200_000_000

ImageSource = Union[str, Path, bytes, bytearray, BinaryIO, np.ndarray]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # (h, w, 3) uint8
    sha1: str  # of the original bytes (or of the pixels, for arrays)
    source: str  # a name to show in messages

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


def content_hash(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _to_rgb_uint8(img: Image.Image, source: str) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and float greyscale: scale the actual range to 0..255 rather than clip,
        # otherwise a 16-bit scan shows up as a white page.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        arr = arr.astype(np.uint8)
        return np.ascontiguousarray(np.stack([arr] * 3, axis=-1))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as a viewer would show them, not black.
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def _decode(data: bytes, source: str) -> np.ndarray:
    if not data:
        raise ImageError(source, "empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # force full decode so truncation is caught here, not later
            return _to_rgb_uint8(img, source)
    except UnidentifiedImageError:
        raise ImageError(source, "not an image (unrecognised file format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or "premature" in msg.lower() or "broken data" in msg.lower():
            raise ImageError(source, "truncated or corrupt image file") from None
        raise ImageError(source, f"cannot decode image ({msg})") from None
    except Image.DecompressionBombError:
        raise ImageError(source, "image is too large to process") from None


def _array_to_rgb(arr: np.ndarray, source: str) -> np.ndarray:
    """Accept (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) arrays; uint8, uint16 or float."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(source, f"unsupported array shape {a.shape}; expected (h, w[, 3|4])")
    if a.dtype == np.uint16:
        a = (a / 257.0).round().astype(np.uint8)
    elif a.dtype.kind == "f":
        a = (np.clip(a, 0, 1) * 255 if a.max(initial=0) <= 1.0 else np.clip(a, 0, 255)).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    elif a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        a = (a[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a)


def load_image(src: ImageSource, name: str | None = None) -> LoadedImage:
    """Load a path, raw bytes, a file-like object (an upload) or an RGB array.

    Raises :class:`ImageError` with a reason a person understands for anything that is
    not a decodable image.
    """
    if isinstance(src, np.ndarray):
        source = name or "<array>"
        rgb = _array_to_rgb(src, source)
        return LoadedImage(rgb, content_hash(rgb.tobytes()), source)
    if isinstance(src, (str, Path)):
        path = Path(src)
        source = name or str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageError(source, "file not found") from None
        except IsADirectoryError:
            raise ImageError(source, "is a folder, not an image") from None
        except OSError as exc:
            raise ImageError(source, f"cannot read file ({exc.strerror or exc})") from None
    elif isinstance(src, (bytes, bytearray)):
        data, source = bytes(src), name or "<bytes>"
    elif hasattr(src, "read"):
        source = name or getattr(src, "name", None) or "<upload>"
        if hasattr(src, "seek"):
            src.seek(0)
        data = src.read()
    else:
        raise ImageError(str(name or src), f"unsupported input type {type(src).__name__}")
    return LoadedImage(_decode(data, source), content_hash(data), source)


def to_jpeg(rgb: np.ndarray, quality: int = 88) -> bytes:
    """Encode an ``(h, w, 3)`` uint8 RGB array as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
