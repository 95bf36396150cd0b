# Status LED patterns: one distinct rhythm per mode, so a teacher can tell
# them apart at a glance (docs/board.md). Pure: level(mode, t) -> 0 or 1.
# Each pattern is (on, off, on, off, ...) in milliseconds, repeated.
PATTERNS = {
    "idle": (60, 2940),  # heartbeat: alive, nothing running
    "waiting": (100, 100),  # fast blink: asking the gateway
    "on": (1000,),  # steady: session on
    "alone": (2700, 300),  # on, a short gap every 3 s: session on the offline policy
    "ending": (500, 500),  # slow blink: ends within 5 minutes
    "grace": (250, 250),  # quicker blink: time is up, the grace runs (a press extends)
    "air": (1400, 150, 150, 300),  # on with a hiccup: CO2 high, air the room
    "denied": (150, 150, 150, 150, 150, 1250),  # three flashes
    "offline": (100, 100, 100, 1700),  # double flash: no gateway link
    "fault": (1500, 500),  # long on, short off: needs a technician
    "identify": (50, 50),  # very fast: a technician looks for the board
}


def level(mode, t):
    """t in ms (any clock: only its phase matters)."""
    pattern = PATTERNS.get(mode) or PATTERNS["fault"]
    t %= sum(pattern)  # a single span (steady on) returns 1 below
    on = 1
    for span in pattern:
        if t < span:
            return on
        t -= span
        on ^= 1
    return 0
