"""Tests of ``stvm.report`` (one module per module it tests)."""
