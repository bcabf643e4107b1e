"""Local stand-ins for the outside world, spoken to through the real clients and protocols.

``softphone`` plays Twilio's side of a call, ``twilio_rest`` answers the Twilio REST API,
``gemini_live`` plays the Gemini Live model and text API over TLS made by ``tls``. Used by the
tests, ``python run.py demo`` and the load tool. Import the modules directly: each pulls in only
the clients it needs.
"""
