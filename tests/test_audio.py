"""μ-law against G.711 reference values, streaming resamplers, the call pipelines, pacing."""

from __future__ import annotations

import random

import numpy as np
import pytest
from numpy.typing import NDArray

from tars_actors.audio import _libsoxr as libsoxr
from tars_actors.audio import resample
from tars_actors.audio.g711 import ULAW_SILENCE, pcm16_to_ulaw, ulaw_to_pcm16
from tars_actors.audio.pacing import PlayoutMark, PlayoutPacer
from tars_actors.audio.pipeline import FRAME_BYTES, CallerToModel, ModelToCaller
from tars_actors.audio.resample import StreamResampler

# --- helpers -------------------------------------------------------------------------


def pcm(samples: NDArray[np.floating] | NDArray[np.integer] | list[int]) -> bytes:
    return np.asarray(np.rint(samples), dtype="<i2").tobytes()


def samples_of(data: bytes) -> NDArray[np.int16]:
    return np.frombuffer(data, dtype="<i2")


def tone(freq: float, rate: int, seconds: float, amplitude: float = 12000.0) -> NDArray[np.float64]:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def max_step(samples: NDArray[np.int16]) -> int:
    return int(np.abs(np.diff(samples.astype(np.int32))).max())


# --- G.711 μ-law ---------------------------------------------------------------------

# From the G.711 μ-law table (16-bit scaled, as in the reference ulaw2linear).
G711_DECODE = {
    0x00: -32124,
    0x01: -31100,
    0x0F: -16764,
    0x10: -15996,
    0x6F: -132,
    0x70: -120,
    0x7E: -8,
    0x7F: 0,
    0x80: 32124,
    0x8F: 16764,
    0x90: 15996,
    0xEF: 132,
    0xF0: 120,
    0xFE: 8,
    0xFF: 0,
}

# G.711's μ-law decision levels (14-bit: 1, 31, 95, 223, 479, 991, 2015, 4063, 8159) scaled
# by 4 to 16-bit samples: the last value of each interval and the first of the next.
G711_ENCODE = {
    0: 0xFF,
    3: 0xFF,
    4: 0xFE,
    11: 0xFE,
    12: 0xFD,
    123: 0xF0,
    124: 0xEF,
    379: 0xE0,
    380: 0xDF,
    891: 0xD0,
    892: 0xCF,
    1915: 0xC0,
    1916: 0xBF,
    3963: 0xB0,
    3964: 0xAF,
    8059: 0xA0,
    8060: 0x9F,
    16251: 0x90,
    16252: 0x8F,
    32635: 0x80,
    32767: 0x80,
    -1: 0x7F,
    -4: 0x7E,
    -124: 0x6F,
    -16252: 0x0F,
    -32768: 0x00,
}


def test_ulaw_decodes_to_g711_reference_values() -> None:
    codes = bytes(G711_DECODE)
    assert list(samples_of(ulaw_to_pcm16(codes))) == list(G711_DECODE.values())


def test_ulaw_encodes_g711_decision_boundaries() -> None:
    encoded = pcm16_to_ulaw(pcm(list(G711_ENCODE)))
    assert {s: encoded[i] for i, s in enumerate(G711_ENCODE)} == G711_ENCODE


def test_ulaw_decode_table_is_the_g711_segment_law() -> None:
    # Each segment doubles the step: 8, 16, ..., 1024, and segments are 16 steps wide.
    positive = samples_of(ulaw_to_pcm16(bytes(range(0xFF, 0x7F, -1)))).astype(np.int32)
    steps = np.diff(positive)
    assert positive[0] == 0
    for segment in range(8):
        within = steps[segment * 16 : segment * 16 + 15]
        assert set(within.tolist()) == {8 << segment}


def test_every_code_survives_decode_then_encode() -> None:
    codes = bytes(range(256))
    again = pcm16_to_ulaw(ulaw_to_pcm16(codes))
    # Negative zero (0x7F) decodes to 0, which encodes as positive zero.
    assert again == codes.replace(b"\x7f", b"\xff")


