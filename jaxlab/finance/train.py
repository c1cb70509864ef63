"""Forecasting with the adaptive dataflow: data preparation, the training loop and evaluation (paper A).

`make_train(config, prepared)` returns `train(key, method, log_path=None, monitor=False)`.

One training step runs three jitted pure functions so that every manipulated batch can be replayed
bit-for-bit from the provenance log:
  plan(theta, phi, x, key, policy, alpha)  -> p [B, Q], chosen pair q [B], strength lam_q [B], mask [B]
  augment(x, y, asset, day, q, lam_q, mask, key) -> (x~, y~, b)       (the replayable function)
  update(state, x~, y~, x, y, asset, day, xv, yv, key, do_hyper) -> state (theta Adam step and, when
        do_hyper, the planner's one-step hypergradient Adam step; eq. 13-18)
Methods (spec A4): original (alpha = 0), randaugment (uniform pair, lam = 1, alpha = .5),
trivialaugment (uniform pair, lam ~ U(0, 1), alpha = .5), adaaug (planner + hypergradient, alpha = .5),
ours (planner + hypergradient + Alg. 3 scheduler). The method is a traced argument: one compilation
serves all five.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.finance import data as data_lib
from jaxlab.finance import metrics as fin_metrics
from jaxlab.finance import ops
from jaxlab.finance import planner as planner_lib
from jaxlab.finance import provenance as prov
from jaxlab.finance.losses import forecast_loss
from jaxlab.finance.models import Planner, make_model, window_features, window_stats

METHODS = ("original", "randaugment", "trivialaugment", "adaaug", "ours", "ours_no_mixup")
_POLICY = {"original": 0, "randaugment": 1, "trivialaugment": 2, "adaaug": 3, "ours": 3, "ours_no_mixup": 3}
_NO_MIX = ("ours_no_mixup",)     # the paper's "w/o mixup" ablation: the planner over single ops only


class Prepared(NamedTuple):
    """Arrays for one chronological fold (all statistics fitted on the train rows only)."""
    x_tr: np.ndarray       # [N, L+1, 5]
    y_tr: np.ndarray       # [N]
    asset_tr: np.ndarray   # [N]
    day_tr: np.ndarray     # [N] index into panel_x_tr
    panel_x_tr: np.ndarray  # [D, S, L+1, 5]
    panel_y_tr: np.ndarray  # [D, S]
    x_va: np.ndarray
    y_va: np.ndarray
    x_te: np.ndarray       # [Dte * S, L+1, 5] (day-major, so reshape to [Dte, S])
    y_te: np.ndarray
    num_assets: int
    pvals: np.ndarray      # [S, S]
    mu: np.ndarray         # [S, 5]
    sd: np.ndarray         # [S, 5]
    fmu: np.ndarray        # [5]
    fsd: np.ndarray        # [5]
    ysd: float


def prepare(panel: data_lib.Panel, lookback: int, n_train: int, n_val_end: int, end: int) -> Prepared:
    """Windows for rows [0, end) split at n_train / n_val_end; labels never cross a boundary."""
    if not lookback + 20 < n_train < n_val_end < end <= panel.num_days:
        raise ValueError(f"n_train/n_val_end/end: expected {lookback + 20} < n_train < n_val_end < end <= "
                         f"{panel.num_days}, got {n_train}, {n_val_end}, {end}")
    tr = data_lib.make_windows(panel, lookback, 0, n_train)
    va = data_lib.make_windows(panel, lookback, n_train, n_val_end)
    te = data_lib.make_windows(panel, lookback, n_val_end, end)
    pvals = data_lib.cointegration_pvalues(np.log(panel.ohlcv[:, :, 3]), n_train)
    mu, sd = data_lib.fit_window_stats(tr.panel_x, tr.panel_x.shape[0])
    f = np.asarray(window_features(jnp.asarray(tr.x)))
    fmu, fsd = f.mean(axis=(0, 1)), f.std(axis=(0, 1)) + 1e-6
    return Prepared(tr.x, tr.y, tr.asset.astype(np.int32), tr.day.astype(np.int32), tr.panel_x, tr.panel_y,
                    va.x, va.y, te.x, te.y, panel.num_assets, pvals.astype(np.float32), mu, sd,
                    fmu.astype(np.float32), fsd.astype(np.float32), float(np.std(tr.y) + 1e-8))


class TrainState(NamedTuple):
    theta: dict
    opt_theta: tuple
    phi: dict
    opt_phi: tuple


class FoldStats(NamedTuple):
    """Train-fitted statistics of one fold, passed to the compiled functions as *arguments* (not baked-in
    constants), so one compilation serves every data set and fold with the same (B, S, L)."""
    pvals: jax.Array   # [S, S]
    mu: jax.Array      # [S, 5]
    sd: jax.Array      # [S, 5]
    fmu: jax.Array     # [5]
    fsd: jax.Array     # [5]
    ysd: jax.Array     # []


def fold_stats(prepared: Prepared) -> FoldStats:
    return FoldStats(*(jnp.asarray(a, jnp.float32) for a in (prepared.pvals, prepared.mu, prepared.sd,
                                                              prepared.fmu, prepared.fsd, prepared.ysd)))


@functools.lru_cache(maxsize=8)
def _augment_fn(st_all, k_targets, b_max, no_mix=False):
    """Jitted (x, y, asset, px_b, py_b, stats, q, lam, mask, key) -> (x~, y~, b); cached per options (every
    value the jitted function closes over is an argument of this cached builder)."""
    @jax.jit
    def augment(x, y, asset, px_b, py_b, stats, q, lam, mask, key):
        n = x.shape[0]
        keys = jax.random.split(key, n)
        bc = lambda a: jnp.broadcast_to(a, (n,) + a.shape)
        xa, ya, b = jax.vmap(lambda *a: ops.manipulate_pair(*a[:8], a[8], a[9], a[10], st_all=st_all,
                                                            k_targets=k_targets, b_max=b_max, no_mix=no_mix))(
            x, y, asset, px_b, py_b, bc(stats.pvals), bc(stats.mu), bc(stats.sd), q, lam, keys)
        return jnp.where(mask[:, None, None], xa, x), jnp.where(mask, ya, y), jnp.where(mask, b, -1)
    return augment


def make_augment(prepared: Prepared, *, st_all=False, k_targets=5, b_max=0.5, no_mix=False):
    """The replayable manipulation of a batch: (x [B,T,5], y [B], asset [B], day [B], q [B], lam [B],
    mask [B], key) -> (x~ [B,T,5], y~ [B], b [B]). Rows with mask False are returned unchanged.
    The cross-asset windows of each row's day are gathered on the host; the jitted core is shared."""
    core = _augment_fn(st_all, k_targets, b_max, no_mix)
    stats = fold_stats(prepared)
    px, py = prepared.panel_x_tr, prepared.panel_y_tr

    def augment(x, y, asset, day, q, lam, mask, key):
        day = np.asarray(day)
        return core(x, y, asset, px[day], py[day], stats, q, lam, mask, key)

    return augment


