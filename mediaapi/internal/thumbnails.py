"""Thumbnails: made with Pillow at the configured sizes, and the choice of
which one answers a request (content repository, "Thumbnails").

"crop" thumbnails have exactly the configured size (the image scaled to
cover it, then cut in the middle); "scale" ones keep the image's aspect and
fit inside it. Nothing is ever upscaled: a size the image is too small for
is skipped, and a request no thumbnail is big enough for is answered with
the original. ``make_thumbnails`` is CPU work with no I/O; callers run it
in a thread.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.config import ThumbnailSize
from mediaapi.headers import essence
from mediaapi.storage.tables.thumbnails import ThumbnailRow

if TYPE_CHECKING:
    from PIL import Image

THUMBNAILABLE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp"})
JPEG_QUALITY = 85


class ThumbnailError(Exception):
    """The content could not be decoded as an image."""


class ImageTooLarge(ThumbnailError):
    """The image has more pixels than thumbnails are made of."""


@dataclass(frozen=True)
class Thumbnail:
    size: ThumbnailSize
    width: int
    height: int
    content_type: str
    data: bytes


def can_thumbnail(content_type: str) -> bool:
    return essence(content_type) in THUMBNAILABLE_TYPES


def make_thumbnails(data: bytes, sizes: Sequence[ThumbnailSize], *, max_pixels: int) -> list[Thumbnail]:
    """The thumbnails of the image in ``data`` at each size it is big enough
    for. Raises ``ImageTooLarge`` or ``ThumbnailError`` (never anything else
    for bad input)."""
    # Pillow (~3 MB resident) is loaded by the first thumbnail, not at start.
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            width, height = opened.size
            if width < 1 or height < 1:
                raise ThumbnailError("image has no pixels")
            if width * height > max_pixels:
                raise ImageTooLarge(f"{width}x{height} is more than {max_pixels} pixels")
            source_format = opened.format
            opened.load()
            image: Image.Image = ImageOps.exif_transpose(opened)
            # JPEGs stay JPEGs (smaller); everything else becomes PNG, keeping transparency.
            as_jpeg = source_format == "JPEG"
            image = image.convert("RGB" if as_jpeg or image.mode in ("RGB", "L", "CMYK", "YCbCr") else "RGBA")
            return [thumb for size in sizes
                    if (thumb := _thumbnail(image, size, as_jpeg)) is not None]
    except ThumbnailError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, MemoryError) as e:
        raise ThumbnailError(f"cannot decode the image: {e}") from None


def _thumbnail(image: Image.Image, size: ThumbnailSize, as_jpeg: bool) -> Thumbnail | None:
    from PIL import Image

    width, height = image.size
    if size.method == "crop":
        ratio = max(size.width / width, size.height / height)
        if ratio >= 1:
            return None
        scaled_w, scaled_h = max(size.width, round(width * ratio)), max(size.height, round(height * ratio))
        scaled = image.resize((scaled_w, scaled_h), Image.Resampling.LANCZOS)
        left, top = (scaled_w - size.width) // 2, (scaled_h - size.height) // 2
        result = scaled.crop((left, top, left + size.width, top + size.height))
    else:
        ratio = min(size.width / width, size.height / height)
        if ratio >= 1:
            return None
        result = image.resize((max(1, round(width * ratio)), max(1, round(height * ratio))),
                              Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if as_jpeg:
        result.save(out, format="JPEG", quality=JPEG_QUALITY)
    else:
        result.save(out, format="PNG", optimize=True)
    return Thumbnail(size, result.width, result.height, "image/jpeg" if as_jpeg else "image/png",
                     out.getvalue())


def choose_thumbnail(thumbnails: Sequence[ThumbnailRow], width: int, height: int,
                     method: str) -> ThumbnailRow | None:
    """The stored thumbnail that answers a request for ``width`` x ``height``
    by ``method``, or None when none is big enough (then the original answers:
    it is either bigger than any thumbnail or smaller than the request).

    Never a smaller one than asked for: a crop thumbnail must cover both
    dimensions (closest aspect first, then the smallest); a scaled one keeps
    the image's aspect, so reaching either dimension means it covers the
    client's letterbox (the smallest such)."""
    same_method = [t for t in thumbnails if t.method == method]
    if method == "crop":
        big_enough = [t for t in same_method if t.width >= width and t.height >= height]
        wanted_aspect = width / height
        return min(big_enough, key=lambda t: (abs(t.width / t.height - wanted_aspect), t.width * t.height),
                   default=None)
    big_enough = [t for t in same_method if t.width >= width or t.height >= height]
    return min(big_enough, key=lambda t: t.width * t.height, default=None)
