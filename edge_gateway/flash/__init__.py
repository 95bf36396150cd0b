"""`preau flash`: a classroom board put in service in one command
(docs/flash.md). `cli` runs the six steps; `repl` speaks MicroPython's raw
REPL over pyserial; `build` compiles the firmware for the board's .mpy
version and makes its files; `image` writes MicroPython itself; `gateway`
waits for the board's birth at the gateway; `errors` are what a technician
reads, each with its fix."""
