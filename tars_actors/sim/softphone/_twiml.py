"""TwiML as Twilio reads it: the verbs of a ``<Response>`` and its ``<Connect><Stream>``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

__all__ = ["StreamInstruction", "Twiml", "TwimlError", "parse_twiml"]


class TwimlError(ValueError):
    """TwiML that Twilio would refuse (bad XML, a stream URL that is not wss://...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInstruction:
    """``<Connect><Stream url>`` and its ``<Parameter>``s, in document order."""

    url: str
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def custom_parameters(self) -> dict[str, str]:
        return dict(self.parameters)


@dataclass(frozen=True, slots=True, kw_only=True)
class Twiml:
    """What a TwiML document asks Twilio to do."""

    xml: str
    verbs: tuple[str, ...]
    says: tuple[str, ...]
    hangup: bool
    stream: StreamInstruction | None


def parse_twiml(xml: str) -> Twiml:
    """Parse a ``<Response>``; raise :class:`TwimlError` when Twilio would refuse it."""
    try:
        # The document comes from the server under test on 127.0.0.1, not from strangers.
        root = ET.fromstring(xml)  # noqa: S314
    except ET.ParseError as error:
        raise TwimlError(f"TwiML is not well-formed XML: {error}") from error
    if root.tag != "Response":
        raise TwimlError(f"TwiML root must be <Response>, not <{root.tag}>")
    verbs: list[str] = []
    says: list[str] = []
    stream: StreamInstruction | None = None
    for verb in root:
        verbs.append(verb.tag)
        if verb.tag == "Say":
            says.append((verb.text or "").strip())
        elif verb.tag == "Connect":
            for noun in verb:
                if noun.tag != "Stream":
                    continue
                if stream is not None:
                    raise TwimlError("only one bidirectional <Stream> per call")
                url = noun.get("url")
                if not url:
                    raise TwimlError("<Stream> needs a url")
                parameters = tuple(
                    (parameter.get("name", ""), parameter.get("value", ""))
                    for parameter in noun
                    if parameter.tag == "Parameter"
                )
                stream = StreamInstruction(url=url, parameters=parameters)
    return Twiml(
        xml=xml,
        verbs=tuple(verbs),
        says=tuple(says),
        hangup="Hangup" in verbs,
        stream=stream,
    )
