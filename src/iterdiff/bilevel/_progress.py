"""A progress bar for the outer loop (tqdm), shown only on a terminal unless asked for."""

import sys

from tqdm.auto import tqdm


def progress_bar(enabled: bool | None, total: int):
    """A tqdm bar on stderr; ``enabled=None`` shows it only when stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, disable=not enabled, desc="hypergradient", unit="step", leave=False)
