"""Tools for the demo, the tests and the benches: simulated boards and
classrooms, broker launchers, the scripted school. Not part of the product:
neither the gateway nor the city imports it."""
