# Teacher button: debounce and short/long classification. Pure; the board's
# ISR only sets a flag, and one task samples the pin and feeds `update`.
# A long press is reported the moment it reaches long_ms, not at release, so
# the LED answers while the finger is still on the button.
from .compat import const

_DEBOUNCE_MS = const(30)
_LONG_MS = const(2000)
SHORT = "short"
LONG = "long"


class ButtonLogic:
    def __init__(self, debounce_ms=_DEBOUNCE_MS, long_ms=_LONG_MS):
        self.debounce_ms = debounce_ms
        self.long_ms = long_ms
        self._raw = False
        self._raw_since = 0
        self._stable = False
        self._pressed_at = 0  # -1 once this press was reported as LONG

    def busy(self):
        """True while the task must keep sampling (pressed or bouncing)."""
        return self._stable or self._raw

    def update(self, pressed, now):
        """Feed the pin level (True = pressed); returns SHORT, LONG or None."""
        if pressed != self._raw:
            self._raw = pressed
            self._raw_since = now
        if pressed != self._stable and now - self._raw_since >= self.debounce_ms:
            self._stable = pressed
            if pressed:
                self._pressed_at = self._raw_since
            elif self._pressed_at >= 0:
                return SHORT
        if self._stable and self._pressed_at >= 0 and now - self._pressed_at >= self.long_ms:
            self._pressed_at = -1
            return LONG
        return None
