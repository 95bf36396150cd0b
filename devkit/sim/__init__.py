"""Simulators that let the real firmware run without hardware."""
