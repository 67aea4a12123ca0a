"""The one error type for user mistakes: a one-line message and an exit code, never a traceback."""


class EdgeError(Exception):
    """A problem the user can fix (bad file, bad option). The CLI prints `message` and exits."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
