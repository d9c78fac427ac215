"""Load forecasts for the rolling horizon, in step-mean kW, one column per series (customer, or customer-phase).

A forecaster sees observed step means as they complete (``observe``) and answers for the next steps
(``forecast``). Step indices are absolute (0 = the first step of the data or of the run); ``forecast(step, n)``
covers steps step … step+n−1 and may only use observations of steps before ``step`` (perfect foresight is the
deliberate exception: the upper bound in replays).

Tick data (e.g. 1-minute meter readings) become step means with ``step_means`` (whole arrays) or
``StepAggregator`` (tick by tick, online).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from controllers.errors import ControllerError


class ForecastError(ControllerError):
    """A forecaster was asked something it cannot answer (no observation yet, wrong shape)."""


class Forecaster(Protocol):
    """What the controller needs from a forecast."""

    def observe(self, step: int, p_kw: np.ndarray) -> None:
        """Record the observed step-mean load ``p_kw`` [n_series] of ``step``."""
        ...

    def forecast(self, step: int, horizon: int) -> np.ndarray:
        """Step-mean load [horizon, n_series] of steps ``step`` … ``step + horizon − 1``."""
        ...


def step_means(tick_kw: np.ndarray, ticks_per_step: int) -> np.ndarray:
    """Mean of each block of ``ticks_per_step`` ticks: [n_ticks, ...] -> [n_ticks // ticks_per_step, ...].

    Raises ForecastError when the ticks do not fill whole steps.
    """
    if ticks_per_step < 1:
        raise ForecastError(f"ticks_per_step {ticks_per_step} must be ≥ 1")
    n = tick_kw.shape[0]
    if n % ticks_per_step:
        raise ForecastError(
            f"{n} ticks do not fill whole steps of {ticks_per_step} ticks; trim or pad the data to a multiple"
        )
    return tick_kw.reshape(n // ticks_per_step, ticks_per_step, *tick_kw.shape[1:]).mean(axis=1)


class StepAggregator:
    """Turns a stream of tick readings into step means, online.

    Tick k belongs to step k // ticks_per_step. ``add`` returns the steps it completes: the tick's own step when
    it is the step's last tick, and an earlier step left incomplete when the ticks jump past it (averaged over the
    ticks it got). A tick of an earlier step than the current one is refused with ForecastError.
    """

    def __init__(self, *, n_series: int, ticks_per_step: int) -> None:
        if ticks_per_step < 1:
            raise ForecastError(f"ticks_per_step {ticks_per_step} must be ≥ 1")
        self._n_series = n_series
        self._ticks_per_step = ticks_per_step
        self._step = 0
        self._sum = np.zeros(n_series)
        self._count = 0

    def add(self, tick: int, p_kw: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add the reading [n_series] of ``tick``; returns the (step, mean [n_series]) pairs it completes."""
        row = _row(p_kw, self._n_series, what="tick reading")
        step = tick // self._ticks_per_step
        if step < self._step:
            raise ForecastError(f"tick {tick} belongs to step {step}, before the current step {self._step}")
        done: list[tuple[int, np.ndarray]] = []
        if step > self._step:
            if self._count:
                done.append((self._step, self._sum / self._count))
            self._step, self._sum, self._count = step, np.zeros(self._n_series), 0
        self._sum = self._sum + row
        self._count += 1
        if tick % self._ticks_per_step == self._ticks_per_step - 1:
            done.append((step, self._sum / self._count))
            self._step, self._sum, self._count = step + 1, np.zeros(self._n_series), 0
        return done


def _row(p_kw: np.ndarray, n_series: int, *, what: str) -> np.ndarray:
    row = np.asarray(p_kw, dtype=float)
    if row.shape != (n_series,):
        raise ForecastError(f"{what} has shape {row.shape}; expected ({n_series},)")
    return row


class PerfectForesight:
    """The future as it will be: rows of the full step-mean data [n_steps, n_series].

    Beyond the data: ``wrap=True`` repeats the data from its start (a one-day data set as every day), otherwise
    the last row is held.
    """

    def __init__(self, data_kw: np.ndarray, *, wrap: bool = False) -> None:
        data = np.asarray(data_kw, dtype=float)
        if data.ndim != 2 or data.shape[0] < 1:
            raise ForecastError(f"data_kw has shape {data.shape}; expected [n_steps ≥ 1, n_series]")
        self._data = data
        self._wrap = wrap

    def observe(self, step: int, p_kw: np.ndarray) -> None:
        _row(p_kw, self._data.shape[1], what="observation")

    def forecast(self, step: int, horizon: int) -> np.ndarray:
        idx = np.arange(step, step + horizon)
        n = self._data.shape[0]
        idx = idx % n if self._wrap else np.minimum(idx, n - 1)
        return self._data[idx].copy()


class Persistence:
    """The last observed step, repeated over the horizon."""

    def __init__(self, *, n_series: int) -> None:
        self._n_series = n_series
        self._last: np.ndarray | None = None
        self._last_step = -1

    def observe(self, step: int, p_kw: np.ndarray) -> None:
        row = _row(p_kw, self._n_series, what="observation")
        if step >= self._last_step:
            self._last, self._last_step = row.copy(), step

    def forecast(self, step: int, horizon: int) -> np.ndarray:
        if self._last is None:
            raise ForecastError("persistence forecast asked before any observation; observe a step first")
        return np.broadcast_to(self._last, (horizon, self._n_series)).copy()


class SameTimeYesterday:
    """Step s is forecast as the observation of step s − steps_per_day; where that is missing (the first day, or
    a gap), as the last observed step (persistence)."""

    def __init__(self, *, n_series: int, steps_per_day: int) -> None:
        if steps_per_day < 1:
            raise ForecastError(f"steps_per_day {steps_per_day} must be ≥ 1")
        self._n_series = n_series
        self._steps_per_day = steps_per_day
        self._seen: dict[int, np.ndarray] = {}
        self._persistence = Persistence(n_series=n_series)

    def observe(self, step: int, p_kw: np.ndarray) -> None:
        row = _row(p_kw, self._n_series, what="observation")
        self._seen[step] = row.copy()
        self._persistence.observe(step, row)
        # only the last day (and the horizon's reach) is ever looked up again
        for old in [s for s in self._seen if s < step - 2 * self._steps_per_day]:
            del self._seen[old]

    def forecast(self, step: int, horizon: int) -> np.ndarray:
        fallback: np.ndarray | None = None
        out = np.empty((horizon, self._n_series))
        for k in range(horizon):
            yesterday = self._seen.get(step + k - self._steps_per_day)
            if yesterday is None or step + k - self._steps_per_day >= step:
                if fallback is None:
                    fallback = self._persistence.forecast(step, 1)[0]
                out[k] = fallback
            else:
                out[k] = yesterday
        return out
