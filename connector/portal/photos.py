"""Shopper photos: accept JPEG, PNG, WebP and HEIC; store a clean JPEG.

The file's name and declared type are ignored; Pillow reads the bytes and anything it does not
recognise as one of the four formats is refused. What is kept is a re-encoded JPEG: orientation
applied, at most 2000 px on the long side, no EXIF or other metadata (location, device), under
the key "shop-<id>/photos/<uuid>.jpg".
"""
from __future__ import annotations

import io
import re
import uuid
import warnings

from flask_babel import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF support (iPhones); registered once at import
    from pillow_heif import register_heif_opener
    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    pass

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "HEIF"})
MAX_SIDE = 2000
# Refuse "decompression bombs": a small file that would unpack into a huge bitmap.
MAX_PIXELS = 50_000_000
JPEG_QUALITY = 85


class PhotoError(ValueError):
    """The upload is not an acceptable photo; the message is for the shopper."""


def photo_key_pattern(shop_id: int) -> re.Pattern[str]:
    """Keys this module writes for `shop_id`; any other key sent back by a form is refused."""
    return re.compile(rf"shop-{int(shop_id)}/photos/[0-9a-f]{{32}}\.jpg")


def read_limited(stream, max_bytes: int) -> bytes:
    """Read at most `max_bytes` from an upload; PhotoError when it is larger."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PhotoError(_("This photo is larger than %(mb)s MB.", mb=max(1, max_bytes // (1024 * 1024))))
    return data


def normalise(data: bytes) -> bytes:
    """The photo as a metadata-free JPEG, upright, at most MAX_SIDE px. Raises PhotoError."""
    if not data:
        raise PhotoError(_("This file is empty."))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in ACCEPTED_FORMATS:
                    raise PhotoError(_("Please upload a photo (JPEG, PNG, WebP or HEIC)."))
                if img.width * img.height > MAX_PIXELS:
                    raise PhotoError(_("This photo has too many pixels."))
                img.load()
                upright = ImageOps.exif_transpose(img)
                clean = _flatten(upright)
    except PhotoError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            OSError, ValueError, SyntaxError, EOFError, MemoryError):
        raise PhotoError(_("Please upload a photo (JPEG, PNG, WebP or HEIC).")) from None
    clean.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    # A new image built from pixels only: no EXIF, XMP, ICC or comments are carried over.
    clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def _flatten(img: Image.Image) -> Image.Image:
    """RGB pixels only; transparency is laid on white."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    rgb = img.convert("RGB")
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def store_photo(storage, shop_id: int, upload, *, max_bytes: int) -> str:
    """Check, re-encode and store one upload (a werkzeug FileStorage); return its storage key."""
    jpeg = normalise(read_limited(upload.stream, max_bytes))
    key = f"shop-{int(shop_id)}/photos/{uuid.uuid4().hex}.jpg"
    storage.put(key, jpeg)
    return key
