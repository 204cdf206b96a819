"""A deep equilibrium (DEQ) classifier on scikit-learn's digits, trained in three modes.

The layer is the fixed point z* = relu(W z* + U x + b) (Bai, Kolter & Koltun, "Deep equilibrium
models", NeurIPS 2019), read out by logits = A z* + c. W = s·V/‖V‖_F with s = 0.9 keeps
‖W‖₂ ≤ ‖W‖_F = 0.9, and relu is 1-Lipschitz, so z ↦ relu(Wz + Ux + b) is a contraction with
constant ≤ 0.9 for every parameter value: the forward solve (Picard) always converges and
I − ∂_z F is always invertible, so implicit differentiation is well posed. The relu is
`iterdiff.nonsmooth.relu`: its derivative at the kink is an explicit selection (relu'(0) = 0),
so backpropagation returns an element of a conservative Jacobian (docs/nonsmooth.md).

Modes compared: `Implicit()` (implicit function theorem, GMRES), `OneStep()` (Jacobian-free
backpropagation: the last application of F only; Fung et al., AAAI 2022) and `Unrolled()`
(backpropagation through every iteration).

Plain JAX rather than equinox: the model is three arrays and a bias per layer, a dict of
arrays is a pytree that `fixed_point`, `jax.grad` and optax take as it is, and the layer is
one line; equinox's Module machinery (filtering, static fields) would add nothing here.

Run: ``python examples/deq_digits.py`` (full run, the numbers in examples/RESULTS.md), or
``python examples/deq_digits.py --quick`` (the test-sized run).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import iterdiff as itd

MODES = {"Implicit": itd.Implicit(), "OneStep": itd.OneStep(), "Unrolled": itd.Unrolled()}
SCALE = 0.9  # ‖W‖₂ ≤ SCALE: the contraction constant of the layer


def load_digits_split(seed: int = 0, dtype=None):
    """Digits (8×8 images, 10 classes) scaled to [0, 1], split 75% / 25% (stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    dtype = dtype or jnp.result_type(float)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(dtype)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    return X_tr, y_tr.astype(np.int32), X_te, y_te.astype(np.int32)


def init_params(key, n_in: int, hidden: int, n_out: int, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "V": jax.random.normal(k1, (hidden, hidden), dtype) / np.sqrt(hidden),
        "U": jax.random.normal(k2, (hidden, n_in), dtype) / np.sqrt(n_in),
        "b": jnp.zeros(hidden, dtype),
        "A": jax.random.normal(k3, (n_out, hidden), dtype) / np.sqrt(hidden),
        "c": jnp.zeros(n_out, dtype),
    }


def layer_weight(params):
    """W = SCALE·V/‖V‖_F, so that ‖W‖₂ ≤ SCALE."""
    V = params["V"]
    return SCALE * V / jnp.linalg.norm(V)


def layer_map(z, params, x):
    """F(z, θ) = relu(z Wᵀ + x Uᵀ + b) for a batch z (B, hidden), x (B, n_in)."""
    W = layer_weight(params)
    return itd.nonsmooth.relu(z @ W.T + x @ params["U"].T + params["b"])


def forward(params, x, mode, tol, max_steps=200):
    """Logits and the fixed-point solve of a batch."""
    z0 = jnp.zeros((x.shape[0], params["b"].shape[0]), x.dtype)
    sol = itd.fixed_point(
        lambda z, p: layer_map(z, p, x), z0, params, mode=mode, tol=tol, max_steps=max_steps
    )
    return sol.value @ params["A"].T + params["c"], sol


def loss_fn(params, x, y, mode, tol):
    logits, sol = forward(params, x, mode, tol)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, sol.steps


def make_step(optimizer, mode, tol):
    @jax.jit
    def step(params, opt_state, x, y):
        (loss, steps), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, mode, tol)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, steps

    return step


def accuracy(params, X, y, tol):
    logits, _ = jax.jit(lambda p, x: forward(p, x, itd.Implicit(), tol))(params, X)
    return float(jnp.mean(jnp.argmax(logits, axis=1) == y))


