"""What a converter raises for a file it cannot read (in the child process)."""

from __future__ import annotations


class UnreadableDocument(Exception):
    """``message`` follows the document's name ("is encrypted"); ``hint`` says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
