"""Exceptions that cross the line between the connection loop and the handlers.

Both sides import this module, so neither has to import the other.
"""


class CloseConnection(Exception):
    """Raised by a handler to close the connection after its response is written."""
