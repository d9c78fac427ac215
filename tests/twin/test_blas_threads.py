"""One BLAS thread inside ``one_blas_thread``, nested contexts, the previous limit back after the outermost."""

from __future__ import annotations

import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

from twin.blas_threads import one_blas_thread


def blas_threads() -> int:
    return max(pool["num_threads"] for pool in ThreadpoolController().info() if pool["user_api"] == "blas")


def test_the_limit_holds_through_nested_contexts_and_is_restored_after_the_outermost() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        outer = blas_threads()  # 2, or 1 where OpenBLAS was built for one core: the restore is checked either way
        with one_blas_thread():
            assert blas_threads() == 1
            with one_blas_thread():
                assert blas_threads() == 1
            assert blas_threads() == 1  # the inner exit leaves the outer limit in force
        assert blas_threads() == outer


def test_the_limit_is_restored_when_the_body_raises() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        outer = blas_threads()
        with pytest.raises(RuntimeError, match="boom"), one_blas_thread():
            raise RuntimeError("boom")
        assert blas_threads() == outer
        with one_blas_thread():  # and the next context limits again
            assert blas_threads() == 1
