"""Fast paths decided once: the environment switch, each path's start-up self-test, and a
whole call carried end to end whichever side each path takes."""

from __future__ import annotations

import asyncio
import io
import json
import types as pytypes
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pykka
import pytest
import soxr
import websockets.asyncio.client
import websockets.asyncio.server
from google import genai

from tars_actors.audio import _libsoxr as libsoxr
from tars_actors.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from tars_actors.audio.resample import StreamResampler
from tars_actors.daemon.fast_paths import decide_all
from tars_actors.model import _genai_bypass as genai_bypass
from tars_actors.net import _json_frames as json_frames
from tars_actors.net import _ws_delivery as ws_delivery
from tars_actors.net import _ws_delivery_check as ws_delivery_check
from tars_actors.net.fast_paths import (
    ENVIRONMENT_SWITCH,
    FastPath,
    FastPathSwitch,
    switched_off,
)
from tars_actors.runtime import _malloc_trim as malloc_trim
from tars_actors.sim.gemini import ScriptedReply, tone
from tars_actors.sim.world import OWNER_PHONE, LocalWorld
from tests.logs import log_events

WAIT = 15.0
SWITCHES = (
    ws_delivery.SWITCH,
    libsoxr.SWITCH,
    json_frames.SWITCH,
    genai_bypass.SWITCH,
    malloc_trim.SWITCH,
)
NAMES = {switch.name for switch in SWITCHES}


@pytest.fixture
def decided_again() -> Iterator[None]:
    """Every path is decided again after the test (list it before ``monkeypatch``, so that
    this runs once the environment and the libraries are restored)."""
    yield
    for switch in SWITCHES:
        switch.decide()
    assert all(switch.on for switch in SWITCHES)


# --- the switch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "off"),
    [
        ("", set()),
        ("0", set()),
        ("1", NAMES),
        ("all", NAMES),
        ("libsoxr", {"libsoxr"}),
        (" json_frames , GENAI_BYPASS ", {"json_frames", "genai_bypass"}),
    ],
)
def test_the_environment_switch_names_paths_or_all(value: str, off: set[str]) -> None:
    assert {name for name in NAMES if switched_off(name, {ENVIRONMENT_SWITCH: value})} == off


def test_a_switch_decides_once_and_says_why_it_is_off() -> None:
    runs: list[int] = []

    def failing() -> str | None:
        runs.append(1)
        raise KeyError("gone")

    switch = FastPathSwitch("example", failing)
    assert not switch.on  # not decided yet: the twin
    decided = switch.status()
    assert decided == FastPath("example", False, "self-test failed: KeyError: 'gone'")
    assert switch.status() is decided
    assert runs == [1]
    assert switch.force(True) == FastPath("example", True)
    assert switch.on


def test_every_path_is_on_here(decided_again: None) -> None:
    # What CI runs must be the paths calls take; the twins are forced in the tests below.
    assert decide_all() == tuple(FastPath(switch.name, True) for switch in SWITCHES)


# --- each precondition removed: the check picks the twin ---------------------------------


def _without_send_in_progress(patch: pytest.MonkeyPatch) -> None:
    # websockets 14 and 15 have no Connection.send_in_progress. (The live connections
    # keep it, which websockets' own send() needs; the start-up check must not find it.)
    for trial in (
        ws_delivery_check._TrialServerConnection,
        ws_delivery_check._TrialClientConnection,
    ):
        original: Callable[..., None] = trial.__init__

        def init(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            _original(self, *args, **kwargs)
            del self.send_in_progress

        patch.setattr(trial, "__init__", init)


def _without_live_converters(patch: pytest.MonkeyPatch) -> None:
    # An SDK whose _live_converters lost the server-message converters (the SDK's own
    # receive() keeps the module it imported).
    patch.setattr(genai, "_live_converters", pytypes.ModuleType("google.genai._live_converters"))


def _without_libsoxr(patch: pytest.MonkeyPatch) -> None:
    # python-soxr's extension cannot be loaded through ctypes (python-soxr keeps its own).
    patch.setattr(soxr.soxr_ext, "__file__", "/nonexistent/soxr_ext.so")


def _without_scanner(patch: pytest.MonkeyPatch) -> None:
    class WithoutScanner(json.JSONDecoder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            del self.scan_once

    patch.setattr(json, "JSONDecoder", WithoutScanner)


def _without_malloc_trim(patch: pytest.MonkeyPatch) -> None:
    # A C library that is not glibc (musl, macOS): it has malloc, not malloc_trim.
    class OtherLibc:
        pass

    patch.setattr(malloc_trim, "_libc", OtherLibc)


def _switched_off(patch: pytest.MonkeyPatch) -> None:
    patch.setenv(ENVIRONMENT_SWITCH, "1")


REMOVALS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], dict[str, str]]] = {
    "send_in_progress": (
        _without_send_in_progress,
        {"ws_delivery": "Connection has no send_in_progress"},
    ),
    "live_converters": (
        _without_live_converters,
        {"genai_bypass": "_live_converters has no _LiveServerMessage_from_mldev"},
    ),
    "libsoxr": (_without_libsoxr, {"libsoxr": "libsoxr cannot be loaded"}),
    "scan_once": (_without_scanner, {"json_frames": "json.JSONDecoder has no scan_once"}),
    "malloc_trim": (_without_malloc_trim, {"malloc_trim": "has no malloc_trim (not glibc)"}),
    "all, by the environment switch": (
        _switched_off,
        {switch.name: "switched off by TARS_NO_FAST_PATHS" for switch in SWITCHES},
    ),
}


