# Helpers for portable tests. This file also runs in the MicroPython VM, so it
# imports nothing from pytest.
import os

try:
    from tempfile import gettempdir

    _ROOT = "%s/preau-portable-%d" % (gettempdir(), os.getpid())
except ImportError:  # MicroPython: the VM's RAM filesystem
    _ROOT = "/tmp/preau-portable"


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


def fresh(name):
    """An empty directory for one test: the board's flash."""
    for d in (_ROOT, _ROOT + "/" + name):
        try:
            os.mkdir(d)
        except OSError:
            pass
    d = _ROOT + "/" + name
    wipe(d, keep=True)
    return d


def wipe(d, keep=False):
    """Remove what is in `d` (folders too), then `d` itself unless `keep`."""
    for name in os.listdir(d):
        path = d + "/" + name
        if os.stat(path)[0] & 0x4000:  # S_IFDIR, in both interpreters' stat
            wipe(path)
        else:
            os.remove(path)
    if not keep:
        os.rmdir(d)
        try:
            os.rmdir(_ROOT)
        except OSError:
            pass  # another test's directory is still there
