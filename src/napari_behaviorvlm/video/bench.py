"""``behaviorvlm bench video``: frame exactness and speed of :class:`VideoReader` against raw PyAV.

Everything is measured in the same process and run, so ratios are robust to machine load:

- **reference**: a plain PyAV decode loop over the whole file (``container.decode``), each frame
  converted with the reader's own :func:`frame_to_array`, hashed;
- **exactness**: our sequential reads of every frame, and random-order reads of a sample (or of
  every frame), compared with the reference hashes: the count of mismatching frames;
- **speed** (median over repeats, fresh reader each repeat, index already cached), frames/s:
  raw PyAV decode only (the physical limit: no arrays made), raw PyAV decode + the reader's
  conversion to the same arrays (the fair baseline: the fastest plain loop giving the same
  output), raw PyAV decode + ``frame.to_ndarray`` (the usual naive loop), our sequential reads
  (default LRU), our random reads with the LRU off (each access pays its seek and decode; also
  frames decoded per random access).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from napari_behaviorvlm.video.reader import VideoReader, build_index, frame_to_array

__all__ = ["bench_video", "format_table"]


def _digest(arr: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(arr).data, digest_size=16).digest()


def _raw_decode(path: Path, convert: str | None, gray: bool = False) -> tuple[int, float, list]:
    """Decode the whole file with PyAV. convert: None (decode only), "same" (our conversion),
    "ndarray" (``to_ndarray``, the usual loop, which builds a swscale context per frame) or
    "hash" (our conversion, hashed: the reference). Returns (frames, seconds, hashes)."""
    fmt = "gray" if gray else "rgb24"
    hashes = []
    n = 0
    reformatter = VideoReformatter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        t0 = time.perf_counter()
        try:
            for frame in container.decode(stream):
                if convert == "same":
                    frame_to_array(frame, gray, reformatter)
                elif convert == "ndarray":
                    frame.to_ndarray(format=fmt)
                elif convert == "hash":
                    hashes.append(_digest(frame_to_array(frame, gray, reformatter)))
                n += 1
        except av.FFmpegError:
            pass  # a truncated/corrupt end: the frames before it count
        return n, time.perf_counter() - t0, hashes


def bench_video(path: str | Path, samples: int = 200, repeats: int = 3, seed: int = 0,
                cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Measure exactness and speed of :class:`VideoReader` on ``path``.

    Args:
        path: Video file.
        samples: Random accesses per repeat (and frames checked in random order); 0 or more than
            the frame count: every frame once, in random order.
        repeats: Timed repeats (medians are reported).
        seed: Random seed of the access order.
        cache_dir: Index cache folder for read-only video folders.

    Returns:
        A JSON-ready dict (see ``format_table`` for the fields shown).
    """
    path = Path(path)
    t0 = time.perf_counter()
    index = build_index(path)
    index_s = time.perf_counter() - t0
    reader = VideoReader(path, cache_dir=cache_dir)  # caches the index
    gray, n = reader.gray, reader.n_frames
    reader.close()

    n_ref, _, ref = _raw_decode(path, "hash", gray)
    rng = np.random.default_rng(seed)
    k = n if samples <= 0 or samples >= n else samples
    exact_order = rng.permutation(n)[:k]

    # Exactness (untimed): sequential over every frame, random order over the sample.
    with VideoReader(path, cache_dir=cache_dir) as seq:
        seq_mismatch = sum(_digest(seq[i]) != ref[i] if i < n_ref else 1 for i in range(n))
    with VideoReader(path, cache_dir=cache_dir, cache_frames=0) as rnd:
        rnd_mismatch = sum(_digest(rnd[int(i)]) != ref[int(i)] if i < n_ref else 1
                           for i in exact_order)

    timings: dict[str, list[float]] = {k_: [] for k_ in
                                       ("raw_decode", "raw_same", "raw_ndarray", "ours_seq",
                                        "ours_random")}
    decoded_per_access = []
    for r in range(repeats):
        nd, dt, _ = _raw_decode(path, None, gray)
        timings["raw_decode"].append(nd / dt)
        nd, dt, _ = _raw_decode(path, "same", gray)
        timings["raw_same"].append(nd / dt)
        nd, dt, _ = _raw_decode(path, "ndarray", gray)
        timings["raw_ndarray"].append(nd / dt)
        with VideoReader(path, cache_dir=cache_dir) as ours:
            t = time.perf_counter()
            for i in range(n):
                ours[i]
            timings["ours_seq"].append(n / (time.perf_counter() - t))
        order = np.random.default_rng(seed + 1 + r).integers(0, n, size=k)
        # LRU off: every access pays its seek + decode (the cost bounded by the GOP).
        with VideoReader(path, cache_dir=cache_dir, cache_frames=0) as ours:
            t = time.perf_counter()
            for i in order:
                ours[int(i)]
            timings["ours_random"].append(k / (time.perf_counter() - t))
            decoded_per_access.append(ours.stats["decoded"] / k)

    med = {key: statistics.median(vals) for key, vals in timings.items()}
    gops = np.diff(list(index.keyframes) + [index.n_frames])
    return {
        "video": str(path),
        "codec": index.codec, "pix_fmt": index.pix_fmt, "gray": gray,
        "width": index.width, "height": index.height, "fps": index.fps,
        "n_frames": n, "declared_frames": index.declared_frames,
        "reference_frames": n_ref,
        "keyframes": len(index.keyframes), "gop_max": int(gops.max()), "gop_mean": float(gops.mean()),
        "index_build_s": index_s,
        "frames_checked_sequential": n, "mismatches_sequential": int(seq_mismatch),
        "frames_checked_random": int(k), "mismatches_random": int(rnd_mismatch),
        "frame_count_matches_reference": n == n_ref,
        "repeats": repeats, "random_accesses_per_repeat": int(k),
        "raw_decode_fps": med["raw_decode"],
        "raw_decode_same_arrays_fps": med["raw_same"],
        "raw_decode_ndarray_fps": med["raw_ndarray"],
        "ours_sequential_fps": med["ours_seq"],
        "ours_random_fps": med["ours_random"],
        "ratio_sequential_vs_raw_decode": med["ours_seq"] / med["raw_decode"],
        "ratio_sequential_vs_raw_same_arrays": med["ours_seq"] / med["raw_same"],
        "ratio_sequential_vs_raw_ndarray": med["ours_seq"] / med["raw_ndarray"],
        "decoded_per_random_access": statistics.median(decoded_per_access),
        "all_timings_fps": timings,
    }


