"""Frame-exact, lazy video reading on PyAV.

``VideoReader(path)[i]`` returns exactly the frame that decoding the file from the start returns
as its ``i``-th frame (presentation order, 0-based), also for H.264 with B-frames and long
keyframe intervals. How:

1. **Index.** One demux pass (no decoding) records the presentation timestamp (pts) of every
   frame and which frames are keyframes; the tail after the last keyframe is decoded once to learn
   how many frames really decode (a truncated file decodes fewer frames than its header claims).
   The index is cached as JSON beside the video (``.<name>.bvlm-index``) or, when that folder is
   read-only, in a cache folder; it is keyed by file size and modification time.
2. **Random access** to frame ``i`` seeks to the last keyframe at or before ``i`` and decodes
   forward, identifying every decoded frame by its pts (never by counting after a seek, which is
   what makes naive readers drift by a frame or two around B-frames).
3. **Sequential access** (``i`` after the last frame decoded, no keyframe skippable in between)
   continues decoding without seeking.
4. An LRU of decoded frames serves repeated and backward-nearby reads; a lock per reader makes it
   safe under napari's asynchronous slicing.

Arrays are ``uint8``: ``(H, W)`` for grayscale, ``(H, W, 3)`` RGB for color. Grayscale videos
(gray pixel formats, or YUV video whose chroma is neutral) are read straight from the luma plane,
expanded from limited ("TV", 16-235) to full range when the stream says so, which is what
``frame.to_ndarray(format="gray")`` gives, several times faster.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from napari_behaviorvlm.core.atomic import atomic_write_text

__all__ = ["CACHE_BYTES", "FrameArray", "VideoError", "VideoIndex", "VideoReader", "VIDEO_EXTENSIONS",
           "default_cache_dir", "frame_to_array"]

log = logging.getLogger(__name__)

INDEX_VERSION = 5
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".mj2", ".h264"}
)
#: Most bytes of decoded frames one reader's LRU keeps (caps ``cache_frames`` for big frames).
CACHE_BYTES = 128 * 1024 * 1024
# Frames decoded at indexing time to check that output timestamps follow the packets'.
_HEAD_CHECK = 48
# Decoding this many frames forward is cheaper than a seek (decoder flush, threads refill).
_FORWARD_SLACK = 8
# Chroma within this many levels of neutral (128) counts as "no color" when auto-detecting gray.
_GRAY_CHROMA_TOLERANCE = 4


class VideoError(ValueError):
    """A video cannot be read as asked: unreadable or corrupt file, unsupported codec,
    truncated file, or a frame past the decodable end. The message names the file and frame."""


def default_cache_dir() -> Path:
    """Folder for index files of videos in read-only folders.

    ``$BEHAVIORVLM_CACHE_DIR/video-index`` if set, else ``$XDG_CACHE_HOME`` (or ``~/.cache``)
    ``/napari-behaviorvlm/video-index``.
    """
    env = os.environ.get("BEHAVIORVLM_CACHE_DIR")
    if env:
        return Path(env) / "video-index"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "napari-behaviorvlm" / "video-index"


# --------------------------------------------------------------------------------------------
# Frame conversion
# --------------------------------------------------------------------------------------------

_GRAY_FORMATS = frozenset({"gray", "gray8", "ya8"})
_YUV8_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
                           "yuv411p", "yuv410p", "yuv440p", "yuvj440p", "nv12", "nv21"})
_TV_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)


def _plane(frame: av.VideoFrame, index: int, width: int, height: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:height, :width]


def frame_to_array(frame: av.VideoFrame, gray: bool,
                   reformatter: VideoReformatter | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Convert a decoded frame to a new ``uint8`` array: ``(H, W)`` if ``gray`` else ``(H, W, 3)``.

    Gray from 8-bit YUV/gray formats reads the luma plane directly (limited range is expanded to
    full range, as swscale does); everything else goes through swscale, giving exactly
    ``frame.to_ndarray(format="rgb24"|"gray")``. Pass one ``reformatter`` per video to reuse its
    swscale context (``frame.to_ndarray`` builds a new one per frame, which costs milliseconds).
    ``out``: an array of the right shape to write into instead of allocating (recycled buffers
    avoid the page faults of fresh large allocations).
    """
    name = frame.format.name
    shape = (frame.height, frame.width) if gray else (frame.height, frame.width, 3)
    if out is not None and (out.shape != shape or out.dtype != np.uint8):
        out = None
    if gray and (name in _GRAY_FORMATS or name in _YUV8_FORMATS):
        luma = _plane(frame, 0, frame.width, frame.height)
        full = name.startswith("yuvj") or name in _GRAY_FORMATS or int(frame.color_range) == 2
        if full:
            if out is None:
                return luma.copy()
            np.copyto(out, luma)
            return out
        return cv2.LUT(luma, _TV_TO_FULL, dst=out) if out is not None else cv2.LUT(luma, _TV_TO_FULL)
    fmt = "gray" if gray else "rgb24"
    if reformatter is None:
        return frame.to_ndarray(format=fmt)
    converted = reformatter.reformat(frame, format=fmt)
    if out is None:
        return converted.to_ndarray()
    plane = converted.planes[0]
    row = frame.width * (1 if gray else 3)
    packed = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :row]
    np.copyto(out.reshape(frame.height, row), packed)
    return out


