"""Hardware facts (board pin maps, protocol tables) and simulators."""
