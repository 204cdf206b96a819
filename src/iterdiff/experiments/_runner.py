"""Run experiments one after another; a failure (import or run) becomes a failed `Result`."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable

from . import load
from ._base import Result

TRACEBACK_FRAMES = 6  # innermost frames kept in the report


def failure(name: str, exc: BaseException, module=None, *, importing: bool = False) -> Result:
    """A `Result` that records why experiment ``name`` could not run."""
    frames = traceback.extract_tb(exc.__traceback__)[-TRACEBACK_FRAMES:]
    summary = "".join(traceback.format_list(frames))
    what = "could not import" if importing else "raised while running"
    last = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    error = (
        f"{what} iterdiff.experiments.{name}: {last}\n\nTraceback (innermost frames):\n{summary}"
    )
    return Result(
        name=name,
        title=getattr(module, "TITLE", name),
        source=getattr(module, "SOURCE", ""),
        claims=[],
        error=error,
    )


def run_one(name: str, size: str, seed: int) -> Result:
    """Import and run one experiment; never raises (except KeyboardInterrupt)."""
    start = time.perf_counter()
    try:
        module = load(name)
    except Exception as exc:  # a missing or broken module shows in the report
        result = failure(name, exc, importing=True)
    else:
        try:
            result = module.run(size=size, seed=seed)
            if not isinstance(result, Result):
                raise TypeError(f"run() returned {type(result).__name__}, not a Result")
        except Exception as exc:
            result = failure(name, exc, module)
    result.seconds = time.perf_counter() - start
    return result


def run_all(
    names: Iterable[str],
    size: str,
    seed: int,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run ``names`` in order, calling ``on_start(name)`` and ``on_done(result)`` around each."""
    results = []
    for name in names:
        if on_start is not None:
            on_start(name)
        result = run_one(name, size, seed)
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results
