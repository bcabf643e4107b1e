"""Operator tools: the command line, check, twilio set-up, the systemd unit, inspect, the demo
and the benchmarks."""