def _looks_gray(frame: av.VideoFrame) -> bool:
    """True if the frame carries no color: a gray format, neutral chroma, or equal RGB channels."""
    name = frame.format.name
    if name in _GRAY_FORMATS or name.startswith("gray"):
        return True
    if name in _YUV8_FORMATS and not name.startswith("nv"):
        chroma = [frame.planes[k] for k in (1, 2)]
        for k, plane in zip((1, 2), chroma):
            arr = _plane(frame, k, plane.width, plane.height).astype(np.int16)
            if np.abs(arr - 128).max() > _GRAY_CHROMA_TOLERANCE:
                return False
        return True
    rgb = frame.to_ndarray(format="rgb24").astype(np.int16)
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() <= _GRAY_CHROMA_TOLERANCE
                and np.abs(rgb[..., 0] - rgb[..., 2]).max() <= _GRAY_CHROMA_TOLERANCE)


# --------------------------------------------------------------------------------------------
# Index
# --------------------------------------------------------------------------------------------

@attrs.define
class VideoIndex:
    """What one demux pass (plus a decode of the tail) learns about a video file.

    Attributes:
        pts: Presentation timestamps (stream time base) of every decodable frame, in
            presentation order; frame ``i`` is the frame with ``pts[i]``. None in "ordinal" mode
            (the container gives no usable timestamps): frames are then identified by decode
            output order and random access restarts from the beginning.
        keyframes: Frame indices (presentation order, ascending, starting with 0) where the
            frames served by each seek point (keyframe) start.
        keyframe_pts: Timestamp to seek to for each entry of ``keyframes`` (the keyframe's pts,
            which may belong to a packet that is decoded but not shown); None in ordinal mode.
        n_frames: Number of frames that decode (``len(pts)``).
        declared_frames: Frame count from the container header/packets (>= n_frames when
            truncated), or 0 if unknown.
        fps: Frames per second (average rate, or from the pts spacing).
        width, height: Frame size in px.
        gray: Whether the video carries no color (auto-detected on the first and last frame).
        codec, pix_fmt: Decoder name and pixel format.
        time_base: Stream time base as ``(numerator, denominator)``.
        size, mtime_ns: File size (bytes) and modification time the index was built for.
        problems: Human-readable notes (e.g. "truncated: header says 40 frames, 13 decode").
    """

    pts: list[int] | None
    keyframes: list[int]
    keyframe_pts: list[int] | None
    n_frames: int
    declared_frames: int
    fps: float
    width: int
    height: int
    gray: bool
    codec: str
    pix_fmt: str
    time_base: tuple[int, int]
    size: int
    mtime_ns: int
    problems: list[str] = attrs.field(factory=list)
    version: int = INDEX_VERSION

    @property
    def gop(self) -> int:
        """Largest keyframe interval in frames (the worst-case random-access decode length)."""
        bounds = list(self.keyframes) + [self.n_frames]
        return max((b - a for a, b in zip(bounds[:-1], bounds[1:])), default=self.n_frames)

    def keyframe_before(self, index: int) -> int:
        """Position in ``keyframes`` of the last keyframe at or before frame ``index``."""
        return max(int(np.searchsorted(self.keyframes, index, side="right")) - 1, 0)

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> VideoIndex:
        data = json.loads(text)
        data["time_base"] = tuple(data["time_base"])
        return cls(**data)