class StepHParams(NamedTuple):
    """Everything the compiled plan / update / predict functions close over (hashable: the cache key)."""
    model: str = "gru"
    planner_hidden: int = 64
    lr: float = 1e-3
    planner_lr: float = 1e-3
    eta: float = 1e-3
    gamma: float = 0.05
    st_all: bool = False
    k_targets: int = 5
    b_max: float = 0.5
    no_mix: bool = False

    @classmethod
    def from_config(cls, config) -> "StepHParams":
        return cls(str(config.model), int(config.planner_hidden), float(config.lr), float(config.planner_lr),
                   float(config.eta), float(config.gamma), bool(config.st_all), int(config.k_targets),
                   float(config.b_max))


@functools.lru_cache(maxsize=16)
def _step_fns(config: StepHParams):
    """Compiled plan / update / predict for one model + hyperparameters, shared across data sets and folds."""
    model = make_model(config.model)
    planner = Planner(num_pairs=ops.NUM_PAIRS, hidden=config.planner_hidden)
    tx = optax.adam(config.lr)
    tx_phi = optax.adam(config.planner_lr)

    def feats(x, stats):
        return (window_features(x) - stats.fmu) / stats.fsd

    def task_losses(theta, x, y, stats):
        pred, _ = model.apply(theta, feats(x, stats))
        return forecast_loss(pred, y, y_scale=stats.ysd, reduction="none")

    def policy(phi, theta, x, stats):
        _, h = model.apply(theta, feats(x, stats))
        return planner.apply(phi, jax.lax.stop_gradient(h), window_stats(x))

    @jax.jit
    def plan(theta, phi, x, key, policy_code, alpha, stats):
        k_lam, k_q, k_m = jax.random.split(key, 3)
        n = x.shape[0]
        p_pl, lam_pl = policy(phi, theta, x, stats)
        uni = jnp.full((n, ops.NUM_PAIRS), 1.0 / ops.NUM_PAIRS)
        p = jnp.where(policy_code == 3, p_pl, uni)
        lam_rand = jax.random.uniform(k_lam, (n, ops.NUM_PAIRS))
        lam = jnp.select([policy_code == 1, policy_code == 2], [jnp.ones_like(lam_rand), lam_rand], lam_pl)
        q = jax.random.categorical(k_q, jnp.log(p + 1e-12)).astype(jnp.int32)
        lam_q = jnp.take_along_axis(lam, q[:, None], 1)[:, 0]
        mask = (jax.random.uniform(k_m, (n,)) < alpha) & (policy_code > 0)
        return p, q, lam_q, mask

    def outer_grad(state, x, y, asset, px_b, py_b, xv, yv, key, stats):
        keys = jax.random.split(key, x.shape[0])

        def augment_all(lam_bq):
            def one(xi, yi, ai, pxi, pyi, li, ki):
                return ops.manipulate_all_pairs(xi, yi, ai, pxi, pyi, stats.pvals, stats.mu, stats.sd, li, ki,
                                                st_all=config.st_all, k_targets=config.k_targets,
                                                b_max=config.b_max, no_mix=config.no_mix)[:2]
            return jax.vmap(one)(x, y, asset, px_b, py_b, lam_bq, keys)

        return planner_lib.hypergradient(
            state.phi, state.theta, policy_fn=lambda ph: policy(ph, state.theta, x, stats),
            augment_all_fn=augment_all, task_losses_fn=lambda th, xx, yy: task_losses(th, xx, yy, stats),
            x_val=xv, y_val=yv, eta=config.eta, gamma=config.gamma)

    @jax.jit
    def update(state, x_t, y_t, x, y, asset, px_b, py_b, xv, yv, key, do_hyper, stats):
        loss, g = jax.value_and_grad(lambda th: jnp.mean(task_losses(th, x_t, y_t, stats)))(state.theta)
        upd, opt_theta = tx.update(g, state.opt_theta, state.theta)
        theta = optax.apply_updates(state.theta, upd)

        def hyper(_):
            gphi = outer_grad(state, x, y, asset, px_b, py_b, xv, yv, key, stats)
            u, o = tx_phi.update(gphi, state.opt_phi, state.phi)
            return optax.apply_updates(state.phi, u), o, optax.global_norm(gphi)

        def skip(_):
            return state.phi, state.opt_phi, jnp.zeros(())

        phi, opt_phi, gnorm = jax.lax.cond(do_hyper, hyper, skip, None)
        return TrainState(theta, opt_theta, phi, opt_phi), loss, gnorm

    @jax.jit
    def predict(theta, x, stats):
        return model.apply(theta, feats(x, stats))[0] * stats.ysd

    @jax.jit   # eager flax init re-traces the model for every unit (~1.2 s each in the quick grid)
    def init(key, x0, stats):
        k1, k2 = jax.random.split(key)
        theta = model.init(k1, feats(x0, stats))
        _, h = model.apply(theta, feats(x0, stats))
        phi = planner.init(k2, h, window_stats(x0))
        return TrainState(theta, tx.init(theta), phi, tx_phi.init(phi))

    return dict(plan=plan, update=update, predict=predict, init=init, outer_grad=outer_grad)


