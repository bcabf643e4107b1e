"""One call's behaviour, pure: who gets a place (admission), who is calling and at what
level, the persona, the call flow (events in, effects out), notes for the model, playback
turns and the audio relay."""
