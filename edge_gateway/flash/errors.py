"""What can go wrong while flashing a board, each with one sentence for the
technician and the fix (`preau flash` prints both, nothing else)."""

from __future__ import annotations


class FlashError(Exception):
    """A step that cannot go on: `str(e)` says what happened, `fix` what to do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


class NoPort(FlashError):
    pass


class PortDenied(FlashError):
    pass


class PortBusy(FlashError):
    pass


class NoAnswer(FlashError):
    """The board does not answer the raw REPL (busy, wedged, or not MicroPython)."""


class WrongProfile(FlashError):
    pass


class WrongImage(FlashError):
    pass


class NoCompiler(FlashError):
    """No mpy-cross emits the .mpy version the board loads."""


class FlashFull(FlashError):
    pass


class VerifyFailed(FlashError):
    pass


class BoardRefused(FlashError):
    """The board ran what it was sent and raised (its traceback is the message)."""


class GatewayUnreachable(FlashError):
    pass


class BadInput(FlashError):
    """The credentials file, the school's configuration or an option is wrong."""
