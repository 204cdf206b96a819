"""check_gradients: every mode and finite differences on a user map, n = 200. (Its time budget,
< 10 s, is measured by benchmarks/bench_diagnostics.py, not asserted here: speed targets live in
the benchmarks.)"""

import jax.numpy as jnp
import numpy as np

import iterdiff as itd


def test_check_gradients_table_on_ridge_n200(capsys):
    rng = np.random.default_rng(0)
    n = 200
    A = jnp.asarray(rng.normal(size=(300, n)))
    y = jnp.asarray(rng.normal(size=300))
    H = A.T @ A
    step = 1.0 / (jnp.linalg.eigvalsh(H).max() + 50.0)

    def F(x, theta):
        return x - step * (H @ x - A.T @ y + theta * x)

    check = itd.diagnostics.check_gradients(F, jnp.zeros(n), jnp.asarray(50.0), max_steps=2000)
    table = capsys.readouterr().out
    for name in ("Implicit", "Unrolled", "Truncated(10)", "OneStep", "finite differences"):
        assert name in table
    # the closed form: ẋ = −(H + θI)⁻¹ x̄
    x_bar = jnp.linalg.solve(H + 50.0 * jnp.eye(n), A.T @ y)
    exact = np.asarray(-jnp.linalg.solve(H + 50.0 * jnp.eye(n), x_bar))
    for row in check.rows:
        err = np.linalg.norm(row.value - exact)
        if row.name != "finite differences":
            assert err <= row.estimated_error, (row.name, err, row.estimated_error)
    assert check.difference("Implicit", "finite differences") < 1e-5
    assert check.difference("OneStep", "Implicit") > 0.5  # one-step is poor for GD
    assert check.row("Implicit").estimated_error < 1e-5 * np.linalg.norm(exact)
