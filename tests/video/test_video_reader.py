"""VideoReader: frame exactness (against the frame numbers written into the pixels), index cache,
sequential access without reseeking, LRU, threads, array API, errors."""

from __future__ import annotations

import os
import pickle
import threading

import av
import numpy as np
import pytest

from napari_behaviorvlm.video import reader as reader_mod
from napari_behaviorvlm.video.reader import VideoError, VideoReader, build_index, frame_to_array
from napari_behaviorvlm.video.writer import pattern_index


def _decode_all(path, gray):
    with av.open(str(path)) as container:
        return [frame_to_array(f, gray) for f in container.decode(video=0)]


def test_test_videos_have_reordered_b_frames(make_video):
    path = make_video("a.mp4")
    with av.open(str(path)) as container:
        packets = [(p.pts, p.is_keyframe) for p in container.demux(video=0) if p.size]
    pts = [p for p, _ in packets]
    assert pts != sorted(pts), "B-frames reorder pts in decode order"
    assert sum(k for _, k in packets) == 4  # 40 frames, GOP 12


@pytest.mark.parametrize("name,gray", [("c.mp4", False), ("g.mp4", True), ("c.mkv", False)])
def test_random_access_is_frame_exact(make_video, tmp_path, name, gray):
    path = make_video(name, gray=gray)
    reference = _decode_all(path, gray)
    reader = VideoReader(path, cache_frames=0)
    assert len(reader) == len(reference) == 40
    assert reader.gray is gray
    order = np.random.default_rng(0).permutation(40)
    for i in order:
        frame = reader[int(i)]
        assert pattern_index(frame) == i
        np.testing.assert_array_equal(frame, reference[i])
    # backwards too
    for i in range(39, -1, -1):
        assert pattern_index(reader[i]) == i


def test_sequential_access_does_not_reseek(make_video):
    reader = VideoReader(make_video("a.mp4", n_frames=40), cache_frames=4)
    for i in range(40):
        assert pattern_index(reader[i]) == i
    assert reader.stats["seeks"] == 1
    assert reader.stats["decoded"] == 40
    # stepping forward by a few frames within a GOP continues decoding too
    reader2 = VideoReader(reader.path, cache_frames=0)
    for i in range(0, 40, 3):
        assert pattern_index(reader2[i]) == i
    assert reader2.stats["seeks"] == 1


def test_random_access_cost_bounded_by_gop(make_video):
    reader = VideoReader(make_video("a.mp4", gop=12), cache_frames=0)
    assert reader.index.gop == 12
    assert reader.index.keyframes == [0, 12, 24, 36]
    for i in [30, 5, 39, 13, 0, 27, 11]:
        before = reader.stats["decoded"]
        assert pattern_index(reader[i]) == i
        # from the keyframe to i, plus the B-frame reordering delay
        assert reader.stats["decoded"] - before <= reader.index.gop + 3


def test_index_cached_beside_video_and_invalidated(make_video, monkeypatch):
    path = make_video("a.mp4")
    VideoReader(path)
    cached = path.with_name(".a.mp4.bvlm-index")
    assert cached.is_file()

    def no_build(_path):
        raise AssertionError("index rebuilt although cached")

    monkeypatch.setattr(reader_mod, "build_index", no_build)
    assert VideoReader(path).n_frames == 40
    monkeypatch.undo()
    # a different file (size/mtime changed) invalidates the cache
    make_video("a.mp4", n_frames=30, overwrite=True)
    assert VideoReader(path).n_frames == 30


@pytest.mark.parametrize("how", ["mode", "error"])
def test_index_goes_to_cache_dir_when_folder_read_only(make_video, tmp_path, monkeypatch, how):
    path = make_video("ro/a.mp4")
    if how == "mode":  # no write bits (respected even when running as root)
        path.parent.chmod(0o555)
    else:  # writing fails
        real_write = reader_mod.atomic_write_text

        def refuse_video_folder(target, text):
            if os.path.dirname(target) == str(path.parent):
                raise PermissionError(f"read-only: {target}")
            return real_write(target, text)

        monkeypatch.setattr(reader_mod, "atomic_write_text", refuse_video_folder)
    cache = tmp_path / "cache"
    try:
        VideoReader(path, cache_dir=cache)
    finally:
        path.parent.chmod(0o755)
    assert not path.with_name(".a.mp4.bvlm-index").exists()
    assert len(list(cache.glob("*a.mp4.bvlm-index"))) == 1
    monkeypatch.setattr(reader_mod, "build_index", lambda p: (_ for _ in ()).throw(AssertionError))
    assert VideoReader(path, cache_dir=cache).n_frames == 40


