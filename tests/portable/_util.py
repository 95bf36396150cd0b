# Helpers for portable tests. This file also runs in the MicroPython VM, so it
# imports nothing from pytest.


def raises(exc, fn, *args, **kwargs):
    """Call fn and return the `exc` it raises; fail if it raises nothing."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc.__name__))