def contraction_bound(params) -> float:
    """‖W‖₂, a Lipschitz constant of z ↦ F(z, θ) (relu is 1-Lipschitz)."""
    return float(jnp.linalg.norm(layer_weight(params), 2))


def measured_contraction(params, x, tol=1e-5):
    """The trust diagnostics on the trained layer: ‖∂_zF‖₂ and the spectral radius at the fixed
    point z* of a batch x (`iterdiff.diagnostics.contraction`, matrix-free). With relu's
    selection at z*, ∂_zF = diag(relu′)·W per sample, so both are ≤ ‖W‖₂ ≤ SCALE."""
    _, sol = forward(params, x, itd.Implicit(), tol)
    with jax.numpy_dtype_promotion("standard"):
        c = itd.diagnostics.contraction(
            lambda z, p: layer_map(z, p, x), sol.value, params, krylov_dim=40
        )
    return {"operator_norm": float(c.operator_norm), "spectral_radius": float(c.spectral_radius)}


def train(mode_name, *, hidden=64, epochs=30, batch=128, lr=1e-2, tol=1e-5, seed=0, n_train=None):
    """Train one DEQ; returns a dict of test accuracy, time per epoch (first, compiling, epoch
    excluded) and fixed-point iterations per batch (mean over the last epoch)."""
    X_tr, y_tr, X_te, y_te = load_digits_split(seed)
    if n_train is not None:
        X_tr, y_tr = X_tr[:n_train], y_tr[:n_train]
    dtype = X_tr.dtype
    params = init_params(jax.random.key(seed), X_tr.shape[1], hidden, 10, dtype)
    optimizer = optax.adam(lr)
    opt_state = optimizer.init(params)
    step = make_step(optimizer, MODES[mode_name], tol)
    rng = np.random.default_rng(seed)
    n_batches = max(1, X_tr.shape[0] // batch)
    epoch_times, losses, steps_last = [], [], []
    for _ in range(epochs):
        order = rng.permutation(X_tr.shape[0])
        start = time.perf_counter()
        epoch_loss, epoch_steps = 0.0, []
        for k in range(n_batches):
            idx = order[k * batch : (k + 1) * batch]
            params, opt_state, loss, steps = step(params, opt_state, X_tr[idx], y_tr[idx])
            epoch_loss += float(loss) / n_batches
            epoch_steps.append(int(steps))
        epoch_times.append(time.perf_counter() - start)
        losses.append(epoch_loss)
        steps_last = epoch_steps
    timed = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    return {
        "mode": mode_name,
        "test_accuracy": accuracy(params, X_te, y_te, tol),
        "train_accuracy": accuracy(params, X_tr, y_tr, tol),
        "seconds_per_epoch": float(np.median(timed)),
        "iterations_per_batch": float(np.mean(steps_last)),
        "losses": losses,
        "contraction_bound": contraction_bound(params),
        "contraction_measured": measured_contraction(params, X_te[:64], tol),
        "params": params,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small, test-sized run")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args(argv)
    epochs, hidden = (2, 16) if args.quick else (args.epochs, args.hidden)
    print(
        f"DEQ on digits: hidden={hidden}, epochs={epochs}, ‖W‖₂ ≤ {SCALE}, dtype "
        f"{jnp.result_type(float)}"
    )
    print(
        "| mode | test accuracy | s / epoch | fixed-point iterations / batch | ‖W‖₂ "
        "| ‖∂_zF(z*)‖₂ | ρ(∂_zF(z*)) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in MODES:
        r = train(name, hidden=hidden, epochs=epochs)
        print(
            f"| {name} | {r['test_accuracy']:.3f} | {r['seconds_per_epoch']:.3f} | "
            f"{r['iterations_per_batch']:.1f} | {r['contraction_bound']:.3f} | "
            f"{r['contraction_measured']['operator_norm']:.3f} | "
            f"{r['contraction_measured']['spectral_radius']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
