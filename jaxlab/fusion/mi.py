"""Neural mutual-information estimators: InfoNCE (van den Oord et al. 2018; capped at log N) and MINE
(Belghazi et al. 2018; Donsker-Varadhan bound with the moving-average gradient correction), trained on one
split and evaluated on a held-out split, with bootstrap intervals over held-out rows."""


import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.fusion.losses import dv_bound, infonce_bound, infonce_loss, mine_loss  # noqa: F401  (bounds re-exported)

class Critic(nn.Module):
    """Concatenation critic T(z, y) = MLP([z, y]). z: [..., dz], y: [..., dy] -> [...]."""

    hidden: int = 64

    @nn.compact
    def __call__(self, z, y):
        h = jnp.concatenate([z, y], axis=-1)
        h = nn.relu(nn.Dense(self.hidden)(h))
        h = nn.relu(nn.Dense(self.hidden)(h))
        return nn.Dense(1)(h)[..., 0]


class SeparableCritic(nn.Module):
    """Separable critic T(z, y) = g(z) . h(y) / sqrt(k) with MLP features (cheap: 2N network calls for N^2 pairs)."""

    hidden: int = 64
    features: int = 32

    def setup(self):
        mlp = lambda: nn.Sequential([nn.Dense(self.hidden), nn.relu, nn.Dense(self.features)])  # noqa: E731
        self.g, self.h = mlp(), mlp()

    def __call__(self, z, y):
        return jnp.sum(self.g(z) * self.h(y), axis=-1) / jnp.sqrt(self.features)

    def pairs(self, z, y):
        return self.g(z) @ self.h(y).T / jnp.sqrt(self.features)


def _pair_scores(critic, params, z_nd, y_nk):
    """S[i, j] = T(z_i, y_j). Returns [N, N]."""
    if isinstance(critic, SeparableCritic):
        return critic.apply(params, z_nd, y_nk, method=SeparableCritic.pairs)
    n = z_nd.shape[0]
    zz = jnp.broadcast_to(z_nd[:, None, :], (n, n, z_nd.shape[-1]))
    yy = jnp.broadcast_to(y_nk[None, :, :], (n, n, y_nk.shape[-1]))
    return critic.apply(params, zz, yy)


def _standardize(train, test):
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return (train - mu) / sd, (test - mu) / sd


