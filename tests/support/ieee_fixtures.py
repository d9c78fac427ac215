"""Small named fixtures shared by the twin tests."""

import pytest

from streams.meters.table import MeterTable
from twin.loaders import ieee_european_lv
from twin.network import Feeder


@pytest.fixture(scope="session")
def ieee_feeder() -> Feeder:
    return ieee_european_lv.load_feeder()


@pytest.fixture(scope="session")
def ieee_day(ieee_feeder: Feeder) -> MeterTable:
    return ieee_european_lv.load_day(ieee_feeder)
