"""Detection: find out what the host has. Each outside boundary is one module here."""
