# Préau classroom firmware. The same files run on the board (MicroPython) and
# under CPython for simulation and tests; keep this file empty of imports so
# importing one logic module never drags the others into the board's RAM.
VERSION = "0.1.0"