def _file_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _index_locations(path: Path, cache_dir: Path | None) -> list[Path]:
    """Candidate index files: beside the video, then in the cache folder."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return [path.with_name(f".{path.name}.bvlm-index"), folder / f"{digest}-{path.name}.bvlm-index"]


def _load_cached_index(path: Path, cache_dir: Path | None) -> VideoIndex | None:
    size, mtime = _file_key(path)
    for candidate in _index_locations(path, cache_dir):
        try:
            index = VideoIndex.from_json(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if index.version == INDEX_VERSION and index.size == size and index.mtime_ns == mtime:
            return index
    return None


def _folder_writable(folder: Path) -> bool:
    """Writable for us *and* not marked read-only (root ignores permission bits, but a folder
    without any write bit is someone's read-only data: leave it alone)."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return True  # a cache folder not created yet
    return bool(mode & 0o222) and os.access(folder, os.W_OK)


def _save_index(path: Path, index: VideoIndex, cache_dir: Path | None) -> Path | None:
    for candidate in _index_locations(path, cache_dir):
        if not _folder_writable(candidate.parent):
            continue
        try:
            atomic_write_text(candidate, index.to_json())
            return candidate
        except OSError:
            continue
    log.warning("could not cache the frame index of %s (folders not writable)", path)
    return None


def _open_container(path: Path) -> tuple[Any, Any]:
    """Open ``path`` and return ``(container, video_stream)``, or raise VideoError."""
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise VideoError(
            f"{path}: cannot open as a video ({exc}); the file is corrupt, truncated (an MP4 "
            "cut before its index, e.g. an interrupted recording) or not a video"
        ) from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: contains no video stream")
    stream = container.streams.video[0]
    try:
        ctx = stream.codec_context
        if ctx is None or not ctx.name:
            raise ValueError("no decoder")
    except (av.FFmpegError, ValueError) as exc:
        container.close()
        raise VideoError(f"{path}: unsupported codec ({exc}); re-encode it, e.g. "
                         "`ffmpeg -i IN -c:v libx264 -crf 18 OUT.mp4`") from None
    return container, stream


def _decode_packets(container, stream, packets: Iterator) -> Iterator[tuple[av.VideoFrame | None, str]]:
    """Decode ``packets`` then flush; yields ``(frame, "")``, and ``(None, message)`` once on a
    decoding error (after which nothing more is yielded)."""
    ctx = stream.codec_context
    for packet in packets:
        try:
            frames = ctx.decode(packet)
        except av.FFmpegError as exc:
            yield None, str(exc)
            return
        for frame in frames:
            yield frame, ""
    try:
        frames = ctx.decode(None)
    except av.FFmpegError as exc:
        yield None, str(exc)
        return
    for frame in frames:
        yield frame, ""


def _demux(container, stream) -> Iterator:
    """Packets of ``stream`` with data; a demuxing error ends the iteration (truncated file)."""
    it = container.demux(stream)
    while True:
        try:
            packet = next(it)
        except StopIteration:
            return
        except av.FFmpegError:
            return
        if packet.size:
            yield packet


def _frames_from_duration(container, stream, found: int) -> int:
    """Frame count implied by the declared duration, or 0 if unknown; only trusted when it
    exceeds ``found`` by more than 2 frames and 1 % (durations are rounded, audio may be longer)."""
    rate = float(stream.average_rate or 0)
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1e6  # AV_TIME_BASE
    else:
        return 0
    expected = int(round(seconds * rate))
    return expected if expected > found + max(2, 0.01 * found) else 0


def build_index(path: str | os.PathLike) -> VideoIndex:
    """Index ``path`` (one demux pass, decoding only the first frames and the last GOP).

    Raises:
        VideoError: unreadable file, no video stream, unsupported codec, no decodable frame.
    """
    path = Path(path)
    size, mtime = _file_key(path)
    container, stream = _open_container(path)
    try:
        ctx = stream.codec_context
        ctx.thread_type = "AUTO"
        packets = []  # (pts, is_keyframe, is_discard)
        demux_error = ""
        demuxer = container.demux(stream)
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except av.FFmpegError as exc:  # a damaged container: keep what came before
                demux_error = str(exc)
                break
            if packet.size:
                packets.append((packet.pts, bool(packet.is_keyframe), bool(packet.is_discard)))
        if not packets:
            raise VideoError(f"{path}: no video packets (empty, truncated or corrupt file)")
        # Discarded packets (before an MP4 edit list's start, e.g. after `ffmpeg -ss -c copy`)
        # are decoded as references but never output: they are not frames.
        n_discard = sum(d for _, _, d in packets)
        declared = max(int(stream.frames or 0) - n_discard, len(packets) - n_discard)
        if not stream.frames:  # no frame count in the header (MKV, WebM): use the duration
            declared = max(declared, _frames_from_duration(container, stream, len(packets)))
        time_base = stream.time_base or Fraction(1, 1)
        all_pts = [p for p, _, _ in packets]
        ordinal = any(p is None for p in all_pts) or len(set(all_pts)) != len(all_pts)
        problems: list[str] = []
        if demux_error:
            problems.append(f"reading the file stops after {len(packets)} packets ({demux_error}); "
                            "the file is truncated or damaged there")

        # First frame: gray detection, and proof that the codec decodes at all.
        container.close()
        container, stream = _open_container(path)
        stream.codec_context.thread_type = "AUTO"
        first = None
        head_pts = []  # output pts of the first frames: they must be the sorted packet pts
        for frame, err in _decode_packets(container, stream, _demux(container, stream)):
            if frame is None:
                break
            first = first or frame
            head_pts.append(frame.pts)
            if len(head_pts) >= _HEAD_CHECK:
                break
        if not ordinal:
            expected = sorted(p for p, _, d in packets if not d)[:len(head_pts)]
            if head_pts != expected:
                # e.g. H.264 with B-frames in AVI: the container's timestamps are guesses.
                ordinal = True
        if first is None:
            raise VideoError(f"{path}: no frame decodes ({stream.codec_context.name} "
                             f"{stream.codec_context.pix_fmt}); the file is corrupt or the codec "
                             "is unsupported")
        width, height, pix_fmt = first.width, first.height, first.format.name
        last = first

        if ordinal:
            # No usable timestamps: count decodable frames in output order (decodes the file once).
            problems.append("no usable timestamps (frames are counted in decoding order): "
                            "random access restarts from the first frame; remux or re-encode "
                            "to MP4/MKV for fast seeking")
            container.close()
            container, stream = _open_container(path)
            stream.codec_context.thread_type = "AUTO"
            n = 0
            for frame, err in _decode_packets(container, stream, _demux(container, stream)):
                if frame is None:
                    problems.append(f"decoding stops after frame {n - 1}: {err}")
                    break
                last, n = frame, n + 1
            pts_sorted = None
            keyframes, keyframe_pts = [0], None
            n_frames = n
        else:
            pts_sorted = sorted(p for p, _, d in packets if not d)
            # Seek points: a keyframe (pts kp) serves the frames presented from kp on; for each
            # first frame served keep the latest keyframe.
            seek_points: dict[int, int] = {}
            for kp in sorted(p for p, key, _ in packets if key):
                f = bisect.bisect_left(pts_sorted, kp)
                if f < len(pts_sorted):
                    seek_points[f] = kp
            # Frames presented before the first keyframe: seek to the start of the file.
            seek_points.setdefault(0, min(all_pts))
            keyframes = sorted(seek_points)
            keyframe_pts = [seek_points[f] for f in keyframes]
            # Decode the tail (from the last keyframe) to learn how many frames really decode;
            # if seeking fails or lands nowhere, decode the whole file once instead.
            for tail_start in dict.fromkeys((keyframes[-1], 0)):
                container.close()
                container, stream = _open_container(path)
                stream.codec_context.thread_type = "AUTO"
                try:
                    if tail_start:
                        container.seek(int(keyframe_pts[-1]), stream=stream, backward=True)
                except av.FFmpegError:
                    continue
                decoded: set[int] = set()
                err_msg = ""
                for frame, err in _decode_packets(container, stream, _demux(container, stream)):
                    if frame is None:
                        err_msg = err
                        break
                    if frame.pts is not None:
                        decoded.add(frame.pts)
                        last = frame
                if decoded or not tail_start:
                    break
            n_frames = tail_start
            while n_frames < len(pts_sorted) and pts_sorted[n_frames] in decoded:
                n_frames += 1
            if (declared > len(pts_sorted) or demux_error or err_msg) and n_frames > 1:
                # Cut mid-GOP: a reference frame can survive while the B-frames shown before it
                # are lost. End before the first timestamp gap of the tail, so the frames kept
                # are the file's consecutive frames.
                step = float(np.median(np.diff(pts_sorted[:n_frames])))
                for j in range(max(tail_start, 1), n_frames):
                    if pts_sorted[j] - pts_sorted[j - 1] > 1.5 * step:
                        n_frames = j
                        break
            if n_frames < len(pts_sorted):
                problems.append(
                    f"only {n_frames} of {declared} frames decode"
                    + (f" (decoder: {err_msg})" if err_msg else "")
                    + "; the file is truncated or its end is corrupt"
                )
            pts_sorted = pts_sorted[:n_frames]
            kept = [(k, kp) for k, kp in zip(keyframes, keyframe_pts) if k < n_frames]
            keyframes, keyframe_pts = [k for k, _ in kept], [kp for _, kp in kept]
        if n_frames == 0:
            raise VideoError(f"{path}: no frame decodes; the file is corrupt or truncated")
        if declared > n_frames and not any("frames decode" in p for p in problems):
            problems.append(f"only {n_frames} of {declared} frames (by the header's frame count "
                            "or duration) decode; the file is truncated or damaged")

        fps = float(stream.average_rate) if stream.average_rate else 0.0
        if fps <= 0 and pts_sorted is not None and len(pts_sorted) > 1:
            step = float(np.median(np.diff(pts_sorted))) * float(time_base)
            fps = 1.0 / step if step > 0 else 0.0
        gray = _looks_gray(first) and _looks_gray(last)
        return VideoIndex(
            pts=None if pts_sorted is None else [int(p) for p in pts_sorted],
            keyframes=[int(k) for k in keyframes],
            keyframe_pts=None if keyframe_pts is None else [int(p) for p in keyframe_pts],
            n_frames=int(n_frames),
            declared_frames=int(declared), fps=fps, width=int(width), height=int(height),
            gray=bool(gray), codec=str(stream.codec_context.name), pix_fmt=str(pix_fmt),
            time_base=(time_base.numerator, time_base.denominator), size=size, mtime_ns=mtime,
            problems=problems,
        )
    finally:
        container.close()


def load_index(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> VideoIndex:
    """The cached index of ``path`` if still valid, else build and cache it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    cache = None if cache_dir is None else Path(cache_dir)
    index = _load_cached_index(path, cache)
    if index is None:
        index = build_index(path)
        _save_index(path, index, cache)
    for problem in index.problems:
        log.warning("%s: %s", path, problem)
    return index


# --------------------------------------------------------------------------------------------
# Array-like base
# --------------------------------------------------------------------------------------------

class FrameArray:
    """A lazy ``(F, H, W)`` / ``(F, H, W, 3)`` uint8 array of frames (napari-ready).

    Subclasses define ``n_frames``, ``height``, ``width``, ``gray`` and ``read(i)``. Indexing:
    ``a[i]`` one frame, ``a[i, y0:y1, x0:x1]`` a frame cropped, ``a[i0:i1:step]`` / ``a[[i, j]]``
    stacked frames (read into memory: keep such slices short), negative indices count from the end.
    """

    n_frames: int
    height: int
    width: int
    gray: bool

    def read(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        """Frame ``index`` (negative counts from the end); IndexError when out of range."""
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        base = (self.n_frames, self.height, self.width)
        return base if self.gray else base + (3,)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.n_frames

    def _frame_index(self, index) -> int:
        i = int(index)
        if i < 0:
            i += self.n_frames
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {int(index)} is out of range for {self.n_frames} frames")
        return i

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key[:1]):
            key = (slice(None),) + key
        if not key:
            key = (slice(None),)
        first, rest = key[0], key[1:]
        if isinstance(first, np.ndarray) and first.ndim == 0 and first.dtype.kind in "iu":
            first = int(first)
        if isinstance(first, (int, np.integer)):
            frame = self.read(int(first))
            return frame[rest] if rest else frame
        if isinstance(first, slice):
            frames = [self.read(i) for i in range(*first.indices(self.n_frames))]
        else:
            idx = np.asarray(first)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            frames = [self.read(int(i)) for i in idx.reshape(-1)]
        stacked = (np.stack(frames) if frames
                   else np.zeros((0,) + self.shape[1:], dtype=np.uint8))
        return stacked[(slice(None),) + rest] if rest else stacked

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------

class VideoReader(FrameArray):
    """Frame-exact lazy reader of one video file (see module docstring).

    Args:
        path: Video file.
        cache_dir: Folder for the frame index when the video's folder is read-only
            (default :func:`default_cache_dir`).
        grayscale: True -> ``(H, W)`` frames, False -> ``(H, W, 3)`` RGB, None -> auto-detect.
        cache_frames: Number of decoded frames kept in the LRU (0 disables it); capped so the
            LRU holds at most ``CACHE_BYTES`` (128 MiB) per reader.

    Attributes:
        index: The :class:`VideoIndex`.
        stats: Counters: ``decoded`` frames decoded, ``seeks``, ``cache_hits``, ``reads``.

    Raises:
        FileNotFoundError: no such file.
        VideoError: unreadable, corrupt or unsupported file (message names the file).
    """

    def __init__(self, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                 grayscale: bool | None = None, cache_frames: int = 64) -> None:
        self.path = Path(path)
        self.index = load_index(self.path, cache_dir)
        self.gray = self.index.gray if grayscale is None else bool(grayscale)
        frame_bytes = self.index.width * self.index.height * (1 if self.gray else 3)
        self.cache_frames = max(min(int(cache_frames), CACHE_BYTES // max(frame_bytes, 1)), 0)
        self.n_frames = self.index.n_frames
        self.width = self.index.width
        self.height = self.index.height
        self.stats = {"decoded": 0, "seeks": 0, "cache_hits": 0, "reads": 0}
        self._lock = threading.RLock()
        self._reformatter = VideoReformatter()
        self._spare: list[np.ndarray] = []  # evicted frame buffers nobody else holds
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._container = None
        self._stream = None
        self._frames: Iterator | None = None  # (index, av frame) in presentation order
        self._pos = -1  # index of the last frame taken from self._frames
        self._pts_to_index = ({p: i for i, p in enumerate(self.index.pts)}
                              if self.index.pts is not None else None)

    # -- properties ----------------------------------------------------------------------
    @property
    def fps(self) -> float:
        """Frames per second."""
        return self.index.fps

    def __repr__(self) -> str:
        return (f"VideoReader({str(self.path)!r}, frames={self.n_frames}, "
                f"size={self.width}x{self.height}, fps={self.fps:g}, "
                f"{'gray' if self.gray else 'rgb'}, gop={self.index.gop})")

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file (a later read reopens it)."""
        with self._lock:
            self._frames = None
            self._pos = -1
            if self._container is not None:
                self._container.close()
            self._container = self._stream = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_lock", "_reformatter", "_container", "_stream", "_frames"):
            state.pop(key)
        state["_cache"] = collections.OrderedDict()
        state["_spare"] = []
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._reformatter = VideoReformatter()
        self._container = self._stream = self._frames = None
        self._pos = -1

    # -- reading -----------------------------------------------------------------------------
    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based, presentation order) as a read-only uint8 array,
        ``(H, W)`` or ``(H, W, 3)``.

        Raises:
            IndexError: ``index`` outside ``[-n_frames, n_frames)``; if the file header promised
                more frames than decode, the message says the file is truncated.
            VideoError: the frame fails to decode (corrupt data); names file and frame.
        """
        i = int(index)
        if i < 0:
            i += self.n_frames
        if not 0 <= i < self.n_frames:
            extra = ""
            if self.index.declared_frames > self.n_frames and i < self.index.declared_frames:
                extra = (f"; the header lists {self.index.declared_frames} frames but only "
                         f"{self.n_frames} decode (truncated or corrupt end)")
            raise _FrameIndexError(f"{self.path}: frame {int(index)} is past the decodable end "
                                   f"({self.n_frames} frames){extra}")
        with self._lock:
            self.stats["reads"] += 1
            frame = self._cache.get(i)
            if frame is not None:
                self._cache.move_to_end(i)
                self.stats["cache_hits"] += 1
                return frame
            return self._decode_to(i)

    def _remember(self, i: int, arr: np.ndarray) -> np.ndarray:
        arr.flags.writeable = False
        if self.cache_frames:
            self._cache[i] = arr
            self._cache.move_to_end(i)
            while len(self._cache) > self.cache_frames:
                evicted, refs = _pop_oldest(self._cache)
                # Recycle the buffer only if nobody else holds it or a view of it.
                if len(self._spare) < 2 and refs <= _UNSHARED_REFS:
                    self._spare.append(evicted)
        return arr

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        out = self._spare.pop() if self._spare else None
        if out is not None:
            out.flags.writeable = True
        return frame_to_array(frame, self.gray, self._reformatter, out)

    def _decode_to(self, i: int) -> np.ndarray:
        kf = self.index.keyframes[self.index.keyframe_before(i)]
        ahead = self._frames is not None and self._pos < i
        keep_from = i + 1  # continuing forward: frames skipped over are not converted
        if not (ahead and (kf <= self._pos + 1 or i - self._pos <= _FORWARD_SLACK)):
            self._start_at(self.index.keyframe_before(i))
            # A jump (scrubbing): keep the frames decoded on the way, stepping back is then free.
            keep_from = i - self.cache_frames // 2
        for j, frame in self._frames:
            self._pos = j
            if j == i:
                return self._remember(i, self._convert(frame))
            if j > i:
                break
            if j >= keep_from and self.cache_frames and j not in self._cache:
                self._remember(j, self._convert(frame))
        self._frames = None
        raise VideoError(
            f"{self.path}: frame {i} could not be decoded"
            + (f" ({self._error})" if self._error else "")
            + "; the file is corrupt around this frame"
        )

    def _ensure_open(self) -> None:
        if self._container is None:
            self._container, self._stream = _open_container(self.path)
            self._stream.codec_context.thread_type = "AUTO"

    def _start_at(self, kpos: int) -> None:
        """Position the decoder at keyframe number ``kpos`` (falls back to earlier keyframes
        if the demuxer lands after it)."""
        self._ensure_open()
        self.stats["seeks"] += 1
        self._error = ""
        if self._pts_to_index is None:
            # Ordinal mode: restart from the beginning.
            self.close()
            self._ensure_open()
            self._frames = self._ordinal_frames()
            self._pos = -1
            return
        for k in range(kpos, -1, -1):
            start_pts = self.index.keyframe_pts[k]
            try:
                self._container.seek(int(start_pts), stream=self._stream, backward=True)
            except av.FFmpegError:  # a format that cannot seek: start over from the beginning
                self.close()
                self._ensure_open()
            self._stream.codec_context.flush_buffers()
            packets = _demux(self._container, self._stream)
            first = next(packets, None)
            # Skip to a keyframe packet so decoding never starts mid-GOP.
            while first is not None and not first.is_keyframe:
                first = next(packets, None)
            if first is None:
                continue
            landed = first.pts
            if k > 0 and (landed is None or landed > start_pts):
                continue  # landed after the wanted keyframe: try an earlier one
            self._frames = self._indexed_frames(_chain(first, packets), landed)
            self._pos = bisect.bisect_left(self.index.pts, landed) - 1
            return
        raise VideoError(f"{self.path}: cannot seek to the first frame")

    def _indexed_frames(self, packets: Iterator, landed_pts: int) -> Iterator:
        for frame, err in _decode_packets(self._container, self._stream, packets):
            if frame is None:
                self._error = err
                return
            self.stats["decoded"] += 1
            if frame.pts is None or frame.pts < landed_pts:
                continue  # leading frames of an open GOP: not decodable from this seek point
            j = self._pts_to_index.get(frame.pts)
            if j is not None:
                yield j, frame

    def _ordinal_frames(self) -> Iterator:
        j = 0
        for frame, err in _decode_packets(self._container, self._stream,
                                          _demux(self._container, self._stream)):
            if frame is None:
                self._error = err
                return
            self.stats["decoded"] += 1
            yield j, frame
            j += 1

    _error = ""


def _pop_oldest(cache: collections.OrderedDict) -> tuple[Any, int]:
    """Pop the oldest cache entry; return it and its reference count as seen from here."""
    value = cache.popitem(last=False)[1]
    return value, sys.getrefcount(value)


# The count _pop_oldest reports for an object referenced by nothing else (calibrated, since
# what getrefcount reports varies between Python versions).
_UNSHARED_REFS = _pop_oldest(collections.OrderedDict([(0, object())]))[1]


class _FrameIndexError(IndexError, VideoError):
    """Frame index past the decodable end: an IndexError (iteration stops) and a VideoError."""


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest
