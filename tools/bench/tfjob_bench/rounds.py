"""Figures over rounds: one value per round of a contestant, told as a median and a spread.

A ratio to the limit is taken within a round (ours in round 2 over the limit in round 2), then
summarised like any other figure: the rounds are interleaved so that a slow spell of the shared
machine touches both sides of a ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import ContestantResult

Rounds = Sequence[dict[str, "ContestantResult"]]
# A figure of one result, given the limit's result of the same round (None without one).
Figure = Callable[["ContestantResult", "ContestantResult | None"], float | None]


@dataclass(frozen=True)
class Spread:
    """The values of one figure, a round each (rounds without it left out)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def format(self, digits: int = 2) -> str:
        """``2.98 [2.71, 3.40]``: the median, then the lowest and highest round."""
        median = f"{self.median:.{digits}f}"
        if len(self.values) == 1:
            return median
        return f"{median} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def spread(rounds: Rounds, name: str, figure: Figure) -> Spread | None:
    """``figure`` of contestant ``name`` in every round that has it; None if none has."""
    values = []
    for this_round in rounds:
        result = this_round.get(name)
        if result is None or (result.error and result.p1_seconds is None):
            continue
        value = figure(result, this_round.get("limit"))
        if value is not None:
            values.append(float(value))
    return Spread(tuple(values)) if values else None


def ratio_to_limit(of: Callable[[ContestantResult], float | None]) -> Figure:
    """The figure ``of`` over the limit's in the same round."""

    def figure(result: ContestantResult, limit: ContestantResult | None) -> float | None:
        if limit is None or limit.error:
            return None
        mine, theirs = of(result), of(limit)
        if mine is None or not theirs:
            return None
        return mine / theirs

    return figure


def names(rounds: Rounds) -> list[str]:
    """The contestants, in run order."""
    return list(dict.fromkeys(name for this_round in rounds for name in this_round))
