# The one seam between MicroPython-only names and CPython. Logic modules take
# these from here and never import `machine`, `network` or `micropython`.
try:
    from micropython import const  # type: ignore[import-not-found]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


import time

try:
    ticks_ms = time.ticks_ms  # type: ignore[attr-defined]
    ticks_diff = time.ticks_diff  # type: ignore[attr-defined]
    ticks_add = time.ticks_add  # type: ignore[attr-defined]
    sleep_ms = time.sleep_ms  # type: ignore[attr-defined]
    MICROPYTHON = True
except AttributeError:  # CPython: same wrap-around as the ESP32 port (2**30)
    MICROPYTHON = False
    # const: mpy-cross folds these away. 2**30 itself would be a big int the
    # board holds for ever, although it never runs this branch.
    _MASK = const(0x3FFFFFFF)  # 2**30 - 1
    _HALF = const(0x20000000)  # 2**29
    _t0 = time.monotonic_ns()  # pyright: ignore[reportAttributeAccessIssue]  # CPython branch

    def ticks_ms():  # type: ignore[misc]
        return ((time.monotonic_ns() - _t0) // 1_000_000) & _MASK  # pyright: ignore[reportAttributeAccessIssue]  # CPython branch

    def ticks_add(t, delta):  # type: ignore[misc]
        return (t + delta) & _MASK

    def ticks_diff(a, b):  # type: ignore[misc]
        return ((a - b + _HALF) & _MASK) - _HALF

    def sleep_ms(ms):  # type: ignore[misc]
        time.sleep(ms / 1000)
