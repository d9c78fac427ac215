import numpy as np
import pytest

from twin.phase import Phase, parse_connection
from twin.phasing import PhaseMap


def test_terminals_land_on_their_connected_phases() -> None:
    pm = PhaseMap.of([parse_connection("C"), parse_connection("CAB")])
    terminal = np.array([[[5.0, 0.0, 0.0], [1.0, 2.0, 3.0]]])
    phases = pm.to_phases(terminal)
    # single-phase customer on C; three-phase CAB: terminal 0 -> C, 1 -> A, 2 -> B
    assert phases[0, 0].tolist() == [0.0, 0.0, 5.0]
    assert phases[0, 1].tolist() == [2.0, 3.0, 1.0]


def test_mapping_conserves_each_customers_total() -> None:
    rng = np.random.default_rng(0)
    conns = [parse_connection(c) for c in ("A", "B", "C", "BCA", "ACB")]
    terminal = rng.normal(size=(7, 5, 3))
    for i, c in enumerate(conns):
        terminal[:, i, len(c):] = 0.0
    assert np.allclose(PhaseMap.of(conns).to_phases(terminal).sum(axis=-1), terminal.sum(axis=-1))


def test_moving_a_customer_keeps_its_number_of_phases() -> None:
    pm = PhaseMap.of([parse_connection("A")])
    assert pm.with_connection(0, (Phase.C,)).to_phases(np.array([[4.0, 0, 0]])).tolist() == [[0.0, 0.0, 4.0]]
    with pytest.raises(ValueError, match="new connection has 3 phase"):
        pm.with_connection(0, parse_connection("ABC"))


def test_a_batch_maps_as_its_states_one_by_one_and_a_wrong_shape_is_named() -> None:
    pm = PhaseMap.of([parse_connection(c) for c in ("B", "CA", "BCA")])
    batch = np.random.default_rng(1).normal(size=(4, 2, 3, 3))
    mapped = pm.to_phases(batch)
    for i in range(4):
        for j in range(2):
            for customer, conn in enumerate(pm.connections):
                for terminal, phase in enumerate(conn):
                    assert mapped[i, j, customer, phase] == batch[i, j, customer, terminal]
    with pytest.raises(ValueError, match=r"shape \[4, 3\]: expected \[\.\.\., 3, 3\]"):
        pm.to_phases(np.zeros((4, 3)))
