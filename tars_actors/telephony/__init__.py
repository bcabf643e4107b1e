"""Twilio: the Media Streams codec, TwiML, the media socket, the webhook server and the REST
client."""
