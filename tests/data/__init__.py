"""Tests of ``stvm.data`` (one module per module it tests)."""
