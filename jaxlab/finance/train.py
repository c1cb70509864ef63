"""Forecasting with the adaptive dataflow: data preparation, the training loop and evaluation (paper A).

`make_train(config, prepared)` returns `train(key, method, log_path=None, monitor=False, on_epoch=None)`.

The trainer is a `jaxlab.core.loop.Trainer` (`dataflow_trainer`: `loop.TrainState` with params and opt_state
{"theta": forecaster, "phi": planner} and the PRNG key carried) run by `loop.run`, one chunk per epoch:
  collect(state, t)  (host step)  the NumPy minibatch and validation draws, then two jitted pure functions,
      plan(theta, phi, x, key, policy, alpha) -> p [B, Q], chosen pair q [B], strength lam_q [B], mask [B]
      augment(x, y, asset, day, q, lam_q, mask, key) -> (x~, y~, b)       (the replayable function)
    and the step's provenance record, so every manipulated batch can be replayed bit for bit from the log;
  step(state, batch)  (jitted)  theta's Adam step on (x~, y~) and, when do_hyper, the planner's one-step
    hypergradient Adam step (eq. 13-18);
  eval_fn at each epoch's end: validation MSE, early stopping (`stop_fn`), the Alg. 3 scheduler's reward,
    the epoch record (+ the quality monitor); `step_log_fn` gathers the epoch's step losses.
The epoch is host-driven (the minibatches come from a NumPy generator, the augmentation must be logged), so the
host step is `collect` rather than a scan; the per-epoch scheduler and early stopping live in `loop.run`'s hooks.
Methods (spec A4): original (alpha = 0), randaugment (uniform pair, lam = 1, alpha = .5),
trivialaugment (uniform pair, lam ~ U(0, 1), alpha = .5), adaaug (planner + hypergradient, alpha = .5),
ours (planner + hypergradient + Alg. 3 scheduler). The method is a traced argument: one compilation
serves all five ("ours_no_mixup", the "w/o mixup" ablation, has its own).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import loop
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
    """Compiled plan / predict and the traced update / init (inside the trainer's jitted step and init) for one
    model + hyperparameters, shared across data sets and folds."""
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

    def outer_grad(theta, phi, x, y, asset, px_b, py_b, xv, yv, key, stats):
        keys = jax.random.split(key, x.shape[0])

        def augment_all(lam_bq):
            def one(xi, yi, ai, pxi, pyi, li, ki):
                return ops.manipulate_all_pairs(xi, yi, ai, pxi, pyi, stats.pvals, stats.mu, stats.sd, li, ki,
                                                st_all=config.st_all, k_targets=config.k_targets,
                                                b_max=config.b_max, no_mix=config.no_mix)[:2]
            return jax.vmap(one)(x, y, asset, px_b, py_b, lam_bq, keys)

        return planner_lib.hypergradient(
            phi, theta, policy_fn=lambda ph: policy(ph, theta, x, stats),
            augment_all_fn=augment_all, task_losses_fn=lambda th, xx, yy: task_losses(th, xx, yy, stats),
            x_val=xv, y_val=yv, eta=config.eta, gamma=config.gamma)

    def update(params, opt_state, b, key):
        """theta's Adam step on (x~, y~), phi's hypergradient step when b["do_hyper"] -> (params, opt, loss, |g|)."""
        theta, phi = params["theta"], params["phi"]
        loss, g = jax.value_and_grad(lambda th: jnp.mean(task_losses(th, b["x_t"], b["y_t"], b["stats"])))(theta)
        upd, opt_theta = tx.update(g, opt_state["theta"], theta)
        theta_new = optax.apply_updates(theta, upd)

        def hyper(_):
            gphi = outer_grad(theta, phi, b["x"], b["y"], b["asset"], b["px"], b["py"], b["xv"], b["yv"], key,
                              b["stats"])
            u, o = tx_phi.update(gphi, opt_state["phi"], phi)
            return optax.apply_updates(phi, u), o, optax.global_norm(gphi)

        def skip(_):
            return phi, opt_state["phi"], jnp.zeros(())

        phi_new, opt_phi, gnorm = jax.lax.cond(b["do_hyper"], hyper, skip, None)
        return {"theta": theta_new, "phi": phi_new}, {"theta": opt_theta, "phi": opt_phi}, loss, gnorm

    @jax.jit
    def predict(theta, x, stats):
        return model.apply(theta, feats(x, stats))[0] * stats.ysd

    def init(key, x0, stats):
        """-> (params, opt_state) {"theta": forecaster, "phi": planner} (traced inside the trainer's init)."""
        k1, k2 = jax.random.split(key)
        theta = model.init(k1, feats(x0, stats))
        _, h = model.apply(theta, feats(x0, stats))
        phi = planner.init(k2, h, window_stats(x0))
        return {"theta": theta, "phi": phi}, {"theta": tx.init(theta), "phi": tx_phi.init(phi)}

    return dict(plan=plan, update=update, predict=predict, init=init, outer_grad=outer_grad)


def _zero_stats(x_shape) -> FoldStats:
    """Placeholder statistics for `_dataflow_init`: the initial parameters depend on the key and the shapes only."""
    f = x_shape[-1]
    return FoldStats(jnp.zeros((1, 1)), jnp.zeros((1, f)), jnp.ones((1, f)), jnp.zeros((f,)), jnp.ones((f,)),
                     jnp.ones(()))


def _dataflow_init(key, *, hp: StepHParams, x_shape: tuple) -> loop.TrainState:
    """`init(key)` of `dataflow_trainer`: the forecaster theta and the planner phi from the first half of
    split(key), the second half carried as the state's key."""
    k_init, key = jax.random.split(key)
    params, opt_state = _step_fns(hp)["init"](k_init, jnp.zeros(x_shape, jnp.float32), _zero_stats(x_shape))
    return loop.TrainState(params=params, opt_state=opt_state, step=jnp.zeros((), jnp.int32), key=key)


def _dataflow_step(state: loop.TrainState, b: dict, *, hp: StepHParams):
    """`step(state, b)` of `dataflow_trainer` on one collected batch b (`_dataflow_collect`): the key splits
    into (next key, k_plan, k_aug, k_hyp) exactly as the host step split it, then the update (eq. 13-18).
    Metrics: the task loss on (x~, y~), the hypergradient norm (0 when skipped) and `hyper` (taken or not)."""
    key, _, _, k_hyp = jax.random.split(state.key, 4)
    params, opt_state, loss, gnorm = _step_fns(hp)["update"](state.params, state.opt_state, b, k_hyp)
    new = state.replace(params=params, opt_state=opt_state, step=state.step + 1, key=key)
    return new, {"loss": loss, "hyper_grad_norm": gnorm, "hyper": b["do_hyper"]}


@functools.lru_cache(maxsize=16)
def dataflow_trainer(hp: StepHParams, x_shape: tuple) -> loop.Trainer:
    """`loop.Trainer` of the forecaster + planner: `init(key) -> loop.TrainState` (params and opt_state
    {"theta": forecaster, "phi": planner}, key carried) and the jitted update `step(state, b)` on a batch
    collected on the host (`_dataflow_collect`: minibatch, plan, the replayable augmentation, provenance).
    x_shape: (rows, L + 1, 5) of the windows the models are initialised on. Hashable by value: one compile per
    (hp, x_shape) serves every data set, fold and seed (the fold's statistics travel in the batch). Cached: `jax.jit`
    keeps a function's traces only while that function object lives, so every unit reuses one trainer."""
    return loop.Trainer(init=loop.bind(_dataflow_init, hp=hp, x_shape=tuple(x_shape)),
                        step=loop.bind(_dataflow_step, hp=hp))


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



class _Run(NamedTuple):
    """What the host hooks of one `train(key, method)` call share (no arrays that change during training)."""
    config: TrainHParams
    prepared: Prepared
    method: str
    code: int           # _POLICY[method]: 0 none, 1 uniform pair with lam = 1, 2 uniform pair and lam, 3 planner
    steps: int          # updates per epoch (one loop.run chunk)
    plan: Callable      # (theta, phi, x, key, policy_code, alpha) -> (p, q, lam_q, mask)
    augment: Callable   # the replayable manipulation (`make_augment`)
    evaluate: Callable  # (theta, test) -> metrics (`evaluate_fold`)
    stats: FoldStats


class _Epochs:
    """The per-epoch host state of one run, read and written by `loop.run`'s hooks: the NumPy generator that
    draws every minibatch, validation batch and monitor sample (in the order of the original host loop),
    the Alg. 3 scheduler (alpha, reward, early-stop counters), the best-validation theta, the step losses of
    the current epoch and the epoch records."""

    def __init__(self, rng: np.random.Generator, mon_idx: np.ndarray):
        self.rng, self.mon_idx = rng, mon_idx
        self.alpha, self.hyper_on, self.perm = 0.0, False, None
        self.best, self.best_theta, self.es, self.last_es, self.reward = np.inf, None, 0, 0, 0.1
        self.losses, self.gnorms, self.records = [], [], []


def _dataflow_collect(run: _Run, ep: _Epochs, log):
    """The host step of `loop.run` (`collect(state, t)`): at an epoch's first step, the epoch's alpha (the
    scheduler) and minibatch order; then step t's minibatch and validation batch, the plan, the replayable
    augmentation and its provenance record (before the update, with the planner that chose it)."""
    c, prep = run.config, run.prepared
    B, px, py = c.batch_size, prep.panel_x_tr, prep.panel_y_tr

    def collect(state: loop.TrainState, t: int) -> dict:
        epoch, s = divmod(t, run.steps)
        if t == 0:
            ep.best_theta = state.params["theta"]
        if s == 0:
            ep.alpha = _epoch_alpha(run.method, epoch, c, ep.reward)
            ep.hyper_on = run.code == 3 and epoch >= c.planner_start
            ep.perm = ep.rng.permutation(len(prep.x_tr))
        idx = ep.perm[s * B:(s + 1) * B]
        vidx = ep.rng.choice(len(prep.x_va), min(c.val_batch, len(prep.x_va)), replace=False)
        _, k_plan, k_aug, _ = jax.random.split(state.key, 4)
        x, y, a, d = prep.x_tr[idx], prep.y_tr[idx], prep.asset_tr[idx], prep.day_tr[idx]
        theta, phi = state.params["theta"], state.params["phi"]
        p, q, lam_q, mask = run.plan(theta, phi, x, k_plan, run.code, ep.alpha)
        if run.code > 0:
            x_t, y_t, b = run.augment(x, y, a, d, q, lam_q, mask, k_aug)
        else:
            x_t, y_t, b = jnp.asarray(x), jnp.asarray(y), -jnp.ones(len(idx), jnp.int32)
        if log is not None:
            log.write(prov.make_record(step=t, epoch=epoch, key=k_aug, alpha=ep.alpha, p_bq=p, idx_b=idx, q_b=q,
                                       lam_b=lam_q, mask_b=mask, b_b=b, phi=phi, x_t=x_t, y_t=y_t,
                                       method=run.method))
        return dict(x_t=x_t, y_t=y_t, x=x, y=y, asset=a, px=px[d], py=py[d], xv=prep.x_va[vidx],
                    yv=prep.y_va[vidx], do_hyper=np.bool_(ep.hyper_on and t % c.freq == 0), stats=run.stats)
    return collect


def _step_log(ep: _Epochs):
    """`step_log_fn` of `loop.run`: the epoch's per-step losses and the norms of the hypergradient steps taken."""
    def step_log(step: int, m: dict) -> None:
        ep.losses.append(float(m["loss"]))
        if bool(m["hyper"]):
            ep.gnorms.append(float(m["hyper_grad_norm"]))
    return step_log


def _monitor_record(plan, augment, prepared: Prepared, state: loop.TrainState, code: int, mon_idx, rng) -> dict:
    """Quality of the current planner's augmentations of the monitor rows against validation rows."""
    from jaxlab.finance.monitor import quality_report
    key = state.key
    xm = prepared.x_tr[mon_idx]
    pm, qm, lm, _ = plan(state.params["theta"], state.params["phi"], xm, jax.random.fold_in(key, 7), code, 1.0)
    xa, _, _ = augment(xm, prepared.y_tr[mon_idx], prepared.asset_tr[mon_idx], prepared.day_tr[mon_idx], qm, lm,
                       jnp.ones(len(mon_idx), bool), jax.random.fold_in(key, 8))
    vm = prepared.x_va[rng.choice(len(prepared.x_va), min(256, len(prepared.x_va)), replace=False)]
    rec = quality_report(np.asarray(xa), xm, vm, jax.random.fold_in(key, 9))
    rec["p_mean"] = [float(v) for v in np.asarray(pm).mean(0)]
    return rec


def _epoch_end(run: _Run, ep: _Epochs, *, monitor: bool, on_epoch):
    """`eval_fn` of `loop.run` after each epoch (one chunk): validation MSE, early stopping (min_delta 0) and the
    best theta, the scheduler's reward, the epoch record (+ the quality monitor) -> {"val_mse", "es"}."""
    def end(state: loop.TrainState) -> dict:
        theta = state.params["theta"]
        ev = run.evaluate(theta, test=False)
        if ev["val_mse"] < ep.best:
            ep.best, ep.best_theta, ep.es = ev["val_mse"], theta, 0
        else:
            ep.es += 1
        ep.reward, ep.last_es = planner_lib.scheduler_update(ep.es, ep.last_es)
        rec = {"epoch": len(ep.records), "alpha": ep.alpha, "train_loss": float(np.mean(ep.losses)),
               "hyper_grad_norm": float(np.mean(ep.gnorms)) if ep.gnorms else 0.0, **ev}
        ep.losses, ep.gnorms = [], []
        if monitor and run.code > 0:
            rec.update(_monitor_record(run.plan, run.augment, run.prepared, state, run.code, ep.mon_idx, ep.rng))
        ep.records.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        return {"val_mse": ev["val_mse"], "es": ep.es}
    return end


def _train_run(run: _Run, trainer: loop.Trainer, key, *, log_path, monitor: bool, on_epoch) -> dict:
    """train(key, ...) of `make_train` on `loop.run`: one chunk per epoch, the host step `collect`, the epoch's
    end as `eval_fn` and early stopping as `stop_fn`; then the test metrics of the best-validation theta."""
    c = run.config
    seed = int(np.asarray(prov.key_data(jax.random.split(key)[1]))[-1])   # the key the trainer's state carries
    rng = np.random.default_rng(seed)
    N = len(run.prepared.x_tr)
    ep = _Epochs(rng, rng.choice(N, min(256, N), replace=False))
    log = prov.ProvenanceLog(log_path) if log_path else None
    try:
        state, hist = loop.run(trainer, key, steps=c.epochs * run.steps, chunk=run.steps,
                               collect=_dataflow_collect(run, ep, log), step_log_fn=_step_log(ep),
                               eval_fn=_epoch_end(run, ep, monitor=monitor, on_epoch=on_epoch),
                               stop_fn=lambda ev: ep.es >= c.patience, progress=False)
    finally:
        if log is not None:
            log.close()
    return {"metrics": run.evaluate(ep.best_theta), "history": ep.records, "state": state,
            "best_theta": ep.best_theta, "steps": hist}


@dataclasses.dataclass(frozen=True, eq=False)   # a callable jax.jit can weak-reference (a NamedTuple cannot)
class DataflowTrain:
    """What `make_train` returns for one fold: callable as `train(key, method="ours", log_path=None,
    monitor=False, on_epoch=None)` -> dict(metrics of the best-validation epoch (`evaluate_fold`), history (one
    record per epoch), state (the final `loop.TrainState`), best_theta, steps (`loop.run`'s per-step history)),
    with the fold's pieces as typed fields: `trainer(method)` (the `loop.Trainer` a method runs), `init(key)`
    (its init, jitted), `augment` (the replayable manipulation), `plan`, `evaluate(theta, test=True)`, `stats`,
    `core_augment`."""
    run: Callable
    trainer: Callable
    init: Callable
    augment: Callable
    plan: Callable
    evaluate: Callable
    stats: Any
    core_augment: Callable

    def __call__(self, key, method="ours", log_path=None, monitor=False, on_epoch=None):
        return self.run(key, method, log_path=log_path, monitor=monitor, on_epoch=on_epoch)


def make_train(config: TrainHParams, prepared: Prepared) -> DataflowTrain:
    """The forecaster + planner training of one fold (`prepared`) -> `DataflowTrain` (call it with a key).

    config: `TrainHParams` (an experiment converts its config once with `TrainHParams.from_config`; anything
    else is a TypeError)."""
    if not isinstance(config, TrainHParams):
        raise TypeError(f"config: expected a TrainHParams (convert a config once with TrainHParams.from_config), "
                        f"got {type(config).__name__}")
    hp = StepHParams.from_config(config)
    fns = _step_fns(hp)
    stats = fold_stats(prepared)
    aug = dict(st_all=config.st_all, k_targets=config.k_targets, b_max=config.b_max)
    augment = make_augment(prepared, **aug)
    x_shape = (2,) + prepared.x_tr.shape[1:]

    def plan(theta, phi, x, key, policy_code, alpha):
        return fns["plan"](theta, phi, x, key, policy_code, alpha, stats)

    def evaluate(theta, test=True):
        """Validation MSE, and (test=True) the test metrics (`evaluate_fold`)."""
        return evaluate_fold(lambda x: _predict_all(fns["predict"], theta, x, stats), prepared, test=test)

    def trainer(method="ours"):
        return dataflow_trainer(hp._replace(no_mix=method in _NO_MIX), tuple(int(n) for n in x_shape))

    def train(key, method="ours", log_path=None, monitor=False, on_epoch=None):
        """Trains one seed. Returns dict(metrics of the best-validation epoch, history, state, best_theta, steps)."""
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        no_mix = method in _NO_MIX
        steps = min(config.steps_per_epoch, max(len(prepared.x_tr) // config.batch_size, 1))
        run = _Run(config, prepared, method, _POLICY[method], steps, plan,
                   make_augment(prepared, **aug, no_mix=True) if no_mix else augment, evaluate, stats)
        return _train_run(run, trainer(method), key, log_path=log_path, monitor=monitor, on_epoch=on_epoch)

    return DataflowTrain(run=train, trainer=trainer, init=lambda key: loop.jit_init(key, init=trainer().init),
                         augment=augment, plan=plan, evaluate=evaluate, stats=stats,
                         core_augment=_augment_fn(config.st_all, config.k_targets, config.b_max))
