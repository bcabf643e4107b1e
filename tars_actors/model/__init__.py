"""The Gemini Live model: its wire format, its client, and one connection's logic."""
