"""The actor runtime: the actor base, mailbox, supervision rules, timers, events, monitoring,
logging and settings."""