def test_malloc_trim_gives_memory_back_only_when_on(decided_again: None) -> None:
    assert malloc_trim.limit_arenas() is True
    trimmed = malloc_trim.trim()
    assert trimmed is not None
    assert trimmed.milliseconds >= 0
    assert trimmed.rss_before_mb is not None
    assert trimmed.rss_after_mb is not None
    assert trimmed.rss_after_mb <= trimmed.rss_before_mb + 1  # nothing grew meanwhile
    malloc_trim.SWITCH.force(False)
    assert malloc_trim.trim() is None
    assert malloc_trim.limit_arenas() is False


def dominant_frequency(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1.0 / rate)[int(np.argmax(spectrum))])


def carry_a_call(world: LocalWorld) -> None:
    """The model's greeting reaches the caller and the caller's voice the model."""
    phone = world.phone(OWNER_PHONE)
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    model.wait_for_client_content(timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)
    heard = ulaw_to_pcm16(phone.played_audio())
    assert len(heard) >= 2 * 3800
    assert abs(dominant_frequency(heard, 8000) - 440.0) < 15.0
    phone.say(pcm16_to_ulaw(tone(600.0, 1.0, rate=8000)))
    model.wait_for_audio(32_000, timeout=WAIT)
    assert abs(dominant_frequency(model.audio[-24_000:], 16000) - 600.0) < 15.0
    model.reply(ScriptedReply(transcript="Sure.", audio=tone(500.0, 0.2)))
    phone.wait_for_mark("turn-2", timeout=WAIT)
    phone.hang_up()


@pytest.mark.parametrize("removed", list(REMOVALS))
def test_without_a_private_name_the_twin_is_chosen_and_calls_carry_audio(
    removed: str, decided_again: None, logs: io.StringIO
) -> None:
    remove, off = REMOVALS[removed]
    with pytest.MonkeyPatch.context() as patch:
        remove(patch)
        for switch in SWITCHES:
            switch.decide()
        for switch in SWITCHES:
            decided = switch.status()
            if switch.name in off:
                assert not decided.on
                assert decided.reason is not None
                assert off[switch.name] in decided.reason
            else:
                assert decided == FastPath(switch.name, True)
        # A missing name reached on a live call would fail the call here.
        with LocalWorld() as world:
            carry_a_call(world)
        pykka.ActorRegistry.stop_all()
    # Each way's latency is measured on either side of each path.
    (summary,) = log_events(logs, "call.summary")
    assert summary["latency_in_p99_ms"] > 0
    assert summary["latency_out_p99_ms"] > 0
    (started,) = log_events(logs, "daemon.started")
    assert started["fast_paths"] == {switch.name: switch.name not in off for switch in SWITCHES}
    assert set(started["fast_paths_off"]) == set(off)
    assert started["resampler"] == ("python-soxr" if "libsoxr" in off else "libsoxr")


def test_with_every_path_on_a_call_carries_audio_and_the_start_says_so(
    decided_again: None, logs: io.StringIO
) -> None:
    with LocalWorld() as world:
        carry_a_call(world)
    pykka.ActorRegistry.stop_all()
    (started,) = log_events(logs, "daemon.started")
    assert started["fast_paths"] == {switch.name: True for switch in SWITCHES}
    assert started["fast_paths_off"] == {}


