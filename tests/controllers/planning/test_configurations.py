import numpy as np
import pytest

from controllers.planning.configurations import (
    CONFIGURATIONS,
    configuration_index,
    feasibility_matrix,
    initial_matrix,
    parse_configuration,
)
from twin.phase import connection_text


def test_fifteen_configurations_in_the_authors_order() -> None:
    assert [connection_text(c) for c in CONFIGURATIONS] == [
        "A", "B", "C", "AB", "AC", "BA", "BC", "CA", "CB", "ABC", "ACB", "BAC", "BCA", "CAB", "CBA"]


def test_feasibility_keeps_the_number_of_phases() -> None:
    initial = [parse_configuration(t) for t in ("A", "CB", "BCA")]
    feas = feasibility_matrix(initial)
    assert feas.sum(axis=1).tolist() == [3, 6, 6]
    assert (feas[initial_matrix(initial)]).all()
    assert feas[0, configuration_index(parse_configuration("C"))]
    assert not feas[0, configuration_index(parse_configuration("ABC"))]
    assert np.array_equal(feas[1], [len(c) == 2 for c in CONFIGURATIONS])


def test_unknown_configuration_is_named() -> None:
    with pytest.raises(ValueError, match="unknown phase letter"):
        parse_configuration("AD")
