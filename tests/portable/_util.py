# Helpers for portable tests. This file also runs in the MicroPython VM, so it
# imports nothing from pytest.


class FakeClock:
    """The board's clock, driven by the test: uptime `now`, no wall time."""

    def __init__(self):
        self.now = 0

    def uptime_ms(self):
        return self.now

    def time(self):
        return None


def raises(exc, fn, *args, **kwargs):
    """Call fn and return the `exc` it raises; fail if it raises nothing."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc.__name__))
