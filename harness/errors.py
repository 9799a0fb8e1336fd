"""The one user-facing error type. The CLI turns it into a message and an exit code; nothing else prints."""

from __future__ import annotations

# Exit codes: 2 = bad scenario, option or environment (nothing was started); 1 = a run that started failed.
EXIT_USAGE = 2
EXIT_FAILED = 1


class HarnessError(Exception):
    """A problem the user can fix: says what is wrong and what is allowed or what to do."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"
