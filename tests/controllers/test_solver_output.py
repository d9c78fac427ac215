"""Native writes to stdout during a solve go to the log (HiGHS prints some lines to descriptor 1 itself).

Run in a child process so that descriptor 1 is a real pipe the test reads: a libc ``write(1, …)`` (what HiGHS
does) inside ``native_stdout_to_log`` must not reach it, and must be logged; a real HiGHS solve through
``solve_quietly`` still returns its optimum.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import ctypes, logging, sys
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(message)s")
    from ortools.math_opt.python import mathopt
    from controllers.solver_output import native_stdout_to_log, solve_quietly
    print("before", flush=True)
    with native_stdout_to_log():
        ctypes.CDLL(None).write(1, b"HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();\\n", 73)
    model = mathopt.Model()
    x = model.add_integer_variable(lb=0, ub=10, name="x")
    model.add_linear_constraint(2 * x <= 7)
    model.maximize(x)
    result = solve_quietly(model, mathopt.SolverType.HIGHS)
    print("after", result.objective_value(), flush=True)
""")


def test_native_stdout_goes_to_the_log_and_the_solve_still_works() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["before", "after", "3.0"]
    assert "controllers.solver HiGHS: HighsMipSolverData::transformNewIntegerFeasibleSolution" in done.stderr


THREADS = textwrap.dedent("""
    import ctypes, logging, sys, threading
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(message)s")
    from controllers.solver_output import native_stdout_to_log
    write = ctypes.CDLL(None).write
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with native_stdout_to_log():
            a_in.set()
            b_in.wait()
            write(1, b"native-a\\n", 9)
        a_out.set()

    def second():
        a_in.wait()
        with native_stdout_to_log():
            b_in.set()
            a_out.wait()  # the first leaves while this one is still inside
            write(1, b"native-b\\n", 9)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("after", flush=True)
""")


def test_overlapping_solves_on_two_threads_share_one_redirection_and_restore_stdout() -> None:
    """The order that broke a per-call redirection: A in, B in, A out, B out (B then restored A's file)."""
    done = subprocess.run([sys.executable, "-c", THREADS], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["after"]
    assert "HiGHS: native-a" in done.stderr and "HiGHS: native-b" in done.stderr
