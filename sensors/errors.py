"""The project's one user-facing exception type.

Raise `UserError` with a single sentence that tells the user what went wrong and what to do;
`main.py` catches it once, prints the message to stderr and exits with `exit_code`.
"""


class UserError(Exception):
    """An error the user can act on. `exit_code` is 2 for usage errors, 1 for runtime errors."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
