"""Local stand-ins for the outside world, spoken to through the real clients and protocols.

``softphone`` plays Twilio's side of a call, ``twilio_api`` answers the Twilio REST API,
``gemini`` plays the Gemini Live model and text API over TLS made by ``tls``; each is a package
whose ``__init__`` names what callers use. Used by the tests, ``python run.py demo`` and the load
tool. Import the packages directly: each pulls in only the clients it needs.
"""
