"""How many random sequences the device property tests draw.

The suite draws 2,000 per property (about 6 s each); ``PHASETWIN_PROPERTY_EXAMPLES=10000 scripts/test tests/devices``
runs them as thoroughly as before the suite neared its 30-minute CI budget.
"""

from __future__ import annotations

import os

DEVICE_SEQUENCES = int(os.environ.get("PHASETWIN_PROPERTY_EXAMPLES", "2000"))
