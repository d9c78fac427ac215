"""What the online controller's hand-made problems share: their start, their step and their switch devices."""

from __future__ import annotations

from datetime import UTC, datetime

from controllers.online.problem import SwitchDevice, SwitchState
from twin.phase import Phase

START = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
STEP_S = 900.0


def switch_device(name: str, phase: Phase, feeder: int = 0, **state: object) -> SwitchDevice:
    """A switch device of a control problem on ``phase`` now, ``state`` its other ``SwitchState`` fields."""
    return SwitchDevice(id=name, feeder=feeder, switch=SwitchState.model_validate({"phase_now": phase, **state}))
