"""Reading images from whatever a user hands us, into one canonical form.

Canonical form: ``(h, w, 3) uint8`` RGB, upright (EXIF orientation applied), plus the
SHA-1 of the original bytes, which identifies the photo in the gallery whatever its name.

Whatever the bytes, :func:`load_image` returns that form or raises :class:`ImageError`
with a reason a person understands, and never decodes more than :data:`MAX_PIXELS`: the
size is checked from the header first, large JPEGs are decoded at reduced scale.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesearch.errors import ImageError

# The most pixels ever decoded from one file. Phones write 12-24 MP by default and 48-50 MP
# in their high-resolution modes (every one of these decodes at full size); the largest
# sensors, 108 and 200 MP (16,320 x 12,240), write baseline JPEGs, which libjpeg decodes at
# 1/2, 1/4 or 1/8 scale: a 200 MP photo comes out at 49.9 MP, just under. Decoding one costs
# at most about 350 MB (Pillow's 4 bytes a pixel, then our 3), a bound a hosted server can
# multiply by its visitors.
# Pillow's own check only fails at twice its limit: at the 200 MP this module used to set, a
# 1 MB PNG of 20,000 x 20,000 (400 MP) passed and cost one match 6 GB and 20 s.
MAX_PIXELS = 50_000_000
# The largest file read: the bytes are held in memory while they decode, on top of the
# pixels. An 8-bit RGB photo of MAX_PIXELS stored uncompressed (BMP, TIFF) is 150 MB; a
# JPEG of it is a tenth of that, and a 200 MP phone JPEG 30-60 MB. A bigger file is
# either uncompressed beyond the pixel budget or padded, and was read whole before this
# (a 501 MB upload took the dashboard to 1 GB): refused from its size, before reading.
MAX_FILE_BYTES = 160 * 2**20
# libjpeg's DCT scaling: a JPEG that does not fit MAX_PIXELS at 1/8 is refused.
_JPEG_SCALES = (2, 4, 8)
# Every JPEG we might read at reduced scale must get past Pillow's own check in
# Image.open (which fails at twice this); larger ones are still refused by _fit_budget.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS * _JPEG_SCALES[-1] ** 2
# Its warning (past that size) says nothing _fit_budget's refusal does not.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# The formats a photo comes in. Pillow can open dozens more (EPS runs Ghostscript, PSD,
# ICNS, ...): each is one more parser exposed to whatever a visitor uploads, for no photo.
# (JPEG's opener also reads MPO, the multi-picture JPEGs of some phones.)
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")

ImageSource = Union[str, Path, bytes, bytearray, BinaryIO, np.ndarray]


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


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:,.0f} megapixels" if pixels >= 10**6 else f"{pixels / 1e6:.1f} megapixels"


def _jpeg_needs_full_buffer(data: bytes) -> bool:
    """Whether libjpeg must hold the whole image's DCT coefficients (2 bytes per pixel and
    component) before it can output a row, whatever the scale: a progressive JPEG, or a
    sequential one whose first scan does not hold every component. Reads only the
    markers before the first scan. Unparseable: True (the budget then applies unscaled)."""
    pos, n_components = 2, None
    try:
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return True
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD9)):  # no length field
                pos += 2
                continue
            length = int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker in (0xC2, 0xC6, 0xCA, 0xCE):  # progressive frames
                return True
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                n_components = data[pos + 9]
            elif marker == 0xDA:
                return n_components is None or data[pos + 4] < n_components
            pos += 2 + length
    except IndexError:
        pass
    return True


def _fit_budget(img: Image.Image, data: bytes, source: str) -> None:
    """Refuse, from the header alone, an image that would decode to more than
    :data:`MAX_PIXELS`; a sequential JPEG is set to decode at the smallest reduction
    (1/2, 1/4, 1/8) that fits instead, which also bounds libjpeg's memory (it then
    works one row of blocks at a time)."""
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageError(source, f"the image has no pixels (its header says {w} x {h})")
    if w * h <= MAX_PIXELS:
        return
    is_jpeg = img.format in ("JPEG", "MPO")
    full_buffer = is_jpeg and _jpeg_needs_full_buffer(data)
    if is_jpeg and not full_buffer:
        for k in _JPEG_SCALES:
            if -(-w // k) * -(-h // k) <= MAX_PIXELS:
                img.draft(img.mode, (max(1, w // k), max(1, h // k)))
                if img.size[0] * img.size[1] <= MAX_PIXELS:
                    return
                break
    kind = "a progressive (or multi-scan) JPEG" if full_buffer else f"a {img.format}"
    raise ImageError(
        source,
        f"image too large to process: {kind} of {w:,} x {h:,} pixels ({_mp(w * h)}). The limit is "
        f"{_mp(MAX_PIXELS)} (larger ordinary JPEG photos, up to {_mp(MAX_PIXELS * _JPEG_SCALES[-1] ** 2)}, are read at "
        "reduced size); scale it down and upload it again",
    )


# Pixels converted at a time. Whole-image conversions would hold the decoded photo, its
# converted copy and the bytes Pillow hands numpy (tobytes keeps its chunks and their join
# at once): 3 to 4 copies, 450-500 MB for a 50 MP photo. In strips the peak is the decoded
# photo plus the result.
_STRIP_PIXELS = 1 << 22
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _strips(img: Image.Image):
    """``(first row, strip)`` over a loaded image, each strip a copy of at most
    :data:`_STRIP_PIXELS` pixels."""
    w, h = img.size
    step = max(1, _STRIP_PIXELS // w)
    for y in range(0, h, step):
        yield y, img.crop((0, y, w, min(h, y + step)))


def _stretch_into(img: Image.Image, out: np.ndarray) -> None:
    """16-bit, 32-bit and float greyscale into ``out`` ``(h, w, 3)`` uint8, stretched
    over the image's finite range (rather than clipped, which would show a 16-bit scan as
    a white page); NaN and infinities black."""
    lo, hi = np.inf, -np.inf
    for _, strip in _strips(img):
        a = np.asarray(strip).astype(np.float32)
        a = a[np.isfinite(a)]
        if a.size:
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    if not hi > lo:
        out[:] = 0
        return
    scale = 255.0 / (hi - lo)
    for y, strip in _strips(img):
        a = np.asarray(strip).astype(np.float32)
        a[~np.isfinite(a)] = lo
        a -= lo
        a *= scale
        np.rint(a, out=a)  # float error would otherwise turn the brightest 255 into 254
        out[y:y + a.shape[0]] = np.clip(a, 0, 255).astype(np.uint8)[..., None]


def _to_rgb_uint8(img: Image.Image, source: str) -> np.ndarray:
    """Any loaded Pillow image to ``(h, w, 3)`` uint8 RGB, upright, a strip at a time."""
    try:
        # In place: a copy of a 50 MP photo would be 150 MB more for nothing.
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:
        # A photo with a malformed EXIF block still has its pixels; show them unrotated
        # rather than refuse it (Pillow's EXIF parser raises whatever it trips on).
        pass
    w, h = img.size
    out = np.empty((h, w, 3), np.uint8)
    mode = img.mode
    if mode in _HIGH_DEPTH:
        _stretch_into(img, out)
        return out
    transparent = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    for y, strip in _strips(img):
        try:
            if transparent:
                # Transparent pixels become white, as a viewer would show them, not black.
                strip = Image.alpha_composite(Image.new("RGBA", strip.size, (255, 255, 255, 255)),
                                              strip.convert("RGBA"))
            if strip.mode != "RGB":
                strip = strip.convert("RGB")
        except ValueError:
            raise ImageError(source, f"unsupported colour mode {mode}") from None
        out[y:y + strip.size[1]] = np.asarray(strip)
    return out


def _decode(data: bytes, source: str) -> np.ndarray:
    """Bytes of a JPEG, PNG, WebP, BMP, TIFF or GIF (first frame) to ``(h, w, 3)`` uint8,
    never decoding more than :data:`MAX_PIXELS`. Raises :class:`ImageError` only."""
    if not data:
        raise ImageError(source, "empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError(source, "not an image, or not a supported format (JPEG, PNG, WebP, BMP, TIFF, GIF)") from None
    except Image.DecompressionBombError:
        raise ImageError(source, f"image too large to process (the limit is {_mp(MAX_PIXELS)})") from None
    except Exception:
        # A format's parser choking on its header: whatever it raises (struct.error,
        # SyntaxError, IndexError, ...), for the person it means one thing.
        raise ImageError(source, "not an image, or a corrupt one (its header cannot be read)") from None
    try:
        with img:
            _fit_budget(img, data, source)
            img.load()  # force full decode so truncation is caught here, not later
            return _to_rgb_uint8(img, source)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(source, "image too large to process (out of memory)") from None
    except Exception as exc:
        # Decoders raise OSError for most damage, but hostile bytes reach code paths that
        # raise anything (ValueError, SyntaxError, ZeroDivisionError, struct.error, ...).
        msg = str(exc)
        low = msg.lower()
        if "truncated" in low or "premature" in low or "broken data" in low or "end of file" in low:
            raise ImageError(source, "truncated or corrupt image file") from None
        raise ImageError(source, f"corrupt image, cannot decode it ({msg or type(exc).__name__})") from None


def _array_to_rgb(arr: np.ndarray, source: str) -> np.ndarray:
    """Accept (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) arrays; bool, integer or float
    (0..1 or 0..255; NaN as black)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf":
        raise ImageError(source, f"unsupported array type {a.dtype}; expected numbers")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(source, f"unsupported array shape {a.shape}; expected (h, w[, 3|4])")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(source, f"the image has no pixels (shape {a.shape})")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a / 257.0).round().astype(np.uint8)
    elif a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
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
        # A name that is not UTF-8 (Linux allows any bytes) is shown with those bytes escaped.
        source = name or os.fsencode(path).decode("utf-8", "backslashreplace")
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > MAX_FILE_BYTES:
                    raise ImageError(source, _too_big(size))
                data = fh.read(MAX_FILE_BYTES + 1)
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
        data = src.read(MAX_FILE_BYTES + 1)
    else:
        raise ImageError(str(name or src), f"unsupported input type {type(src).__name__}")
    if len(data) > MAX_FILE_BYTES:  # a file that grew while read, bytes, or an upload
        raise ImageError(source, _too_big(len(data)))
    return LoadedImage(_decode(data, source), content_hash(data), source)


def _too_big(size: int) -> str:
    return (f"file too large to process: {size / 2**20:,.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB "
            "(scale the photo down or save it as JPEG)")


def to_jpeg(rgb: np.ndarray, quality: int = 88) -> bytes:
    """Encode an ``(h, w, 3)`` uint8 RGB array as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

