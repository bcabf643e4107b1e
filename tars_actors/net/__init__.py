"""The asyncio loop thread that carries every call's audio, and private fast paths under
websockets and asyncio's TLS layer."""