class TrainHParams(NamedTuple):
    """Typed hyperparameters of `make_train` (one default each; the quick experiment's values)."""
    model: str = "gru"
    batch_size: int = 64
    epochs: int = 3
    steps_per_epoch: int = 8
    lr: float = 1e-3
    planner_lr: float = 1e-3
    planner_hidden: int = 64
    eta: float = 1e-3
    gamma: float = 0.05
    freq: int = 3
    planner_start: int = 1
    tau: float = 5.0
    patience: int = 5
    val_batch: int = 128
    st_all: bool = False
    k_targets: int = 5
    b_max: float = 0.5
    fixed_alpha: float = 0.5

    @classmethod
    def from_config(cls, config) -> "TrainHParams":
        """From any mapping or attribute container holding these fields (an experiment's ConfigDict or dict)."""
        get = (lambda k: config[k]) if isinstance(config, dict) else (lambda k: getattr(config, k))
        return cls(**{k: type(d)(get(k)) for k, d in cls._field_defaults.items()})


def _predict_all(predict, theta, x, stats, chunk=2048) -> np.ndarray:
    """predict(theta, x [chunk, ...], stats) over x in fixed-size (padded) chunks, so the compiled predict is
    reused for every split and data set -> [len(x), ...]."""
    out = []
    for i in range(0, len(x), chunk):
        xb = x[i:i + chunk]
        n = len(xb)
        if n < chunk:
            xb = np.concatenate([xb, np.repeat(xb[-1:], chunk - n, 0)])
        out.append(np.asarray(predict(theta, jnp.asarray(xb), stats))[:n])
    return np.concatenate(out)


