from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streams.errors import DataError
from twin.loaders.ieee_european_lv import read_shape_kw, shape_files


def test_a_bundled_shape_reads_as_pandas_reads_it() -> None:
    for path in list(shape_files().values())[:3]:
        assert np.array_equal(read_shape_kw(path), pd.read_csv(path)["mult"].to_numpy())


def test_bad_shape_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("time,kw\n00:01:00,1\n")
    with pytest.raises(DataError, match="expected a column 'mult'"):
        read_shape_kw(path)
    path.write_text("time,mult\n" + "00:01:00,1\n" * 1439 + "00:01:00\n")
    with pytest.raises(DataError, match="does not have the header's 2 fields"):
        read_shape_kw(path)
    path.write_text("time,mult\n" + "00:01:00,1\n" * 1439 + "00:01:00,x\n")
    with pytest.raises(DataError, match="not a number"):
        read_shape_kw(path)
    path.write_text("time,mult\r\n" + "00:01:00,0.5\r\n" * 1440)
    assert read_shape_kw(path).tolist() == [0.5] * 1440
    path.write_text("time,mult\n" + "00:01:00,1\n" * 10)
    with pytest.raises(DataError, match="expected 1440 finite values"):
        read_shape_kw(path)
