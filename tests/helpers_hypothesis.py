"""Debugging helpers for strategies, after hypothesis's own ``tests/common/debug.py``.

``minimal`` shrinks to the simplest example satisfying a condition; ``find_any`` returns the first
one found (no shrinking), to show that a feature is reachable; ``assert_all_examples`` checks a
predicate on every example. None of them uses the example database. ``minimal`` and ``find_any``
are derandomized: where shrinking ends can depend on the example it starts from, and a test must
not pass or fail with the seed that the tests run before it left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import settings as Settings
from hypothesis.errors import Unsatisfiable

T = TypeVar("T")

_QUIET = Settings(
    database=None, deadline=None, verbosity=Verbosity.quiet, report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck), derandomize=True,
)


class _Found(Exception):
    """Raised to stop the search once a matching example is seen."""


def minimal(strategy: Any, condition: Callable[[T], bool] = lambda _: True, *,
            settings: Settings | None = None, max_examples: int = 2000) -> T:
    """The simplest example of ``strategy`` satisfying ``condition``, after shrinking."""
    found: list[T] = []

    @Settings(settings or _QUIET, max_examples=max_examples, database=None, report_multiple_bugs=False,
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def search(value: T) -> None:
        if condition(value):
            found[:] = [value]
            raise _Found

    try:
        search()
    except _Found:
        return found[0]
    raise Unsatisfiable(f"no example of {strategy!r} satisfies the condition in {max_examples} examples")


def find_any(strategy: Any, condition: Callable[[T], bool] = lambda _: True, *,
             settings: Settings | None = None, max_examples: int = 1000) -> T:
    """The first example of ``strategy`` satisfying ``condition`` (generation only, no shrinking)."""
    base = settings or _QUIET
    return minimal(strategy, condition, max_examples=max_examples,
                   settings=Settings(base, phases=[Phase.explicit, Phase.generate]))


def assert_all_examples(strategy: Any, predicate: Callable[[T], bool], *, settings: Settings | None = None,
                        max_examples: int | None = None) -> None:
    """Assert that ``predicate`` holds for every example of ``strategy``."""
    base = settings or Settings(deadline=None, suppress_health_check=list(HealthCheck))
    options: dict[str, Any] = {"database": None}
    if max_examples is not None:
        options["max_examples"] = max_examples

    @Settings(base, **options)
    @given(strategy)
    def check(value: T) -> None:
        assert predicate(value), f"{value!r} does not satisfy the predicate (strategy {strategy!r})"

    check()
