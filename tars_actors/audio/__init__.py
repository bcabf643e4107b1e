"""Call audio without I/O: G.711 μ-law, streaming resamplers and outbound pacing."""
