"""`preau bench`: a freshly flashed board checked on a Raspberry Pi's bench
before it goes into a classroom (docs/benchcheck.md). `wire` is the seam (the
bench's lines to the board, its console and the projector port), `blinka` its
Raspberry Pi side, `projector` the bench playing the room's projector,
`checks` the checks and their sheet, `cli` the command. The same checks drive
the simulated board through devkit/sim/benchwire.py."""
