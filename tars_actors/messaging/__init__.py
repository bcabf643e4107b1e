"""Messages between people: the ledger of every routed message, routing decisions and the
model's messaging tools."""
