"""Real HTTP servers that play the vendor APIs, for the tests and for ``--demo``."""
