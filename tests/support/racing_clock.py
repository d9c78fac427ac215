"""A clock for tests that prove a planner stops on work budgets, not on the wall clock."""


class RacingClock:
    """A clock that jumps an hour at every reading: a planner with a wall-clock limit would stop at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 3600.0
        return self.now

    def process_time(self) -> float:
        return self.perf_counter()

    def monotonic(self) -> float:
        return self.perf_counter()

    def time(self) -> float:
        return self.perf_counter()
