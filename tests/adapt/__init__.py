"""Tests of ``stvm.adapt`` (one module per module it tests)."""
