"""Measuring fflm: its speed and memory (`fflm bench`) and peer tools to compare it with."""
