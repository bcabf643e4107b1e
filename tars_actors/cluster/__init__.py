"""Several daemons on one PostgreSQL database: membership and heartbeats
(:mod:`~tars_actors.cluster.members`), and the wake-up channel between them
(:mod:`~tars_actors.cluster.wakeup`)."""
