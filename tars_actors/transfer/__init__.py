"""Transfers: a caller put through to the owner after the owner said yes (screening), and
the owner's call connected to someone (``connect_call``)."""
