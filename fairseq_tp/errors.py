"""Errors a user can fix.

Library code raises :class:`UsageError` (a ``ValueError``), so callers can catch it.  Our own
command line turns it into one line and exit status 1; under fairseq's command lines
(fairseq-train, -generate, -interactive), which catch nothing, the hook installed by
:func:`install_one_line_errors` does the same instead of printing a traceback.
"""
import sys

PREFIX = "fairseq-tp: error: "


class UsageError(ValueError):
    """Bad input, with a one-line message for the user."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def install_one_line_errors() -> None:
    """Print an uncaught UsageError as one line (exit status stays 1); leave everything else alone."""
    previous = sys.excepthook
    if getattr(previous, "_fairseq_tp", False):
        return

    def hook(kind, value, traceback):
        if isinstance(value, UsageError):
            print(PREFIX + value.message, file=sys.stderr)
        else:
            previous(kind, value, traceback)

    hook._fairseq_tp = True
    sys.excepthook = hook
