"""How much `jax.jit` saves on the README's quickstart: seconds per call of its gradient, with and
without jit (the numbers quoted in README.md and docs/index.md).

    python tools/quickstart_jit.py

Runs the README's first ```python block (the quickstart), then times ``jax.grad(loss)`` called
repeatedly as written there (each call traces the solve again) and ``jax.jit(jax.grad(loss))``
(compiled on the first call), and prints the medians with the machine's CPU and load.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import platform
import re
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _seconds(fn, arg, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(arg).block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    readme = (ROOT / "README.md").read_text("utf-8")
    quickstart = re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M)[0]
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(quickstart, namespace)  # defines F and loss, enables float64
    jax, loss = namespace["jax"], namespace["loss"]

    plain = jax.grad(loss)
    plain(0.5).block_until_ready()
    per_call = _seconds(plain, 0.5, 5)
    compiled = jax.jit(jax.grad(loss))
    start = time.perf_counter()
    compiled(0.5).block_until_ready()
    first = time.perf_counter() - start
    per_jit_call = _seconds(compiled, 0.5, 1000)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"jax.grad(loss)(0.5), called again:      {per_call:.2f} s per call (median of 5)")
    print(f"jax.jit(jax.grad(loss)), first call:     {first:.2f} s (tracing and compilation)")
    print(
        f"jax.jit(jax.grad(loss))(0.5), again:     {per_jit_call * 1e3:.3f} ms per call (median of 1000)"
    )
    print(f"speed-up of a repeated call:             {per_call / per_jit_call:,.0f}×")
    print(f"machine: {_cpu()}, {os.cpu_count()} logical cores, load average {load:.1f}; "
          f"jax {jax.__version__}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
