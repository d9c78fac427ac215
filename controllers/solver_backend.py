"""How a ``SparseModel`` reaches HiGHS (``controllers.sparse_milp.solve``): an enum alone, so that settings and the
command line can name it without importing a solver (``phasetwin --help`` loads no heavy library)."""

from __future__ import annotations

from enum import StrEnum


class Backend(StrEnum):
    MATHOPT = "mathopt"
    """HiGHS inside OR-Tools, through a MathOpt ModelProto."""
    HIGHSPY = "highspy"
    """HiGHS through highspy: the arrays passed as they are (``sparse_milp.solve_highspy``)."""
