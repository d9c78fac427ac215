"""Ingest guard: meter readings are checked once, before any role sees them, and quarantined instead of used."""

from streams.ingest.guard import GuardedBus, IngestCounters, IngestGuard, MeterEnvelope

__all__ = ["GuardedBus", "IngestCounters", "IngestGuard", "MeterEnvelope"]
