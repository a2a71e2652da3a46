"""Decode and check the images a client sends, before they reach the model.

Everything here runs in the decode thread pool, off the event loop. Limits are checked in
the cheapest order: byte size, then the pixel count from the image header (Pillow opens
lazily, so a 100-megapixel "decompression bomb" is refused before it is decoded), then the
full decode, which is where truncated files show up.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from itertools import chain

import numpy as np

from detectops.serve.errors import RequestError, bad_request, too_large

_ORIENTATION = 0x0112  # the EXIF orientation tag


@dataclass(frozen=True)
class DecodedImage:
    """An RGB image ready for the model, with the statistics the prediction log needs.

    ``width``/``height`` are the uploaded image's size (what pixel boxes refer to); ``pixels``
    may be smaller when a large JPEG was decoded at reduced scale (see ``decode_image``).
    """

    pixels: np.ndarray  # uint8 [h, w, 3]
    num_bytes: int
    format: str  # "JPEG", "PNG", ..., or "array" for raw tensors
    original_size: tuple[int, int] | None = None  # (width, height) when pixels were downscaled

    @property
    def height(self) -> int:
        return int(self.original_size[1] if self.original_size else self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.original_size[0] if self.original_size else self.pixels.shape[1])


def decode_base64(text: object) -> bytes:
    """Decode a TF-Serving ``{"b64": ...}`` value (standard or URL-safe alphabet)."""
    if not isinstance(text, str):
        raise bad_request("invalid_b64", f'"b64" must be a base64 string, got {type(text).__name__}')
    s = text.strip()
    if not s:
        raise bad_request("empty_image", '"b64" is empty: send the image file\'s bytes, base64-encoded')
    try:
        if "-" in s or "_" in s:
            return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request("invalid_b64", f'"b64" is not valid base64 ({exc})') from None


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int,
                 target_size: tuple[int, int] | None = None) -> DecodedImage:
    """Decode an encoded image (JPEG, PNG, BMP, GIF, WebP, TIFF...) to RGB uint8 [H, W, 3].

    ``target_size`` (height, width): the model's fixed input size, if it has one. A JPEG at
    least twice that size in both directions is then decoded at 1/2, 1/4 or 1/8 scale (libjpeg's
    DCT scaling, never below ``target_size``): a 12-megapixel phone photo decodes ~10x faster,
    and the model resizes to its input anyway. Boxes stay normalised, and ``width``/``height``
    report the uploaded size.

    Raises ``RequestError``: 400 ``empty_image`` / ``not_an_image`` / ``truncated_image``,
    413 ``image_too_large`` (bytes or pixels over the limits).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise bad_request("empty_image", "the image is empty (0 bytes): send a JPEG or PNG file")
    if len(data) > max_bytes:
        raise too_large(
            "image_too_large",
            f"the image is {len(data)} bytes; the limit is {max_bytes} bytes (DETECTOPS_MAX_IMAGE_BYTES)",
        )
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise bad_request(
            "not_an_image", f"not an image: {len(data)} bytes that no image format recognises; "
            "send a JPEG or PNG file"
        ) from None
    except Image.DecompressionBombError as exc:
        raise too_large("image_too_large", f"the image has too many pixels ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise bad_request("not_an_image", f"not a readable image ({exc})") from None
    width, height = img.size
    if width * height > max_pixels:
        raise too_large(
            "image_too_large",
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
            "(DETECTOPS_MAX_IMAGE_PIXELS): resize it",
        )
    if width < 1 or height < 1:
        raise bad_request("not_an_image", f"the image has no pixels ({width}x{height})")
    fmt = img.format or "unknown"
    original: tuple[int, int] | None = None
    try:
        if target_size is not None and fmt == "JPEG":
            th, tw = target_size
            if width >= 2 * tw and height >= 2 * th:
                img.draft("RGB", (tw, th))  # keeps the decoded size >= (tw, th)
                if img.size != (width, height):
                    original = (width, height)
        img.load()  # the real decode: truncated or corrupt data fail here
        if img.getexif().get(_ORIENTATION, 1) != 1:  # phone photos: honour the orientation tag
            before = img.size
            img = ImageOps.exif_transpose(img)
            if original is not None and img.size != before:  # rotated by 90 degrees
                original = (original[1], original[0])
        rgb = img if img.mode == "RGB" else img.convert("RGB")  # no copy for the common case
    except Image.DecompressionBombError as exc:
        raise too_large("image_too_large", f"the image has too many pixels ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        message = str(exc)
        code = "truncated_image" if "truncat" in message.lower() else "corrupt_image"
        raise bad_request(code, f"the {fmt} image could not be decoded ({message}): "
                          "the file is damaged or incomplete") from None
    return DecodedImage(pixels=np.asarray(rgb, dtype=np.uint8), num_bytes=len(data), format=fmt,
                        original_size=original)


def decode_array(value: object, *, max_pixels: int) -> DecodedImage:
    """A raw TF-Serving tensor instance: nested lists [H][W][3] of integers 0-255."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise bad_request("invalid_tensor", f"the tensor is not a regular [H, W, 3] array ({exc})") from None
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr, value = arr[0], value[0]  # type: ignore[index]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise bad_request("invalid_tensor", f"a raw image tensor must have shape [H, W, 3]; got {list(arr.shape)}")
    if arr.shape[0] * arr.shape[1] > max_pixels:
        raise too_large("image_too_large", f"the tensor has {arr.shape[0] * arr.shape[1]} pixels; "
                        f"the limit is {max_pixels}")
    if arr.size == 0:
        raise bad_request("invalid_tensor", "the tensor is empty")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise bad_request("invalid_tensor", f"tensor values must be numbers 0-255, got {arr.dtype}")
    # numpy reads [true, 1, 2] as [1, 1, 2], but JSON true is not a number (a few % of the parse time)
    if bool in set(map(type, chain.from_iterable(chain.from_iterable(value)))):  # type: ignore[arg-type]
        raise bad_request("invalid_tensor", "tensor values must be numbers 0-255, got true/false")
    if arr.min() < 0 or arr.max() > 255:
        raise bad_request("invalid_tensor", "tensor values must be in 0-255 (uint8)")
    return DecodedImage(pixels=arr.astype(np.uint8), num_bytes=int(arr.size), format="array")


def decode_instance(instance: object, *, max_bytes: int, max_pixels: int,
                    input_name: str = "input_tensor",
                    target_size: tuple[int, int] | None = None) -> DecodedImage:
    """One TF-Serving instance: ``{"b64": ...}``, ``{"input_tensor": {"b64": ...}}``,
    ``{"input_tensor": [[[r, g, b], ...]]}`` or a bare ``[H][W][3]`` list."""
    if isinstance(instance, dict):
        if "b64" in instance:
            return decode_image(decode_base64(instance["b64"]), max_bytes=max_bytes, max_pixels=max_pixels,
                                target_size=target_size)
        if input_name in instance:
            return decode_instance(instance[input_name], max_bytes=max_bytes, max_pixels=max_pixels,
                                   input_name="\0", target_size=target_size)
        raise bad_request("invalid_instance",
                          f'an instance must be {{"b64": "<base64 image>"}} (or {{"{input_name}": ...}}); '
                          f"got an object with keys {sorted(instance)[:5]}")
    if isinstance(instance, list):
        return decode_array(instance, max_pixels=max_pixels)
    raise bad_request("invalid_instance",
                      f'an instance must be {{"b64": "<base64 image>"}}; got {type(instance).__name__}')


__all__ = ["DecodedImage", "RequestError", "decode_array", "decode_base64", "decode_image", "decode_instance"]