def evaluate_fold(predict_x, prepared: Prepared, *, test: bool = True) -> dict:
    """Validation MSE of predict_x(x) -> predictions, and (test=True) the test metrics: MSE, MAE, and with
    >= 2 assets the (rank) information coefficient, ICIR and the top-5 long-short Sharpe / drawdown. The
    training loop scores only validation per epoch and the test split once, for the best-validation params."""
    S = prepared.num_assets
    pv = predict_x(prepared.x_va)
    if not test:
        return {"val_mse": float(np.mean((pv - prepared.y_va) ** 2))}
    pt = predict_x(prepared.x_te)
    yt = prepared.y_te
    pd, yd = pt.reshape(-1, S), yt.reshape(-1, S)
    out = {"val_mse": float(np.mean((pv - prepared.y_va) ** 2)),
           "test_mse": float(np.mean((pt - yt) ** 2)), "test_mae": float(np.mean(np.abs(pt - yt)))}
    if S >= 2:
        ic = fin_metrics.information_coefficient(jnp.asarray(pd), jnp.asarray(yd))
        ric = fin_metrics.rank_information_coefficient(jnp.asarray(pd), jnp.asarray(yd))
        out["ic"], out["icir"] = (float(v) for v in fin_metrics.ic_summary(ic))
        out["rank_ic"] = float(jnp.mean(ric))
        ls = fin_metrics.long_short_returns(jnp.asarray(pd), jnp.asarray(yd), top_k=5, cost=1e-3)
        out["ls_sharpe"] = float(fin_metrics.sharpe_ratio(ls))
        out["ls_mdd"] = float(fin_metrics.max_drawdown(fin_metrics.equity_curve(ls)))
    return out


def _epoch_alpha(method: str, epoch: int, config: TrainHParams, reward: float) -> float:
    """The augmentation rate of an epoch: 0 (original), the scheduler's (ours), or the fixed rate."""
    if method == "original":
        return 0.0
    if method == "ours":
        return planner_lib.scheduler_alpha(epoch, tau=config.tau, reward=reward)
    return config.fixed_alpha


