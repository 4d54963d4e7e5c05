"""One error hierarchy; exit codes live here and nowhere else.

0 success, 1 a check failed, 2 bad input (unknown name, malformed file, impossible request).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class ServectlError(Exception):
    """A failure the user can act on: printed as one line, no traceback."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def lines(self) -> list[str]:
        """What the CLI prints, one `error:` line each: the one line, or one per mistake (a fleet file's)."""
        return [self.one_line()]


class UserError(ServectlError):
    """Bad input: unknown name, malformed file, impossible or unsafe request."""

    exit_code = EXIT_BAD_INPUT


class CheckFailed(ServectlError):
    """A check ran and found a problem (health check, patch check, pre-flight)."""

    exit_code = EXIT_CHECK_FAILED


class UnknownName(UserError):
    """A catalog lookup missed; carries close matches for 'did you mean'."""

    def __init__(self, kind: str, name: str, known: list[str]):
        import difflib

        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None
        listing = f"`servectl {kind}s list` shows all"
        super().__init__(
            f"unknown {kind} {name!r}" + (f": {hint}" if hint else ""),
            listing,
        )
        self.close_matches = close