def test_encoding_is_symmetric_and_monotonic() -> None:
    values = np.arange(-32767, 32768, dtype=np.int32)
    decoded = samples_of(ulaw_to_pcm16(pcm16_to_ulaw(pcm(values)))).astype(np.int32)
    assert np.all(np.diff(decoded) >= 0)
    assert np.array_equal(decoded, -decoded[::-1])


def test_quantisation_error_is_within_half_a_step() -> None:
    values = np.arange(-32635, 32636, dtype=np.int32)
    decoded = samples_of(ulaw_to_pcm16(pcm16_to_ulaw(pcm(values)))).astype(np.int32)
    # G.711 reconstructs mid-interval; the step is 8 in the first segment and doubles in
    # each of the next seven, which start at 124, 380, 892, 1916, 3964, 8060 and 16252.
    step = 8 * 2 ** np.searchsorted(
        [124, 380, 892, 1916, 3964, 8060, 16252], np.abs(values), "right"
    )
    assert np.all(np.abs(decoded - values) <= step / 2)


def test_codecs_accept_any_length() -> None:
    assert ulaw_to_pcm16(b"") == b""
    assert pcm16_to_ulaw(b"") == b""
    assert len(ulaw_to_pcm16(b"\xff" * 161)) == 322
    assert pcm16_to_ulaw(pcm([0, 32124, -32124]) + b"\x01") == b"\xff\x80\x00"


# --- StreamResampler -----------------------------------------------------------------


