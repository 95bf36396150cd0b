"""The `preau` command: one entry point for the gateway, the city and the demo."""