def format_table(result: dict[str, Any]) -> str:
    """A human-readable table of :func:`bench_video`'s result."""
    r = result
    rows = [
        ("video", f"{r['video']} ({r['codec']} {r['pix_fmt']}, {r['width']}x{r['height']}, "
                  f"{'gray' if r['gray'] else 'rgb'}, {r['fps']:g} fps)"),
        ("frames", f"{r['n_frames']} decodable (header {r['declared_frames']}, "
                   f"reference decode {r['reference_frames']})"),
        ("keyframes / GOP", f"{r['keyframes']} keyframes, GOP max {r['gop_max']}, "
                            f"mean {r['gop_mean']:.1f} frames"),
        ("index build", f"{r['index_build_s']:.3f} s"),
        ("mismatches sequential", f"{r['mismatches_sequential']} / {r['frames_checked_sequential']}"),
        ("mismatches random", f"{r['mismatches_random']} / {r['frames_checked_random']}"),
        ("raw PyAV decode only", f"{r['raw_decode_fps']:.1f} frames/s"),
        ("raw PyAV decode+same arrays", f"{r['raw_decode_same_arrays_fps']:.1f} frames/s"),
        ("raw PyAV decode+to_ndarray", f"{r['raw_decode_ndarray_fps']:.1f} frames/s"),
        ("ours sequential", f"{r['ours_sequential_fps']:.1f} frames/s  "
                            f"(x{r['ratio_sequential_vs_raw_same_arrays']:.2f} of raw+same arrays, "
                            f"x{r['ratio_sequential_vs_raw_decode']:.2f} of decode only, "
                            f"x{r['ratio_sequential_vs_raw_ndarray']:.2f} of raw+to_ndarray)"),
        ("ours random access", f"{r['ours_random_fps']:.1f} frames/s  "
                               f"({r['decoded_per_random_access']:.1f} frames decoded per access)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
