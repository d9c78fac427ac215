"""Ingest guard: meter readings are checked once, before any role sees them, and quarantined instead of used."""

from streams.ingest.device_guard import DeviceGuard, DeviceIdentity
from streams.ingest.guard import (
    GuardedBus,
    IngestCounters,
    IngestGuard,
    MeterEnvelope,
    Plausibility,
    learn_plausibility,
)

__all__ = ["DeviceGuard", "DeviceIdentity", "GuardedBus", "IngestCounters", "IngestGuard", "MeterEnvelope",
           "Plausibility", "learn_plausibility"]
