"""Twilio: the Media Streams codec, TwiML, the one-time stream tokens that prove which call
a stream is, the media socket, the webhook server and the REST client."""
