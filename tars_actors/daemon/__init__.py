"""The daemon: builds the actor tree, serves until a signal, reloads and shuts down."""
