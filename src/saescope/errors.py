"""The one exception type saescope raises for bad input, so callers can tell it from a bug."""


class SaescopeError(Exception):
    """Bad input or state: the message says what was expected, what was found, and what to do."""
