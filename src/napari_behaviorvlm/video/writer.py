"""Write videos with PyAV (atomically), and a frame-numbered test pattern.

The test pattern writes each frame's own index into the image as binary blocks, so a reader's
frame exactness can be checked against the truth (``pattern_index(reader[i]) == i``), not only
against another decode of the same file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np

from napari_behaviorvlm.core.atomic import atomic_path, check_overwrite

__all__ = ["PATTERN_BLOCK", "pattern_frame", "pattern_index", "write_pattern_video", "write_video"]

#: Side of one bit block of the test pattern (px).
PATTERN_BLOCK = 8
_PATTERN_BITS = 12  # frame indices up to 4095


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 30.0, *,
                codec: str = "libx264", gop: int = 12, b_frames: int = 2, crf: int = 18,
                preset: str | None = None, pix_fmt: str = "yuv420p", faststart: bool = False,
                overwrite: bool = False) -> Path:
    """Encode ``frames`` (each ``(H, W)`` gray or ``(H, W, 3)`` RGB, uint8) to ``path``.

    Args:
        fps: Frame rate (frames/s).
        gop: Keyframe interval (frames); B-frames: up to ``b_frames`` between references.
        crf: x264 quality (lower is better; 18 is visually lossless).
        preset: x264 speed preset (e.g. ``"veryfast"``); None keeps x264's default (medium).
        faststart: Put the MP4 index at the start of the file.
        overwrite: Replace an existing file.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: no frames, odd width/height for 4:2:0, frames of different sizes.
    """
    path = Path(path)
    check_overwrite(path, overwrite)
    options = {"movflags": "+faststart"} if faststart else {}
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", options=options) as container:
            stream = None
            for frame in frames:
                arr = np.ascontiguousarray(frame, dtype=np.uint8)
                if stream is None:
                    height, width = arr.shape[:2]
                    if pix_fmt.startswith("yuv420") and (height % 2 or width % 2):
                        raise ValueError(f"{path}: {pix_fmt} needs an even width and height, "
                                         f"got {width}x{height}")
                    stream = container.add_stream(codec, rate=_rate(fps))
                    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
                    stream.codec_context.gop_size = gop
                    stream.codec_context.max_b_frames = b_frames
                    if codec == "libx264":
                        x264 = {"crf": str(crf), "bf": str(b_frames), "g": str(gop),
                                "keyint_min": str(gop), "sc_threshold": "0"}
                        if preset:
                            x264["preset"] = preset
                        stream.codec_context.options = x264
                if arr.shape[:2] != (stream.height, stream.width):
                    raise ValueError(f"{path}: frame {count} is {arr.shape[1]}x{arr.shape[0]}, "
                                     f"the first was {stream.width}x{stream.height}")
                fmt = "gray" if arr.ndim == 2 else "rgb24"
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format=fmt)):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
            for packet in stream.encode():
                container.mux(packet)
    return path


def _rate(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def pattern_frame(index: int, height: int = 48, width: int = 64, gray: bool = False) -> np.ndarray:
    """Test frame ``index``: its bits as bright/dark 8 px blocks along the top rows (row-major),
    a bar moving one column per frame and a brightness ramp. ``(H, W)`` or ``(H, W, 3)`` uint8."""
    if (height // PATTERN_BLOCK) * (width // PATTERN_BLOCK) < _PATTERN_BITS:
        raise ValueError(f"a {width}x{height} pattern cannot hold {_PATTERN_BITS} bit blocks")
    img = np.full((height, width), 40 + (index * 7) % 60, dtype=np.uint8)
    img[:, (index * 3) % width] = 150
    per_row = width // PATTERN_BLOCK
    for bit in range(_PATTERN_BITS):
        r, c = divmod(bit, per_row)
        value = 230 if (index >> bit) & 1 else 15
        img[r * PATTERN_BLOCK:(r + 1) * PATTERN_BLOCK, c * PATTERN_BLOCK:(c + 1) * PATTERN_BLOCK] = value
    if gray:
        return img
    rgb = np.stack([img, img // 2 + 60, 255 - img], axis=-1)
    return rgb.astype(np.uint8)


def pattern_index(image: np.ndarray) -> int:
    """Read back the frame index written by :func:`pattern_frame` (gray or RGB image)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., 0]
    per_row = img.shape[1] // PATTERN_BLOCK
    m = 2  # ignore block borders (compression blurs them)
    index = 0
    for bit in range(_PATTERN_BITS):
        r, c = divmod(bit, per_row)
        block = img[r * PATTERN_BLOCK + m:(r + 1) * PATTERN_BLOCK - m,
                    c * PATTERN_BLOCK + m:(c + 1) * PATTERN_BLOCK - m]
        if block.mean() > 122:
            index |= 1 << bit
    return index


def write_pattern_video(path: str | os.PathLike, n_frames: int = 40, height: int = 48,
                        width: int = 64, gray: bool = False, **kwargs) -> Path:
    """Write an ``n_frames`` test-pattern video (``pattern_index(frame i) == i``).

    ``kwargs`` go to :func:`write_video` (fps, gop, b_frames, crf, faststart, overwrite...).
    """
    frames = (pattern_frame(i, height, width, gray) for i in range(n_frames))
    return write_video(path, frames, **kwargs)