def test_lru_and_read_only_frames(make_video):
    reader = VideoReader(make_video("a.mp4"), cache_frames=5)
    first = reader[20]
    assert not first.flags.writeable
    assert reader[20] is first
    assert reader.stats["cache_hits"] == 1
    for i in range(40):
        reader[i]
    assert len(reader._cache) <= 5


@pytest.mark.parametrize("gray", [False, True])
def test_evicted_buffers_recycled_only_when_unshared(make_video, gray):
    reader = VideoReader(make_video("a.mp4", gray=gray), cache_frames=2)
    held = reader[0]
    view = reader[1][5:10]
    snapshot_held, snapshot_view = held.copy(), view.copy()
    for i in range(2, 40):
        assert pattern_index(reader[i]) == i  # recycled buffers give the right frames
    assert len(reader._spare) > 0  # unshared evicted buffers were recycled
    np.testing.assert_array_equal(held, snapshot_held)  # ...but never one still in use
    np.testing.assert_array_equal(view, snapshot_view)


def test_concurrent_reads_are_exact(make_video):
    reader = VideoReader(make_video("a.mp4"), cache_frames=3)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for i in rng.integers(0, 40, size=30):
            if pattern_index(reader[int(i)]) != i:
                errors.append(int(i))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_array_api(make_video):
    color = VideoReader(make_video("c.mp4"))
    assert color.shape == (40, 48, 64, 3) and color.ndim == 4 and color.dtype == np.uint8
    assert color.size == 40 * 48 * 64 * 3 and len(color) == 40
    np.testing.assert_array_equal(color[3, 2:10, 5:9], color[3][2:10, 5:9])
    stack = color[2:8:2]
    assert stack.shape == (3, 48, 64, 3)
    assert [pattern_index(f) for f in stack] == [2, 4, 6]
    assert [pattern_index(f) for f in color[[5, 1]]] == [5, 1]
    assert color[1:4, 0, 0].shape == (3, 3)
    assert pattern_index(color[-1]) == 39
    assert pattern_index(color[np.int64(6)]) == 6 and color[np.array(6)].shape == (48, 64, 3)
    assert np.asarray(color).shape == color.shape
    with pytest.raises(IndexError):
        color[40]
    gray = VideoReader(make_video("g.mp4", gray=True))
    assert gray.shape == (40, 48, 64) and gray.ndim == 3
    assert VideoReader(gray.path, grayscale=False).shape == (40, 48, 64, 3)
    forced = VideoReader(color.path, grayscale=True)
    assert forced[0].shape == (48, 64)
    assert color.fps == pytest.approx(30.0)
    clone = pickle.loads(pickle.dumps(color))
    np.testing.assert_array_equal(clone[7], color[7])
    with color:
        color[0]
    assert color._container is None
    assert pattern_index(color[9]) == 9  # reopens after close


def test_corrupt_file_names_file(tmp_path):
    bad = tmp_path / "junk.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="junk.mp4"):
        VideoReader(bad)
    text = tmp_path / "notes.avi"
    text.write_text("not a video")
    with pytest.raises(VideoError, match="notes.avi"):
        VideoReader(text)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoReader(tmp_path / "missing.mp4")


def test_truncated_mp4_without_index_is_an_error(make_video):
    path = make_video("cut.mp4")  # moov atom at the end
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(VideoError, match="cut.mp4.*truncated"):
        VideoReader(path)