def _check(z, y):
    z, y = np.asarray(z, np.float32), np.asarray(y, np.float32)
    if z.ndim == 1:
        z = z[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if z.ndim != 2 or y.ndim != 2 or z.shape[0] != y.shape[0]:
        raise ValueError(f"z and y must be [N, d] with the same N, got {z.shape} and {y.shape}")
    return z, y


def estimate_mi(key, z_train, y_train, z_test, y_test, *, method: str = "infonce", batch: int = 256,
                steps: int = 1500, lr: float = 1e-3, hidden: int = 64, ema: float = 0.99,
                critic: str = "separable",
                n_boot: int = 200, eval_batches: int = 20):
    """Trains a critic on (z_train, y_train) and evaluates the bound on held-out pairs.

    Args:
      z_*: [N, dz]; y_*: [N, dy] (or [N]); method: "infonce" or "mine"; critic: "separable" or "concat".
    Returns:
      dict(mi=point estimate in nats (mean over eval batches of size ``batch``), lo, hi = 95% bootstrap
      interval over held-out rows, cap=log(batch) for InfoNCE).
    """
    if method not in ("infonce", "mine"):
        raise ValueError(f"method must be 'infonce' or 'mine', got {method!r}")
    z_train, y_train = _check(z_train, y_train)
    z_test, y_test = _check(z_test, y_test)
    if z_train.shape[0] < batch:
        raise ValueError(f"need at least batch={batch} training rows, got {z_train.shape[0]}")
    if z_test.shape[0] < batch:
        raise ValueError(f"need at least batch={batch} held-out rows, got {z_test.shape[0]}")
    z_train, z_test = _standardize(z_train, z_test)
    y_train, y_test = _standardize(y_train, y_test)
    if critic not in ("separable", "concat"):
        raise ValueError(f"critic must be 'separable' or 'concat', got {critic!r}")
    critic = SeparableCritic(hidden) if critic == "separable" else Critic(hidden)
    k_init, k_train, k_eval, k_boot = jax.random.split(key, 4)
    params = critic.init(k_init, z_train[:2], y_train[:2])
    train, point_fn, boot_fn = _mi_fns(critic, method, batch, lr, ema, eval_batches)
    params = train(params, jnp.asarray(z_train), jnp.asarray(y_train), jax.random.split(k_train, steps))
    zs, ys = jnp.asarray(z_test), jnp.asarray(y_test)
    point = float(point_fn(params, zs, ys, k_eval))
    boots = np.asarray(boot_fn(params, zs, ys, jax.random.split(k_boot, n_boot))) if n_boot else np.array([point])
    out = {"mi": point, "lo": float(np.quantile(boots, 0.025)), "hi": float(np.quantile(boots, 0.975))}
    if method == "infonce":
        out["cap"] = float(np.log(batch))
    return out


@functools.lru_cache(maxsize=None)
def _mi_fns(critic, method: str, batch: int, lr: float, ema: float, eval_batches: int):
    """Jitted (train, point, bootstrap) functions, built once per estimator setting so that repeated calls with
    equal shapes (seeds, embeddings) reuse one compilation. The data are arguments, not baked-in constants."""
    tx = optax.adam(lr)
    bound = infonce_bound if method == "infonce" else dv_bound

    def loss_fn(params, z, y, ma):
        s = _pair_scores(critic, params, z, y)
        if method == "infonce":
            return infonce_loss(s), ma
        return mine_loss(s, ma, ema=ema)

    @jax.jit
    def train(params, zt, yt, keys):
        def step(carry, k):
            params, opt_state, ma = carry
            idx = jax.random.choice(k, zt.shape[0], (batch,), replace=False)
            (_, ma), g = jax.value_and_grad(loss_fn, has_aux=True)(params, zt[idx], yt[idx], ma)
            upd, opt_state = tx.update(g, opt_state, params)
            return (optax.apply_updates(params, upd), opt_state, ma), None

        (params, _, _), _ = jax.lax.scan(step, (params, tx.init(params), jnp.ones(())), keys)
        return params

    def batches_bound(params, zs, ys, rows, k):
        """Bound averaged over ``eval_batches`` random held-out batches drawn from ``rows``."""
        def one(kk):
            idx = rows[jax.random.choice(kk, rows.shape[0], (batch,), replace=False)]
            return bound(_pair_scores(critic, params, zs[idx], ys[idx]))
        return jnp.mean(jax.vmap(one)(jax.random.split(k, eval_batches)))

    @jax.jit
    def point(params, zs, ys, k):
        return batches_bound(params, zs, ys, jnp.arange(zs.shape[0]), k)

    @jax.jit
    def boot(params, zs, ys, keys):
        def one(kk):
            k_rows, k_b = kk, jax.random.fold_in(kk, 1)
            rows = jax.random.choice(k_rows, zs.shape[0], (zs.shape[0],), replace=True)
            return batches_bound(params, zs, ys, rows, k_b)
        return jax.lax.map(one, keys)

    return train, point, boot


def failed_seeds(*series) -> list[int]:
    """Seed indices where any series of per-seed MI estimates (floats) is negative: a negative MI estimate
    is a failed estimator, not a value."""
    return sorted({i for vals in series for i, v in enumerate(vals) if v < 0})


def failure_reason(*series) -> str | None:
    """The untestable reason of a claim comparing these per-seed MI series, or None when none failed."""
    failed = failed_seeds(*series)
    return f"the InfoNCE estimator failed (negative estimate) on seed indices {failed}" if failed else None


def mi_table_rows(mi: dict) -> list[dict]:
    """Report rows of {"variant/embedding/estimator": [per-seed {"mi", "lo", "hi"}]}: the mean ± std (ddof 1)
    over the seeds whose estimate is a value (failed, negative ones are counted in `failed_seeds` and left
    out), a 95% t interval of that mean over seeds, and every seed's own 95% bootstrap interval."""
    from jaxlab.core.summary import mean_interval, mean_std
    rows = []
    for k, rs in sorted(mi.items()):
        ok = [r["mi"] for r in rs if r["mi"] >= 0]
        m, s = mean_std(ok) if ok else (float("nan"), float("nan"))
        lo, hi = mean_interval(ok)
        variant, emb, method = k.split("/")
        rows.append({"variant": variant, "embedding": emb, "estimator": method, "mi_mean": m, "mi_std": s,
                     "n_seeds": len(ok), "failed_seeds": len(rs) - len(ok), "ci95_lo": lo, "ci95_hi": hi,
                     "seed_boot_ci95": [[round(r["lo"], 4), round(r["hi"], 4)] for r in rs]})
    return rows
