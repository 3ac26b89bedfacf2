"""User-facing errors: one line naming the problem and the fix, and an exit code."""

from __future__ import annotations

from engine_format.errors import first_line  # noqa: F401  (one formatter for every layer)


class UserError(RuntimeError):
    """Something the user can fix; printed as one line, exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
