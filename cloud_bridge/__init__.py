"""Préau city side: ingest the schools' record batches from the city broker,
store each (school, seq) once, serve a supervision API. docs/city.md says
what is stored and why; docs/protocol.md ("City link") owns the contract."""
