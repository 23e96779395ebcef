"""``behaviorvlm bench video``: frame exactness and speed of :class:`VideoReader` against raw PyAV.

Everything is measured in the same process and run, so ratios are robust to machine load:

- **reference**: a plain PyAV decode loop over the whole file (``container.decode``), each frame
  converted with the reader's own :func:`frame_to_array`, hashed;
- **exactness**: our sequential reads of every frame, and random-order reads of a sample (or of
  every frame), compared with the reference hashes: the count of mismatching frames;
- **speed** (median over interleaved repeats, fresh reader each repeat, index already cached),
  as wall-clock frames/s and as frames per CPU-second of the process (robust to other load on
  the machine); ratios are medians of back-to-back pairs:
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


class _Clock:
    """Wall-clock and process CPU time (all threads) of a block: CPU time is what the work
    costs, robust to other processes competing for the cores; wall time is what a user waits."""

    def __enter__(self) -> _Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = max(time.process_time() - self.cpu0, 1e-9)


def _raw_decode(path: Path, convert: str | None, gray: bool = False) -> tuple[int, _Clock, list]:
    """Decode the whole file with PyAV. convert: None (decode only), "same" (our conversion),
    "ndarray" (``to_ndarray``, the usual loop, which builds a swscale context per frame) or
    "hash" (our conversion, hashed: the reference). Returns (frames, clock, hashes)."""
    fmt = "gray" if gray else "rgb24"
    hashes = []
    n = 0
    reformatter = VideoReformatter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        with _Clock() as clock:
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
    return n, clock, hashes


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

    names = ("raw_decode", "raw_same", "raw_ndarray", "ours_seq", "ours_random")
    wall: dict[str, list[float]] = {key: [] for key in names}  # frames/s
    cpu: dict[str, list[float]] = {key: [] for key in names}  # frames per CPU-second
    decoded_per_access = []

    def record(key: str, frames: int, clock: _Clock) -> None:
        wall[key].append(frames / clock.wall)
        cpu[key].append(frames / clock.cpu)

    for r in range(repeats):  # interleaved, so slow phases of the machine hit every variant
        for key, convert in (("raw_decode", None), ("raw_same", "same"), ("raw_ndarray", "ndarray")):
            frames, clock, _ = _raw_decode(path, convert, gray)
            record(key, frames, clock)
        with VideoReader(path, cache_dir=cache_dir) as ours, _Clock() as clock:
            for i in range(n):
                ours[i]
        record("ours_seq", n, clock)
        order = np.random.default_rng(seed + 1 + r).integers(0, n, size=k)
        # LRU off: every access pays its seek + decode (the cost bounded by the GOP).
        with VideoReader(path, cache_dir=cache_dir, cache_frames=0) as ours:
            with _Clock() as clock:
                for i in order:
                    ours[int(i)]
            decoded_per_access.append(ours.stats["decoded"] / k)
        record("ours_random", k, clock)

    def paired(table: dict[str, list[float]], base: str) -> float:
        """Median over repeats of ours/base measured back to back."""
        return statistics.median(a / b for a, b in zip(table["ours_seq"], table[base]))

    gops = np.diff(list(index.keyframes) + [index.n_frames])
    result: dict[str, Any] = {
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
        "decoded_per_random_access": statistics.median(decoded_per_access),
    }
    for label, table in (("", wall), ("cpu_", cpu)):
        med = {key: statistics.median(vals) for key, vals in table.items()}
        result.update({
            f"raw_decode_{label}fps": med["raw_decode"],
            f"raw_decode_same_arrays_{label}fps": med["raw_same"],
            f"raw_decode_ndarray_{label}fps": med["raw_ndarray"],
            f"ours_sequential_{label}fps": med["ours_seq"],
            f"ours_random_{label}fps": med["ours_random"],
            f"ratio_{label}sequential_vs_raw_decode": paired(table, "raw_decode"),
            f"ratio_{label}sequential_vs_raw_same_arrays": paired(table, "raw_same"),
            f"ratio_{label}sequential_vs_raw_ndarray": paired(table, "raw_ndarray"),
        })
    result["all_timings"] = {"wall_fps": wall, "cpu_fps": cpu}
    return result


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
        ("speed (median of repeats)", "frames/s wall | frames per CPU-second"),
        ("raw PyAV decode only", _pair(r, "raw_decode")),
        ("raw PyAV decode+same arrays", _pair(r, "raw_decode_same_arrays")),
        ("raw PyAV decode+to_ndarray", _pair(r, "raw_decode_ndarray")),
        ("ours sequential", _pair(r, "ours_sequential")),
        ("ours random access", _pair(r, "ours_random")
         + f"  ({r['decoded_per_random_access']:.1f} frames decoded per access, LRU off)"),
        ("ours seq / raw+same arrays", _ratio(r, "raw_same_arrays")),
        ("ours seq / raw decode only", _ratio(r, "raw_decode")),
        ("ours seq / raw+to_ndarray", _ratio(r, "raw_ndarray")),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _pair(r: dict[str, Any], key: str) -> str:
    return f"{r[f'{key}_fps']:9.1f} | {r[f'{key}_cpu_fps']:9.1f}"


def _ratio(r: dict[str, Any], base: str) -> str:
    return (f"x{r[f'ratio_sequential_vs_{base}']:.2f} wall | "
            f"x{r[f'ratio_cpu_sequential_vs_{base}']:.2f} CPU")