def run_chunked(resampler: StreamResampler, data: bytes, size: int) -> bytes:
    return b"".join(resampler.process(c) for c in chunks(data, size)) + resampler.flush()


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (24000, 8000)])
def test_chunked_resampling_matches_one_piece(in_rate: int, out_rate: int) -> None:
    data = pcm(tone(440.0, in_rate, 1.0))
    chunk = in_rate // 50 * 2
    whole = samples_of(run_chunked(StreamResampler(in_rate, out_rate), data, len(data)))
    chunked = samples_of(run_chunked(StreamResampler(in_rate, out_rate), data, chunk))
    assert len(whole) == len(chunked) == out_rate
    assert np.abs(whole.astype(np.int32) - chunked).max() <= 1


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (24000, 8000)])
def test_resampled_tone_is_the_tone_at_the_new_rate(in_rate: int, out_rate: int) -> None:
    data = pcm(tone(1000.0, in_rate, 0.5))
    out = samples_of(run_chunked(StreamResampler(in_rate, out_rate), data, in_rate // 50 * 2))
    ideal = tone(1000.0, out_rate, 0.5)
    # Away from the edges, where the filter sees silence beyond the signal.
    middle = slice(out_rate // 50, -out_rate // 50)
    assert np.abs(out[middle] - ideal[middle]).max() < 0.01 * 12000


def test_streaming_has_no_clicks_where_stateless_chunks_do() -> None:
    in_rate, out_rate = 8000, 16000
    data = pcm(tone(440.0, in_rate, 1.0))
    chunk = 320  # 20 ms
    streamed = samples_of(run_chunked(StreamResampler(in_rate, out_rate), data, chunk))
    stateless = samples_of(
        b"".join(
            run_chunked(StreamResampler(in_rate, out_rate), c, len(c)) for c in chunks(data, chunk)
        )
    )
    # A 440 Hz sine of amplitude 12000 moves at most 12000·2π·440/16000 ≈ 2073 per sample.
    smooth_limit = 12000 * 2 * np.pi * 440 / out_rate * 1.05
    steady = slice(out_rate // 50, -out_rate // 50)
    assert max_step(streamed[steady]) <= smooth_limit
    assert max_step(stateless[steady]) > 2 * smooth_limit


def test_resampler_accepts_odd_byte_chunks() -> None:
    data = pcm(tone(440.0, 24000, 0.2))
    reference = run_chunked(StreamResampler(24000, 8000), data, 960)
    rng = random.Random(7)
    resampler = StreamResampler(24000, 8000)
    out, i = [], 0
    while i < len(data):
        size = rng.randrange(1, 700)
        out.append(resampler.process(data[i : i + size]))
        i += size
    out.append(resampler.flush())
    assert b"".join(out) == reference


def test_resampler_after_flush_starts_a_fresh_segment() -> None:
    data = pcm(tone(300.0, 8000, 0.1))
    resampler = StreamResampler(8000, 16000)
    first = run_chunked(resampler, data, 320)
    second = run_chunked(resampler, data, 320)
    assert first == second


def test_resampler_output_is_reproducible() -> None:
    # libsoxr dithers int16 output with a clock-seeded generator; ours must not vary.
    data = pcm(tone(440.0, 8000, 0.3, amplitude=3000.0))
    outputs = {run_chunked(StreamResampler(8000, 16000), data, 320) for _ in range(3)}
    assert len(outputs) == 1


def test_resampler_latency_is_small() -> None:
    # Count how much output a stream has emitted after each 20 ms input chunk: it must
    # trail the input by little, not burst every 100 ms as libsoxr's default blocks do.
    for in_rate, out_rate, max_lag in [(8000, 16000, 0.015), (24000, 8000, 0.010)]:
        resampler = StreamResampler(in_rate, out_rate)
        chunk = pcm(np.full(in_rate // 50, 1000.0))
        emitted = 0
        worst = 0.0
        for n in range(1, 51):
            emitted += len(resampler.process(chunk)) // 2
            worst = max(worst, n * 0.02 - emitted / out_rate)
        assert worst <= max_lag, (in_rate, out_rate, worst)


# --- libsoxr called directly against python-soxr ----------------------------------------


def test_libsoxr_is_called_directly_here() -> None:
    # What CI runs must be the path calls take; the comparisons below need both.
    assert libsoxr.available()
    assert StreamResampler(8000, 16000).direct
    assert not StreamResampler(8000, 16000, direct=False).direct


def loud_noise(rate: int, seconds: float, seed: int) -> bytes:
    # Well past full scale half the time: the resamplers' rounding and clipping both work.
    rng = np.random.default_rng(seed)
    return pcm(np.clip(rng.normal(0.0, 24000.0, round(rate * seconds)), -32768, 32767))


def run_pieces(resampler: StreamResampler, data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, n = [], 0, 0
    while i < len(data):
        size = sizes[n % len(sizes)]
        out.append(resampler.process(data[i : i + size]))
        i, n = i + size, n + 1
    out.append(resampler.flush())
    return out


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (24000, 8000)])
@pytest.mark.parametrize("sizes", [[320], [960], [1, 7, 333, 2048, 959], [96000]])
def test_direct_libsoxr_gives_python_soxrs_samples(
    in_rate: int, out_rate: int, sizes: list[int]
) -> None:
    data = loud_noise(in_rate, 1.0, seed=in_rate) + pcm(tone(440.0, in_rate, 0.5))
    direct, fallback = (
        StreamResampler(in_rate, out_rate),
        StreamResampler(in_rate, out_rate, direct=False),
    )
    # Piece by piece, not only in total: what each call returns is what gets sent.
    assert run_pieces(direct, data, sizes) == run_pieces(fallback, data, sizes)
    # Flushed streams start afresh, and a reset mid-stream forgets alike.
    assert run_pieces(direct, data[:5000], sizes) == run_pieces(fallback, data[:5000], sizes)
    direct.process(data[:3001])
    fallback.process(data[:3001])
    direct.reset()
    fallback.reset()
    assert run_pieces(direct, data, sizes) == run_pieces(fallback, data, sizes)


def test_direct_libsoxr_returns_a_long_chunk_whole_at_once() -> None:
    # 30 s of model audio in one message: far more output than the stream's buffer holds.
    data = pcm(tone(440.0, 24000, 30.0))
    whole = StreamResampler(24000, 8000)
    at_once = whole.process(data)
    framed = StreamResampler(24000, 8000)
    by_frames = b"".join(framed.process(c) for c in chunks(data, 960))
    assert at_once == by_frames
    assert len(at_once) // 2 >= 30 * 8000 - 80  # all but the resampler's last 10 ms
    assert whole.flush() == framed.flush()


def test_pipelines_fall_back_to_python_soxr_without_direct_libsoxr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ulaw = pcm16_to_ulaw(loud_noise(8000, 0.3, seed=5))
    model = loud_noise(24000, 0.3, seed=6)
    to_model, to_caller = CallerToModel(), ModelToCaller()
    assert to_model._resampler.direct
    expected = (
        [to_model.process(c) for c in chunks(ulaw, FRAME_BYTES)],
        [to_caller.process(c) for c in chunks(model, 960)],
    )
    monkeypatch.setattr(libsoxr, "_LIB", None)
    assert not libsoxr.available()
    with pytest.raises(RuntimeError, match="not reachable"):
        libsoxr.Int16Stream(8000, 16000, "LQ")
    to_model, to_caller = CallerToModel(), ModelToCaller()
    assert not to_model._resampler.direct
    assert (
        [to_model.process(c) for c in chunks(ulaw, FRAME_BYTES)],
        [to_caller.process(c) for c in chunks(model, 960)],
    ) == expected


def test_direct_libsoxr_takes_python_soxrs_quality_names() -> None:
    with pytest.raises(ValueError, match="quality must be one of"):
        libsoxr.Int16Stream(8000, 16000, "best")
    # Any case, and the recipe python-soxr picks for the name: the same samples. (VHQ
    # resamples in double precision, which python-soxr's float32 output rounds off.)
    data = loud_noise(24000, 0.5, seed=9)
    for quality in ("hq", "MQ", "qq"):
        direct = StreamResampler(24000, 8000, quality=quality)
        fallback = StreamResampler(24000, 8000, quality=quality, direct=False)
        assert direct.direct
        assert run_pieces(direct, data, [960]) == run_pieces(fallback, data, [960])
    low, high = StreamResampler(24000, 8000), StreamResampler(24000, 8000, quality="HQ")
    assert run_pieces(low, data, [960]) != run_pieces(high, data, [960])


# --- Pipelines -----------------------------------------------------------------------


def test_caller_to_model_turns_ulaw_8k_into_pcm_16k() -> None:
    ulaw = pcm16_to_ulaw(pcm(tone(500.0, 8000, 0.4)))
    pipeline = CallerToModel()
    out = b"".join(pipeline.process(frame) for frame in chunks(ulaw, FRAME_BYTES))
    out += pipeline.flush()
    samples = samples_of(out)
    assert len(samples) == 2 * len(ulaw)
    ideal = tone(500.0, 16000, 0.4)
    middle = slice(320, -320)
    # μ-law quantisation near the peak is about 1/64 of full scale.
    assert np.abs(samples[middle] - ideal[middle]).max() < 500


def test_model_to_caller_emits_everything_at_once_in_payloads_under_two_frames() -> None:
    data = pcm(tone(700.0, 24000, 0.5))
    rng = random.Random(11)
    pipeline = ModelToCaller()
    frames: list[bytes] = []
    i = 0
    while i < len(data):
        size = rng.choice([1, 3, 479, 481, 960, 4001])
        frames += pipeline.process(data[i : i + size])
        i += size
    frames += pipeline.flush()
    assert all(0 < len(frame) < 2 * FRAME_BYTES for frame in frames)
    audio = b"".join(frames)
    assert len(audio) == 4000  # 0.5 s at 8 kHz
    decoded = samples_of(ulaw_to_pcm16(audio))
    ideal = tone(700.0, 8000, 0.5)
    assert np.abs(decoded[160:-160] - ideal[160:-160]).max() < 500


def test_model_to_caller_holds_back_only_the_resamplers_delay() -> None:
    pipeline = ModelToCaller()
    out = b"".join(pipeline.process(pcm(tone(440.0, 24000, 0.05))))  # 50 ms in
    # 400 bytes at 8 kHz went in; all but the resampler's few milliseconds come out now,
    # not only the two whole 20 ms frames.
    assert 400 - 8 * 10 <= len(out) <= 400
    assert len(out) > 2 * FRAME_BYTES


def test_model_to_caller_flush_emits_the_tail_without_padding() -> None:
    pipeline = ModelToCaller()
    frames = pipeline.process(pcm(tone(440.0, 24000, 0.03)))
    frames += pipeline.flush()
    assert sum(len(f) for f in frames) == 240  # 30 ms, no silence added
    assert pipeline.flush() == []


def test_model_to_caller_reset_drops_resampler_state() -> None:
    data = pcm(tone(440.0, 24000, 0.1))
    fresh = ModelToCaller()
    expected = fresh.process(data) + fresh.flush()

    pipeline = ModelToCaller()
    pipeline.process(pcm(tone(1900.0, 24000, 0.037)) + b"\x01")  # an odd byte left over
    pipeline.reset()
    assert pipeline.process(data) + pipeline.flush() == expected


# --- PlayoutPacer --------------------------------------------------------------------

FRAME = bytes([ULAW_SILENCE]) * FRAME_BYTES


def test_pacer_sends_only_the_lead_ahead_of_playout() -> None:
    pacer = PlayoutPacer(lead=0.1)
    pacer.enqueue([FRAME] * 20)
    assert pacer.due(0.0) == [FRAME] * 5
    assert pacer.due(0.0) == []
    assert pacer.in_flight_seconds(0.0) == pytest.approx(0.1)
    assert pacer.queued_seconds == pytest.approx(0.3)
    assert pacer.next_due(0.0) == pytest.approx(0.02)
    assert pacer.due(0.019) == []
    assert pacer.due(0.02) == [FRAME]
    assert pacer.due(0.065) == [FRAME, FRAME]


def test_pacer_driven_by_next_due_stays_in_step_with_playback() -> None:
    pacer = PlayoutPacer(lead=0.1)
    pacer.enqueue([bytes([n]) * FRAME_BYTES for n in range(100)])
    now, sent_at = 0.0, []
    while (wake := pacer.next_due(now)) is not None:
        now = wake
        for item in pacer.due(now):
            assert isinstance(item, bytes)
            sent_at.append(now)
    assert len(sent_at) == 100
    for n, t in enumerate(sent_at):
        playout_start = n * 0.02
        assert t >= playout_start - 0.1 - 1e-9  # never more than the lead ahead
        assert t <= playout_start + 1e-9  # never late: no gap in playback
    assert now == pytest.approx(99 * 0.02 - 0.1 + 0.02)


def test_pacer_emits_marks_in_order_after_their_audio() -> None:
    pacer = PlayoutPacer(lead=0.1)
    pacer.enqueue([b"a" * FRAME_BYTES, b"b" * FRAME_BYTES])
    pacer.mark("turn-1")
    pacer.enqueue([b"c" * FRAME_BYTES] * 5)
    pacer.mark("turn-2")
    first = pacer.due(0.0)
    assert first[:3] == [b"a" * FRAME_BYTES, b"b" * FRAME_BYTES, PlayoutMark(name="turn-1")]
    assert len(first) == 6
    rest = pacer.due(1.0)
    assert rest == [b"c" * FRAME_BYTES] * 2 + [PlayoutMark(name="turn-2")]
    assert pacer.next_due(1.0) is None


def test_pacer_sends_a_lone_mark_at_once() -> None:
    pacer = PlayoutPacer()
    pacer.mark("end")
    assert pacer.next_due(3.0) == 3.0
    assert pacer.due(3.0) == [PlayoutMark(name="end")]


def test_pacer_clear_drops_queue_returns_unsent_marks_and_resets_clock() -> None:
    pacer = PlayoutPacer(lead=0.1)
    pacer.enqueue([FRAME] * 10)
    pacer.mark("turn-1")
    pacer.enqueue([FRAME] * 10)
    pacer.mark("turn-2")
    assert len(pacer.due(0.0)) == 5
    assert pacer.clear() == [PlayoutMark(name="turn-1"), PlayoutMark(name="turn-2")]
    assert pacer.queued_seconds == 0
    assert pacer.in_flight_seconds(0.01) == 0
    assert pacer.next_due(0.01) is None
    # Twilio's buffer is empty after clear, so the next turn may fill the lead at once.
    pacer.enqueue([FRAME] * 10)
    assert len(pacer.due(0.01)) == 5


def test_pacer_starts_a_new_timeline_after_an_underrun() -> None:
    pacer = PlayoutPacer(lead=0.1)
    pacer.enqueue([FRAME] * 2)
    assert len(pacer.due(0.0)) == 2
    assert pacer.in_flight_seconds(0.03) == pytest.approx(0.01)
    assert pacer.in_flight_seconds(0.5) == 0
    pacer.enqueue([FRAME] * 8)
    assert len(pacer.due(0.5)) == 5
    assert pacer.next_due(0.5) == pytest.approx(0.52)


def test_pacer_sends_a_frame_longer_than_the_lead_when_idle() -> None:
    pacer = PlayoutPacer(lead=0.1)
    long_frame = FRAME * 10  # 200 ms
    pacer.enqueue([long_frame, FRAME])
    assert pacer.due(0.0) == [long_frame]
    assert pacer.next_due(0.0) == pytest.approx(0.12)


def test_pacer_rejects_a_non_positive_lead() -> None:
    with pytest.raises(ValueError, match="lead"):
        PlayoutPacer(lead=0)


def test_pacer_never_holds_back_real_time_speech_that_arrives_with_jitter() -> None:
    # Model audio produced in real time, but every second the process stalls for 60 ms and
    # the frames produced meanwhile arrive together. Each stall empties the estimated
    # buffer; restarting the timeline at every such gap ratchets the estimate up until
    # every frame waits out the whole lead (measured at 80 ms per frame under load).
    pacer = PlayoutPacer(lead=0.1)
    held_ms = 0.0
    for n in range(3000):
        scheduled = n * 0.02
        stall_start = int(scheduled) + 0.5
        arrival = stall_start + 0.06 if stall_start <= scheduled < stall_start + 0.06 else scheduled
        pacer.enqueue([FRAME])
        now = arrival
        while pacer.due(now) != [FRAME]:
            wake = pacer.next_due(now)
            assert wake is not None
            held_ms += (wake - now) * 1000
            now = wake
    assert held_ms / 3000 < 1.0  # on average, under a millisecond held per frame


def test_pacer_restarts_the_timeline_after_a_real_pause() -> None:
    pacer = PlayoutPacer(lead=0.1)
    pacer.enqueue([FRAME] * 5)
    pacer.due(0.0)  # 100 ms in flight until 0.1
    pacer.enqueue([FRAME] * 10)
    assert len(pacer.due(1.0)) == 5  # after a pause: a fresh 100 ms from now
    assert pacer.in_flight_seconds(1.0) == pytest.approx(0.1)


def test_pacer_refills_in_steps_so_it_wakes_less_often() -> None:
    pacer = PlayoutPacer(lead=0.1, refill=0.04)
    pacer.enqueue([FRAME] * 50)
    assert len(pacer.due(0.0)) == 5  # the first 100 ms
    wake = pacer.next_due(0.0)
    assert wake == pytest.approx(0.06)  # not 0.02: wait until 40 ms of room opened
    assert len(pacer.due(0.06)) == 3  # then fill it: three frames at once
    wakes = 0
    now = 0.06
    while (nxt := pacer.next_due(now)) is not None:
        now = nxt
        pacer.due(now)
        wakes += 1
    assert wakes <= 16  # 42 frames left: about one wake per 40 ms, not per 20 ms frame
    assert pacer.in_flight_seconds(now) <= 0.1 + 1e-9


def test_pacer_refill_must_be_below_the_lead() -> None:
    with pytest.raises(ValueError, match="refill"):
        PlayoutPacer(lead=0.1, refill=0.1)


def test_rounding_clips_alike_through_numpys_ufunc_and_through_np_clip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The private ufunc is taken where numpy keeps it; where it does not, np.clip is.
    assert isinstance(resample._clip_ufunc(), np.ufunc)

    def missing(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr(resample.importlib, "import_module", missing)
    public = resample._clip_ufunc()
    assert public is np.clip
    samples = np.array([-40000.5, -32768.4, -0.5, 0.5, 1.5, 32767.4, 99999.0], dtype=np.float32)
    by_ufunc, by_clip = samples.copy(), samples.copy()
    resample._clip(by_ufunc, resample._INT16_MIN, resample._INT16_MAX, out=by_ufunc)
    public(by_clip, resample._INT16_MIN, resample._INT16_MAX, out=by_clip)
    assert (
        by_ufunc.tolist()
        == by_clip.tolist()
        == [-32768.0, -32768.0, -0.5, 0.5, 1.5, 32767.0, 32767.0]
    )
