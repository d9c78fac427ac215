"""The grid role and its parts: the meter inbox, the batch solver, the per-tick figures."""
