"""The child-process rig, kept importable from here for the tests that use it."""

from tars_actors.sim.rig import OWNER, WAIT, Rig, notes_saying, speaking

__all__ = ["OWNER", "WAIT", "Rig", "notes_saying", "speaking"]
