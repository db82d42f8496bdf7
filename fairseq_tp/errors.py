"""Errors a user can fix: printed as one line, non-zero exit, no traceback."""


class UsageError(SystemExit):
    """Raised for bad input from the glue layer (fairseq's CLIs catch nothing, so it must exit cleanly)."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(f"fairseq-tp: error: {message}")
