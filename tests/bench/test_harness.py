"""The harness's timings against a fake clock: planted durations, known minima."""

from __future__ import annotations

from collections.abc import Callable

from bench.harness import interleaved_best, timed


class FakeClock:
    """A clock that moves only when a timed function says how long it took."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def takes(self, name: str, durations: list[float], calls: list[str]) -> Callable[[], None]:
        """A function that records its call and advances the clock by its next planted duration."""
        planted = iter(durations)

        def fn() -> None:
            calls.append(name)
            self.now += next(planted)

        return fn


def test_timed_returns_the_value_and_the_planted_duration() -> None:
    clock = FakeClock()

    def work() -> str:
        clock.now += 2.5
        return "done"

    result = timed(work, clock=clock)
    assert (result.value, result.seconds) == ("done", 2.5)
    assert result.peak_mb > 0  # this process's own memory at least


def test_interleaved_best_takes_turns_and_keeps_each_minimum() -> None:
    clock, calls = FakeClock(), []
    one = clock.takes("one", [3.0, 1.25, 2.0, 5.0], calls)
    two = clock.takes("two", [0.75, 4.0, 0.5, 0.6], calls)
    assert interleaved_best(4, one, two, clock=clock) == [1.25, 0.5]
    assert calls == ["one", "two"] * 4


def test_interleaved_best_of_one_function() -> None:
    clock, calls = FakeClock(), []
    (best,) = interleaved_best(3, clock.takes("only", [7.0, 6.0, 9.0], calls), clock=clock)
    assert best == 6.0
    assert calls == ["only"] * 3
