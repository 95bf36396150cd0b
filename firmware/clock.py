# The board's clocks, read in one place. `uptime_ms` never wraps (the raw
# ticks counter wraps every 2**30 ms, about 12 days, on the ESP32 port), so
# logic modules get a plain growing integer. Wall time exists only once the
# gateway has given it: a board has no battery-backed RTC we trust, and a
# clock step must never stretch a session, so sessions run on uptime alone.
from .compat import ticks_diff, ticks_ms


class Clock:
    def __init__(self, ticks=ticks_ms):
        self._ticks = ticks
        self._last = ticks()
        self._uptime = 0
        self._base = None  # gateway time minus uptime, in ms; None until given

    def uptime_ms(self):
        # Must be called at least once per ~6 days; the main loop calls it
        # many times a second.
        now = self._ticks()
        self._uptime += ticks_diff(now, self._last)
        self._last = now
        return self._uptime

    def set_time(self, unix_s):
        self._base = unix_s * 1000 - self.uptime_ms()

    def time(self):
        """Unix seconds (int), or None until the gateway gave the time."""
        if self._base is None:
            return None
        return (self._base + self.uptime_ms()) // 1000
