"""Frame-accurate video access on the real clips, the forward path, the cache, bad files."""

import random

import cv2
import numpy as np
import pytest

from bpr.data.media import FrameCache, VideoError, VideoReader, probe
from tests.conftest import shared


def sequential_frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.mark.parametrize("name", ["crab_test.mp4", "coral_trimmed.mp4"])
def test_frame_n_by_seek_equals_frame_n_by_sequential_decode(name):
    """crab_test (MPEG-4 Part 2, 1080p) is where OpenCV's own seek lands one frame late."""
    path = shared("videos", name)
    expected = sequential_frames(path)
    order = list(range(len(expected)))
    random.Random(0).shuffle(order)
    with VideoReader(path, cache_mb=0) as reader:
        assert reader.frame_count == len(expected)
        for index in order[:60] + [len(expected) - 1, 0, 101, 100]:
            assert np.array_equal(reader.read(index), expected[index]), f"frame {index}"


def test_opencv_seek_alone_is_not_exact_on_the_mpeg4_clip():
    """Why the reader checks its seeks: this documents the real defect it works around."""
    path = shared("videos", "crab_test.mp4")
    expected = sequential_frames(path)
    cap = cv2.VideoCapture(str(path))
    wrong = 0
    for index in range(90, 160, 5):
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
        wrong += not np.array_equal(frame, expected[index])
    assert wrong > 0


def test_forward_stepping_and_frames_iterator():
    path = shared("videos", "coral_trimmed.mp4")
    expected = sequential_frames(path)
    with VideoReader(path, cache_mb=0) as reader:
        for index in range(10, 40):
            assert np.array_equal(reader.read(index), expected[index])
        got = list(reader.frames(50, 70, step=3))
        assert [i for i, _ in got] == list(range(50, 70, 3))
        assert all(np.array_equal(f, expected[i]) for i, f in got)


def test_probe_reports_the_clips():
    info = probe(shared("videos", "crab_test.mp4"))
    assert (info["width"], info["height"], info["frame_count"]) == (1920, 1080, 231)
    assert info["codec"] == "FMP4" and 15 < info["fps"] < 15.1
    info = probe(shared("videos", "coral_trimmed.mp4"))
    assert (info["width"], info["height"], info["codec"]) == (640, 360, "h264")


def test_cache_is_bounded_in_megabytes():
    frame = np.zeros((100, 100, 3), np.uint8)  # 30,000 bytes
    cache = FrameCache(max_mb=0.1)              # 104,857 bytes: three frames fit
    for i in range(5):
        cache.put(i, frame.copy())
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes
    assert cache.get(0) is None and cache.get(4) is not None
    cache.get(2)                                # most recently used now
    cache.put(5, frame.copy())
    assert cache.get(2) is not None and cache.get(3) is None


def test_reader_serves_repeated_reads_from_the_cache():
    path = shared("videos", "coral_trimmed.mp4")
    with VideoReader(path, cache_mb=64) as reader:
        first = reader.read(30)
        assert reader.read(30) is first


def test_out_of_range_frame(tmp_path):
    with VideoReader(shared("videos", "coral_trimmed.mp4")) as reader:
        with pytest.raises(IndexError, match="outside 0..119"):
            reader.read(120)


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        probe(tmp_path / "empty.mp4")
    (tmp_path / "garbage.mp4").write_bytes(bytes(random.Random(1).randbytes(50_000)))
    with pytest.raises(VideoError, match="garbage.mp4"):
        VideoReader(tmp_path / "garbage.mp4")


def _write_noise_video(path, fourcc):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(100):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    return bytearray(path.read_bytes())


@pytest.mark.parametrize("fourcc, suffix, damage", [
    ("MJPG", ".avi", "cut"),     # the header still promises 100 frames; the data holds about half
    ("MJPG", ".avi", "zeroed"),  # frame data overwritten, index intact
    ("mp4v", ".mp4", "zeroed"),
])
def test_damaged_video_gives_a_clear_error_naming_the_file(tmp_path, fourcc, suffix, damage):
    data = _write_noise_video(tmp_path / f"full{suffix}", fourcc)
    n = len(data)
    if damage == "cut":
        data = data[: n // 2]
    else:
        data[n // 2: int(n * 0.85)] = bytes(int(n * 0.85) - n // 2)
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(bytes(data))
    with VideoReader(bad, cache_mb=0) as reader:
        assert reader.claimed_frame_count == 100
        with pytest.raises(VideoError, match=r"bad\..*claims 100 frames \(truncated or corrupt\)"):
            for index in range(100):
                reader.read(index)


def test_mp4_cut_short_cannot_be_opened(tmp_path):
    """An MP4 writer puts its index at the end: cut short, the file has none."""
    data = _write_noise_video(tmp_path / "full.mp4", "mp4v")
    (tmp_path / "cut.mp4").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(VideoError, match="cut.mp4: OpenCV cannot open it"):
        VideoReader(tmp_path / "cut.mp4")


def test_a_corrupt_image_is_named_even_once_ultralytics_has_patched_pil(tmp_path, ultralytics_offline):
    """Training or detecting imports ultralytics, which makes PIL raise ModuleNotFoundError ('pi_heif')
    for a file it cannot identify; importers must still say which image is bad."""
    import ultralytics.utils.patches  # noqa: F401  (patches PIL.Image.open on import)

    from bpr.data.formats import LabelFormatError, import_yolo
    from bpr.data.media import image_size
    from bpr.data.store import Project
    from tests.bpr.test_formats_yolo import make_dataset

    data = make_dataset(tmp_path / "data", "0 0.5 0.5 0.5 0.5\n")
    image = tmp_path / "data" / "train" / "images" / "a.jpg"
    assert image_size(image) == (200, 100)
    image.write_bytes(b"not a jpeg")
    with pytest.raises(VideoError, match=r"a\.jpg: not a readable image"):
        image_size(image)
    with Project.create(tmp_path / "p") as project, \
            pytest.raises(LabelFormatError, match=r"a\.jpg: not a readable image"):
        import_yolo(project, data)


def test_a_missing_image_is_missing_even_where_pil_is_patched_to_say_otherwise(tmp_path, monkeypatch):
    """ultralytics 8.4.144's patched PIL.Image.open raises ModuleNotFoundError ('pi_heif') for a file
    that does not exist, as for one it cannot identify; a missing image must still read as missing (the
    VIAME importer then says which folder it looked in)."""
    from PIL import Image

    from bpr.data.media import image_size

    def patched_open(path, *args, **kwargs):
        raise ModuleNotFoundError("No module named 'pi_heif'")
    monkeypatch.setattr(Image, "open", patched_open)
    with pytest.raises(FileNotFoundError, match="img99.jpg"):
        image_size(tmp_path / "img99.jpg")
