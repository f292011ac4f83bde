"""Tests of ``stvm.evaluate`` (one module per module it tests)."""
