"""Tests of ``stvm.models`` (one module per module it tests)."""
