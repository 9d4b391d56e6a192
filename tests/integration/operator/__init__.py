"""The real kopf operator, in-process, against the API emulator (#5)."""
