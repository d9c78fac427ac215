"""Helpers and fixtures shared by the whole test suite."""