def _monitor_record(plan, augment, prepared: Prepared, state, code: int, mon_idx, rng, key) -> dict:
    """Quality of the current planner's augmentations of the monitor rows against validation rows."""
    from jaxlab.finance.monitor import quality_report
    xm = prepared.x_tr[mon_idx]
    pm, qm, lm, _ = plan(state.theta, state.phi, xm, jax.random.fold_in(key, 7), code, 1.0)
    xa, _, _ = augment(xm, prepared.y_tr[mon_idx], prepared.asset_tr[mon_idx], prepared.day_tr[mon_idx], qm, lm,
                       jnp.ones(len(mon_idx), bool), jax.random.fold_in(key, 8))
    vm = prepared.x_va[rng.choice(len(prepared.x_va), min(256, len(prepared.x_va)), replace=False)]
    rec = quality_report(np.asarray(xa), xm, vm, jax.random.fold_in(key, 9))
    rec["p_mean"] = [float(v) for v in np.asarray(pm).mean(0)]
    return rec


def _epoch_steps(plan, augment, update, prepared: Prepared, config: TrainHParams, state, key, rng, *, t: int,
                 epoch: int, steps: int, method: str, code: int, alpha: float, hyper_on: bool, log):
    """One epoch of `steps` minibatches (a host loop: plan -> augment -> provenance record -> update).
    Returns (state, key, t, per-step losses, hypergradient norms of the steps that took one)."""
    B, N = config.batch_size, len(prepared.x_tr)
    xv_all, yv_all = prepared.x_va, prepared.y_va
    perm = rng.permutation(N)
    losses, gnorms = [], []
    for s in range(steps):
        idx = perm[s * B:(s + 1) * B]
        vidx = rng.choice(len(xv_all), min(config.val_batch, len(xv_all)), replace=False)
        key, k_plan, k_aug, k_hyp = jax.random.split(key, 4)
        x, y = prepared.x_tr[idx], prepared.y_tr[idx]
        a, d = prepared.asset_tr[idx], prepared.day_tr[idx]
        p, q, lam_q, mask = plan(state.theta, state.phi, x, k_plan, code, alpha)
        if code > 0:
            x_t, y_t, b = augment(x, y, a, d, q, lam_q, mask, k_aug)
        else:
            x_t, y_t, b = jnp.asarray(x), jnp.asarray(y), -jnp.ones(len(idx), jnp.int32)
        if log is not None:
            log.write(prov.make_record(step=t, epoch=epoch, key=k_aug, alpha=alpha, p_bq=p, idx_b=idx,
                                       q_b=q, lam_b=lam_q, mask_b=mask, b_b=b, phi=state.phi,
                                       x_t=x_t, y_t=y_t, method=method))
        do_hyper = bool(hyper_on and t % config.freq == 0)
        state, loss, gn = update(state, x_t, y_t, x, y, a, d, xv_all[vidx], yv_all[vidx], k_hyp, do_hyper)
        losses.append(float(loss))
        if do_hyper:
            gnorms.append(float(gn))
        t += 1
    return state, key, t, losses, gnorms


def _bound_update(step_fns, px, py, stats):
    """The compiled update of `step_fns` with the fold's cross-asset panel gathered on the host per batch."""
    def update(state, x_t, y_t, x, y, asset, day, xv, yv, key, do_hyper):
        day = np.asarray(day)
        return step_fns["update"](state, x_t, y_t, x, y, asset, px[day], py[day], xv, yv, key, do_hyper, stats)
    return update


def _no_mix_fns(config: TrainHParams, prepared: Prepared, stats):
    """(augment, update) of the "w/o mixup" ablation: the mix-up step skipped (its own compile)."""
    nm = dict(st_all=config.st_all, k_targets=config.k_targets, b_max=config.b_max, no_mix=True)
    fns = _step_fns(StepHParams.from_config(config)._replace(no_mix=True))
    return make_augment(prepared, **nm), _bound_update(fns, prepared.panel_x_tr, prepared.panel_y_tr, stats)