# --- both sides give the same results -----------------------------------------------------


def test_libsoxr_off_means_python_soxrs_samples(decided_again: None) -> None:
    data = tone(440.0, 0.5, rate=24000)
    direct = StreamResampler(24000, 8000)
    assert direct.direct
    expected = direct.process(data) + direct.flush()
    libsoxr.SWITCH.force(False)
    twin = StreamResampler(24000, 8000)
    assert not twin.direct
    assert twin.process(data) + twin.flush() == expected


def test_a_libsoxr_that_resamples_differently_is_not_used(
    decided_again: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = libsoxr.Int16Stream.process

    def off_by_one(self: libsoxr.Int16Stream, pcm: bytes) -> Any:
        return process(self, pcm) + 1

    monkeypatch.setattr(libsoxr.Int16Stream, "process", off_by_one)
    decided = libsoxr.SWITCH.decide()
    assert decided == FastPath(
        "libsoxr", False, "libsoxr called directly resamples unlike python-soxr"
    )
    assert not StreamResampler(8000, 16000).direct


# WebSocket delivery: what each side receives, through the fast path and through websockets'
# own send() and recv().
MESSAGES: list[str | bytes] = [
    "{}",
    '{"event":"media","media":{"payload":"' + "A" * 200 + '"}}',
    b"\x00\x01binary",
    "é" * 40_000,  # a 16-bit length
    "x" * 70_000,  # a 64-bit length
    "",
]


async def _exchange() -> tuple[list[Any], list[Any], list[bool]]:
    """Client → server through consume(); each echoed back through writable_now and
    send_text_now where the socket takes it, else send(), as the server does."""
    received: list[Any] = []
    writable: list[bool] = []

    async def handler(connection: Any) -> None:
        backlog: list[bytes] = []

        def handle(message: Any) -> bool:
            received.append(message)
            text = message if isinstance(message, str) else message.hex()
            echo = f"echo:{text}".encode()
            writable.append(ws_delivery.writable_now(connection))
            if writable[-1]:
                ws_delivery.send_text_now(connection, echo)
            else:
                backlog.append(echo)
            return len(received) == len(MESSAGES)

        await ws_delivery.consume(connection, handle)
        for echo in backlog:
            await connection.send(echo.decode())

    async with websockets.asyncio.server.serve(
        handler,
        "127.0.0.1",
        0,
        create_connection=ws_delivery.DirectServerConnection,
        compression=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.asyncio.client.connect(
            f"ws://127.0.0.1:{port}",
            create_connection=ws_delivery.DirectClientConnection,
            compression=None,
            max_size=None,
        ) as client:
            for message in MESSAGES:
                await client.send(message)
            echoes = [await client.recv() for _ in MESSAGES]
    return received, echoes, writable


def test_websocket_delivery_gives_the_same_messages_both_ways_on_both_paths(
    decided_again: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[int] = []
    take_frames = ws_delivery._DirectDelivery._take_frames

    def counting(self: Any, data: bytes) -> int:
        taken.append(len(data))
        return take_frames(self, data)

    monkeypatch.setattr(ws_delivery._DirectDelivery, "_take_frames", counting)
    ws_delivery.SWITCH.force(True)
    fast = asyncio.run(_exchange())
    read_fast = len(taken)
    ws_delivery.SWITCH.force(False)
    public = asyncio.run(_exchange())
    assert fast[:2] == public[:2]
    assert fast[0] == MESSAGES
    # The fast path wrote each echo at once and read from data_received; off it, nothing
    # is written but by send() and nothing is read but by recv().
    assert all(fast[2])
    assert not any(public[2])
    assert read_fast > 0
    assert len(taken) == read_fast


# The Gemini SDK bypass: server messages parsed as the SDK's receive() parses them, and the
# caller's audio as send_realtime_input() sends it (its start-up self-test, run here).
def test_the_sdk_bypass_parses_and_writes_as_the_sdk_does() -> None:
    assert asyncio.run(genai_bypass._trial()) is None


def test_the_sdk_bypass_is_not_used_when_off(decided_again: None) -> None:
    genai_bypass.SWITCH.force(False)
    session: Any = type("Session", (), {"_ws": object()})()
    assert genai_bypass.socket_of(session) is None
