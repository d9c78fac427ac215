"""Where the one-line draws each bus: the feeder's own coordinates when it has them (IEEE European LV), a
breadth-first tree layout when it has none (IEEE 13-node, CIGRE MV from pandapower without geodata here)."""

from __future__ import annotations

import numpy as np
import pytest

from phasetwin.view.geometry import one_line
from twin.feeders import open_feeder
from twin.network import Feeder


def test_ieee_lv_buses_keep_their_buscoords_and_the_source_bus_gets_a_place(ieee_feeder: Feeder) -> None:
    drawing = one_line(ieee_feeder)
    assert drawing.from_coordinates and len(drawing.bus_ids) == 907
    given = {b.id: (b.x, b.y) for b in ieee_feeder.buses if b.x is not None}
    index = drawing.bus_index()
    for bus, (x, y) in given.items():
        assert (drawing.x[index[bus]], drawing.y[index[bus]]) == (x, y)
    (missing,) = set(drawing.bus_ids) - set(given)
    assert np.isfinite([drawing.x[index[missing]], drawing.y[index[missing]]]).all()
    assert drawing.line_ends.shape == (len(ieee_feeder.lines), 2)


@pytest.mark.parametrize("name", ["ieee13", "cigre-mv"])
def test_a_network_without_coordinates_is_laid_out_as_a_tree_from_its_source(name: str) -> None:
    feeder = open_feeder(name).load_feeder()
    assert all(b.x is None for b in feeder.buses)
    drawing = one_line(feeder)
    assert not drawing.from_coordinates
    positions = set(zip(drawing.x.round(9), drawing.y.round(9), strict=True))
    assert len(positions) == len(feeder.buses)  # no two buses on the same spot
    index = drawing.bus_index()
    # Layers go down from the source: every line's far end sits at least as low as its near end's layer.
    source_y = drawing.y[index[feeder.source.bus]]
    assert (drawing.y <= source_y + 1e-12).all()
