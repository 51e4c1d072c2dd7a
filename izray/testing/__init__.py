"""Test and benchmark helpers that ship with izray (the black-box simulator)."""
