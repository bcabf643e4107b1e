"""The daemon: builds the actor tree (the only code that imports ``actors``), serves until a
signal, reloads and shuts down."""
