"""The deterministic cluster simulator and its checkers (see README.md in this package)."""
