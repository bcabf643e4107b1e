"""What the Live stand-in says on its own: model turns, a test tone, per-connection behaviour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tars_actors.sim.gemini._messages import MODEL_AUDIO_RATE

__all__ = ["DEFAULT_REPLY", "LiveBehaviour", "ScriptedReply", "tone"]


def tone(frequency: float = 440.0, seconds: float = 0.5, *, rate: int = MODEL_AUDIO_RATE) -> bytes:
    """PCM16 LE mono samples of a sine tone: recognisable, deterministic model speech."""
    samples = np.arange(round(seconds * rate), dtype=np.float64)
    wave = 8000.0 * np.sin(2.0 * np.pi * frequency * samples / rate)
    return wave.astype("<i2").tobytes()


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedReply:
    """A model turn: PCM16 24 kHz audio, its output transcription, then ``turnComplete``."""

    transcript: str
    audio: bytes
    chunk_bytes: int = 4800  # 100 ms; the real model also sends faster than real time


DEFAULT_REPLY = ScriptedReply(transcript="Hello from the stand-in model.", audio=tone(440.0, 0.5))


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveBehaviour:
    """What a connection does on its own, without a test scripting it.

    ``echo``: every received audio chunk comes back as 24 kHz model audio; every
    ``echo_turn_frames`` chunks make one turn (``outputTranscription`` with ``echo_transcript``
    at its start, ``turnComplete`` at its end). ``turn_reply``: answered to each
    ``client_content`` with ``turnComplete`` (a greeting instruction); ``None`` stays silent.
    ``resumption_updates``: after each ``turnComplete`` a ``sessionResumptionUpdate`` with a new
    handle, when the client's setup asked for session resumption. ``reject_unknown_handles``:
    a setup resuming from a handle this server never issued is closed with 1008.
    ``record_audio=False`` only counts received audio (long load runs).
    ``setup_delay``: seconds before the setup is answered with ``setupComplete`` (a real
    connection's set-up takes some hundreds of milliseconds); ``reply_delay``: seconds from
    a client turn to its ``turn_reply`` (the real model's time to its first audio).
    """

    echo: bool = False
    echo_turn_frames: int = 50
    echo_transcript: str = "(echo)"
    turn_reply: ScriptedReply | None = DEFAULT_REPLY
    resumption_updates: bool = True
    reject_unknown_handles: bool = False
    record_audio: bool = True
    setup_delay: float = 0.0
    reply_delay: float = 0.0