def make_train(config: TrainHParams, prepared: Prepared):
    """`train(key, method, log_path=None, monitor=False)` for one fold (`prepared`).

    config: `TrainHParams` (an experiment converts its config once with `TrainHParams.from_config`; any other
    container is converted here, for old callers)."""
    if not isinstance(config, TrainHParams):
        config = TrainHParams.from_config(config)
    fns = _step_fns(StepHParams.from_config(config))
    stats = fold_stats(prepared)
    core_aug = _augment_fn(config.st_all, config.k_targets, config.b_max)
    augment = make_augment(prepared, st_all=config.st_all, k_targets=config.k_targets, b_max=config.b_max)
    px, py = prepared.panel_x_tr, prepared.panel_y_tr
    B = config.batch_size

    def plan(theta, phi, x, key, policy_code, alpha):
        return fns["plan"](theta, phi, x, key, policy_code, alpha, stats)

    update = _bound_update(fns, px, py, stats)

    def predict_all(theta, x, chunk=2048):
        return _predict_all(fns["predict"], theta, x, stats, chunk=chunk)

    def init(key):
        return fns["init"](key, jnp.asarray(prepared.x_tr[:2]), stats)

    def evaluate(theta, test=True):
        """Validation MSE, and (test=True) the test metrics (`evaluate_fold`)."""
        return evaluate_fold(lambda x: predict_all(theta, x), prepared, test=test)

    def train(key, method="ours", log_path=None, monitor=False, on_epoch=None):
        """Trains one seed. Returns dict(metrics of the best-validation epoch, history, state)."""
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        code = _POLICY[method]
        k_init, key = jax.random.split(key)
        state = init(k_init)
        seed = int(np.asarray(prov.key_data(key))[-1])
        rng = np.random.default_rng(seed)
        N = len(prepared.x_tr)
        steps = min(config.steps_per_epoch, max(N // B, 1))
        log = prov.ProvenanceLog(log_path) if log_path else None
        m_augment, m_update = (augment, update) if method not in _NO_MIX else _no_mix_fns(config, prepared, stats)
        best, best_theta, es, last_es, reward = np.inf, state.theta, 0, 0, 0.1
        history, t = [], 0
        mon_idx = rng.choice(N, min(256, N), replace=False)
        for epoch in range(config.epochs):
            alpha = _epoch_alpha(method, epoch, config, reward)
            hyper_on = code == 3 and epoch >= config.planner_start
            state, key, t, losses, gnorms = _epoch_steps(
                plan, m_augment, m_update, prepared, config, state, key, rng, t=t, epoch=epoch, steps=steps,
                method=method, code=code, alpha=alpha, hyper_on=hyper_on, log=log)
            ev = evaluate(state.theta, test=False)
            if ev["val_mse"] < best:                  # early stopping, min_delta 0
                best, best_theta, es = ev["val_mse"], state.theta, 0
            else:
                es += 1
            reward, last_es = planner_lib.scheduler_update(es, last_es)
            rec = {"epoch": epoch, "alpha": alpha, "train_loss": float(np.mean(losses)),
                   "hyper_grad_norm": float(np.mean(gnorms)) if gnorms else 0.0, **ev}
            if monitor and code > 0:
                rec.update(_monitor_record(plan, m_augment, prepared, state, code, mon_idx, rng, key))
            history.append(rec)
            if on_epoch is not None:
                on_epoch(rec)
            if es >= config.patience:
                break
        if log is not None:
            log.close()
        best_ev = evaluate(best_theta)
        return {"metrics": best_ev, "history": history, "state": state, "best_theta": best_theta}

    train.augment = augment
    train.plan = plan
    train.update = update
    train.init = init
    train.evaluate = evaluate
    train.stats = stats
    train.core_augment = core_aug
    return train