@pytest.mark.parametrize("name,kwargs", [("cut.mp4", {"faststart": True}), ("cut.mkv", {})])
def test_truncated_file_reports_decodable_end(make_video, caplog, name, kwargs):
    path = make_video(name, **kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    with caplog.at_level("WARNING"):
        reader = VideoReader(path, cache_frames=0)
    assert 0 < reader.n_frames < 40
    assert reader.index.declared_frames == 40
    assert any("truncated" in p for p in reader.index.problems)
    assert "truncated" in caplog.text
    # the frames kept are the file's consecutive first frames, identical to sequential decoding
    reference = _decode_all_tolerant(path, reader.gray)
    assert reader.n_frames <= len(reference)
    for i in range(reader.n_frames - 1, -1, -1):
        frame = reader[i]
        assert pattern_index(frame) == i
        np.testing.assert_array_equal(frame, reference[i])
    with pytest.raises(VideoError, match=rf"{name}: frame {reader.n_frames} is past the decodable "
                       r"end.*40 frames.*truncated"):
        reader[reader.n_frames]


def _decode_all_tolerant(path, gray):
    out = []
    with av.open(str(path)) as container:
        try:
            for f in container.decode(video=0):
                out.append(frame_to_array(f, gray))
        except av.FFmpegError:
            pass
    return out


def test_index_roundtrip_and_fields(make_video):
    path = make_video("a.mp4", gop=10, fps=25)
    index = build_index(path)
    assert index.fps == pytest.approx(25.0)
    assert (index.width, index.height) == (64, 48)
    assert index.pts == sorted(index.pts) and len(index.pts) == 40
    assert index.keyframes == [0, 10, 20, 30]
    assert type(index).from_json(index.to_json()) == index


def test_edit_list_cut_frames_not_counted(make_video, tmp_path):
    """An MP4 cut without re-encoding (`ffmpeg -ss T -c copy`) keeps the GOP's first packets as
    decode-only ("discard") samples before its edit list: they are not frames."""
    source = make_video("src.mp4")
    cut = tmp_path / "cut.mp4"
    shift = 5 * 512  # 5 frames at 30 fps in 1/15360 time base
    with av.open(str(source)) as src, av.open(str(cut), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is None:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = stream
            out.mux(packet)
    with av.open(str(cut)) as container:
        assert sum(p.is_discard for p in container.demux(video=0)) == 5
    reader = VideoReader(cut, cache_frames=0)
    assert reader.n_frames == len(_decode_all(cut, False)) == 35
    for i in np.random.default_rng(2).permutation(35):
        assert pattern_index(reader[int(i)]) == i + 5


@pytest.mark.parametrize("name,codec,seekable", [("x.avi", "mpeg4", True),
                                                 ("h.avi", "libx264", False),
                                                 ("p.mov", "png", True),
                                                 ("v.webm", "libvpx-vp9", True),
                                                 ("m.mpg", "mpeg2video", True),
                                                 ("raw.h264", "libx264", False)])
def test_other_containers_and_codecs(make_video, name, codec, seekable):
    """AVI stores no presentation timestamps: with H.264 B-frames its guessed pts are wrong, so
    the reader counts frames in output order (exact, but random access restarts from frame 0);
    so does a raw H.264 stream, which has no timestamps at all."""
    path = make_video(name, codec=codec, pix_fmt="rgb24" if codec == "png" else "yuv420p")
    reference = [pattern_index(f) for f in _decode_all(path, False)]
    assert reference == list(range(40))
    reader = VideoReader(path, cache_frames=0)
    assert (reader.index.pts is not None) is seekable
    assert any("no usable timestamps" in p for p in reader.index.problems) is not seekable
    for i in np.random.default_rng(1).permutation(40)[:15]:
        assert pattern_index(reader[int(i)]) == i


@pytest.mark.parametrize("gray", [False, True])
def test_conversion_matches_pyav_to_ndarray(make_video, gray):
    from av.video.reformatter import VideoReformatter

    path = make_video("a.mp4", gray=gray)
    reformatter = VideoReformatter()
    out = np.empty((48, 64) if gray else (48, 64, 3), np.uint8)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            expected = frame.to_ndarray(format="gray" if gray else "rgb24")
            np.testing.assert_array_equal(frame_to_array(frame, gray, reformatter), expected)
            np.testing.assert_array_equal(frame_to_array(frame, gray, reformatter, out), expected)


def test_scrubbing_back_after_a_jump_is_cached(make_video):
    reader = VideoReader(make_video("a.mp4", gop=12), cache_frames=16)
    assert pattern_index(reader[35]) == 35  # jump: decodes 24..35, keeps 27..35
    decoded = reader.stats["decoded"]
    for i in range(34, 26, -1):
        assert pattern_index(reader[i]) == i
    assert reader.stats["decoded"] == decoded  # no decoding for stepping back
    # reading every 3rd frame forward converts only the frames asked for
    strided = VideoReader(reader.path, cache_frames=16)
    for i in range(0, 40, 3):
        strided[i]
    assert len(strided._cache) == len(range(0, 40, 3))
