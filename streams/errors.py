"""Errors raised by the streams package (message contract, transports, data readers and recorders)."""

from __future__ import annotations


class StreamError(Exception):
    """Base class of every error the streams package raises on purpose."""


class DataError(StreamError):
    """Meter data cannot be used as asked (unreadable, wrong unit, customers or period do not match)."""
