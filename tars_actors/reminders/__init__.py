"""Reminders and callback requests: parsing times, repeats, the reminder book and the
owner's reminder tools."""
