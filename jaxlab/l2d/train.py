"""Training an MLP scorer with a multi-expert L2D loss, as a `jaxlab.core.loop.Trainer`.

``l2d_trainer(hp, in_dim=d)`` is the training contract: ``init(key) -> loop.TrainState`` (MLP parameters, Adam
state, the run's frozen experts and its traced hyperparameters in ``extra``) and ``step(state, data) -> (state,
{"train_loss"})``, one step = one epoch of minibatch Adam over the train split. The data (``l2d_arrays``: the
three splits' x, y, and the test split's eta) is a jit argument, never a constant, so ``loop.run(trainer, key,
steps=hp.epochs, chunk=..., data=data, ckpt_dir=...)`` trains one run with chunks, checkpoints and resume.

The study's grid (seeds x J x hyperparameter points) is one jit: ``grid_fn`` vmaps ``run_one`` (the Trainer's
init, then ``loop.scan_steps`` of its step followed by the per-epoch evaluation) over seeds and J, with the
learning rate and the loss's own weight traced, so one compile serves every grid point. Experts are drawn once
per (seed, split) from keys kept in the state and frozen (the draw is repeated bit-exactly where it is used).
Per-epoch validation and test metrics come back stacked (``[E, ...]``), so the training budget (short / medium
/ best-on-validation) is read off one run. ``make_train``/``run_grid`` are the thin front doors of the
experiment: ``make_train(data, ...) -> train(key, num_experts, hparams=None) -> (params, metrics)``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxlab.core import loop, nets, sharding
from jaxlab.l2d import decision, experts, losses


MLP = nets.MLP          # ReLU hidden layers: ``x [B, d] -> logits [B, K + J_max]``
SPLITS = ("train", "validation", "test")


def theory_masses(acc_table, mask, labels, eta=None):
    """Population class masses at x: vanilla CE ``1/(1+A(x))`` and PiCCE ``1/(1+V(x))``, averaged over points.

    ``A(x) = sum_y eta_y(x) sum_j acc[j, y]``, ``V(x) = sum_y eta_y(x) (1 - prod_j (1 - acc[j, y]))``
    (experts independent given y). Without ``eta`` the one-hot label is used. Returns two scalars.
    """
    num_classes = acc_table.shape[1]
    w = jax.nn.one_hot(labels, num_classes) if eta is None else eta              # [N, K]
    acc = jnp.where(mask[:, None], acc_table, 0.0)
    a_y = acc.sum(0)                                                             # [K]
    v_y = 1.0 - jnp.prod(1.0 - acc, axis=0)                                      # [K]
    return jnp.mean(1.0 / (1.0 + w @ a_y)), jnp.mean(1.0 / (1.0 + w @ v_y))


class L2DHParams(NamedTuple):
    """Hyperparameters of one multi-expert L2D run (hashable: tuples, not lists or dicts).

    method: a key of `losses.LOSSES`; setting: an expert setting (`experts.SETTINGS`); num_classes: K;
    max_experts: J_max (logits are padded to K + J_max, inactive experts masked); hidden: MLP widths;
    batch_size: minibatch rows (the train split's remainder is dropped each epoch); epochs: steps of the trainer;
    expert_kwargs: ((name, value), ...) for `experts.expert_accuracy_table`.
    Traced per run (the grid's vmap axes and grid points; `init` stores them in the state, so changing them
    reuses the compiled step): num_experts: J; lr: Adam's learning rate; loss_kwargs: ((name, value), ...) of
    the loss's float weights (``alpha`` of the realizable surrogate, ``expert_weight`` of the decoupled one).
    """
    method: str = "picce_ce"
    setting: str = "specialist"
    num_classes: int = 10
    max_experts: int = 8
    num_experts: int = 8
    hidden: tuple = (256, 256)
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 30
    loss_kwargs: tuple = ()
    expert_kwargs: tuple = ()


def check_hparams(hp: L2DHParams) -> None:
    """ValueError naming the field when `hp` cannot build a trainer."""
    losses.get_loss(hp.method)
    if hp.setting not in experts.SETTINGS:
        raise ValueError(f"setting must be one of {experts.SETTINGS}, got {hp.setting!r}")
    if hp.batch_size < 1 or hp.epochs < 1:
        raise ValueError(f"batch_size and epochs must be >= 1, got {hp.batch_size}, {hp.epochs}")


def _static(hp: L2DHParams) -> L2DHParams:
    """`hp` without the traced fields: what a compiled step depends on."""
    return hp._replace(num_experts=0, lr=0.0, loss_kwargs=())


def l2d_arrays(data: dict[str, dict[str, Any]]) -> dict:
    """The trainer's data pytree: ``{split: {"x": f32 [N, d], "y": i32 [N]}}`` for the three splits, plus the
    test split's ``"eta"`` [N, K] when given (the population class masses use it)."""
    for s in SPLITS:
        if s not in data:
            raise ValueError(f"data must have a {s!r} split, got {sorted(data)}")
    out = {s: {"x": jnp.asarray(data[s]["x"]).astype(jnp.float32), "y": jnp.asarray(data[s]["y"]).astype(jnp.int32)}
           for s in SPLITS}
    if "eta" in data["test"]:
        out["test"]["eta"] = jnp.asarray(data["test"]["eta"])
    return out


def _model(hp: L2DHParams) -> nets.MLP:
    return MLP(hidden=tuple(hp.hidden), out=hp.num_classes + hp.max_experts)


def init_run(key, num_experts, point: dict, *, hp: L2DHParams, in_dim: int) -> loop.TrainState:
    """The state of one run: MLP parameters, Adam state, and in ``extra`` the experts' accuracy table
    ``[J_max, K]`` and mask ``[J_max]``, the keys of each split's frozen expert predictions ``[3, 2]`` and the
    traced hyperparameters ``point`` ({"lr": [], <loss weight>: []}). `num_experts` and `point` may be traced."""
    k_exp, k_init, k_loop = jax.random.split(key, 3)
    k_tab, k_tr, k_va, k_te = jax.random.split(k_exp, 4)
    table, mask = experts.expert_accuracy_table(k_tab, num_experts, setting=hp.setting, max_experts=hp.max_experts,
                                                num_classes=hp.num_classes, **dict(hp.expert_kwargs))
    params = _model(hp).init(k_init, jnp.zeros((1, in_dim), jnp.float32))
    extra = {"table": table, "mask": mask, "expert_keys": jnp.stack([k_tr, k_va, k_te]), "hp": dict(point)}
    return loop.TrainState(params=params, opt_state=optax.adam(point["lr"]).init(params),
                           step=jnp.zeros((), jnp.int32), key=k_loop, extra=extra)


def hparam_point(hp: L2DHParams, hparams: dict | None = None) -> dict:
    """The traced hyperparameters of a run: ``{"lr": f32, <loss weight>: f32}`` from `hp`, overridden by `hparams`."""
    point = {"lr": hp.lr, **dict(hp.loss_kwargs), **(hparams or {})}
    return {k: jnp.asarray(v, jnp.float32) for k, v in point.items()}


def _init(key, *, hp: L2DHParams, in_dim: int) -> loop.TrainState:
    return init_run(key, hp.num_experts, hparam_point(hp), hp=hp, in_dim=in_dim)


def expert_predictions(state: loop.TrainState, labels, split: str, *, hp: L2DHParams):
    """The frozen expert predictions ``[N, J_max]`` of `split` (the same draw every call)."""
    key = state.extra["expert_keys"][SPLITS.index(split)]
    return experts.sample_expert_predictions(key, labels, state.extra["table"], state.extra["mask"],
                                             num_classes=hp.num_classes)


def epoch_step(state: loop.TrainState, data: dict, *, hp: L2DHParams) -> tuple[loop.TrainState, dict]:
    """One epoch: a fresh permutation of the train split (key ``split(state.key, epochs)[step]``), minibatch
    Adam steps on the L2D loss, each minibatch split over the mesh's data axis (`sharding.constrain_batch`).
    Returns (state, {"train_loss": mean minibatch loss})."""
    x_tr, y_tr = data["train"]["x"], data["train"]["y"]
    n_train = x_tr.shape[0]
    n_batches = n_train // hp.batch_size
    if n_batches < 1:
        raise ValueError(f"batch_size must be <= the train size {n_train}, got {hp.batch_size}")
    model, loss_fn, mask = _model(hp), losses.get_loss(hp.method), state.extra["mask"]
    kw = dict(state.extra["hp"])
    opt = optax.adam(kw.pop("lr"))
    preds = expert_predictions(state, y_tr, "train", hp=hp)

    def batch_loss(p, xb, yb, mb):
        logits = model.apply(p, xb)
        return loss_fn(logits, yb, mb, num_classes=hp.num_classes, expert_mask=mask, **kw)

    def sgd_step(carry, idx):
        p, st = carry
        xb, yb, mb = sharding.constrain_batch((x_tr[idx], y_tr[idx], preds[idx]))
        loss, g = jax.value_and_grad(batch_loss)(p, xb, yb, mb)
        upd, st = opt.update(g, st, p)
        return (optax.apply_updates(p, upd), st), loss

    k = jax.random.split(state.key, hp.epochs)[state.step]
    perm = jax.random.permutation(k, n_train)[: n_batches * hp.batch_size].reshape(n_batches, hp.batch_size)
    (params, opt_state), batch_losses = jax.lax.scan(sgd_step, (state.params, state.opt_state), perm)
    state = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
    return state, {"train_loss": batch_losses.mean()}


def evaluate(state: loop.TrainState, data: dict, *, hp: L2DHParams) -> dict:
    """``{"val"|"test": decision.l2d_metrics(...)}`` of ``state.params`` with each split's frozen experts
    (``expert_accuracy`` is NaN for inactive experts, ``defer_to_best``/``defer_regret`` without deferrals)."""
    out = {}
    for name, split in (("val", "validation"), ("test", "test")):
        x, y = data[split]["x"], data[split]["y"]
        logits = _model(hp).apply(state.params, x)
        out[name] = decision.l2d_metrics(logits, y, expert_predictions(state, y, split, hp=hp),
                                         num_classes=hp.num_classes, kind=losses.SCORE_KIND[hp.method],
                                         expert_mask=state.extra["mask"], acc_table=state.extra["table"])
    return out


def epoch_eval_step(state: loop.TrainState, data: dict, *, hp: L2DHParams) -> tuple[loop.TrainState, dict]:
    """`epoch_step`, then `evaluate` of the new parameters: metrics ``{"train_loss", "val", "test"}``."""
    state, metrics = epoch_step(state, data, hp=hp)
    return state, {**metrics, **evaluate(state, data, hp=hp)}


def l2d_trainer(hp: L2DHParams, *, in_dim: int, with_eval: bool = False) -> loop.Trainer:
    """`loop.Trainer` of one L2D run on data of `in_dim` features: ``init(key)`` (J = ``hp.num_experts``, the
    hyperparameters of `hp`), ``step(state, data)`` = one epoch (`epoch_step`), data from `l2d_arrays`.
    ``with_eval``: the step also returns the nested per-epoch `evaluate` metrics (for `loop.scan_steps`; its NaN
    markers and per-expert vectors are not `loop.run` metrics: use `eval_scalars` as its ``eval_fn`` there)."""
    check_hparams(hp)
    step = epoch_eval_step if with_eval else epoch_step
    return loop.Trainer(init=loop.bind(_init, hp=hp, in_dim=int(in_dim)), step=loop.bind(step, hp=_static(hp)))


def eval_scalars(state: loop.TrainState, data: dict, *, hp: L2DHParams) -> dict:
    """The scalar metrics of `evaluate` as ``{"val/system_error": float, ...}`` (a `loop.run` ``eval_fn``)."""
    ev = jax.device_get(_jit_evaluate(state, data, hp=_static(hp)))
    return {f"{s}/{k}": float(v) for s, m in ev.items() for k, v in m.items() if getattr(v, "ndim", 1) == 0}


_jit_evaluate = jax.jit(evaluate, static_argnames=("hp",))


def run_one(key, num_experts, point: dict, data: dict, *, hp: L2DHParams, in_dim: int):
    """One whole run: `init_run`, `hp.epochs` steps of `epoch_eval_step` as one `loop.scan_steps`, then the
    population class masses -> (params, metrics) with per-epoch leaves ``[E, ...]`` (see `make_train`)."""
    state = init_run(key, num_experts, point, hp=hp, in_dim=in_dim)
    state, metrics = loop.scan_steps(state, data, step=loop.bind(epoch_eval_step, hp=_static(hp)), length=hp.epochs)
    te = data["test"]
    mv, mp = theory_masses(state.extra["table"], state.extra["mask"], te["y"], te.get("eta"))
    metrics["mass_vanilla_theory"], metrics["mass_picce_theory"] = mv, mp
    metrics["acc_table"] = state.extra["table"]
    return state.params, metrics


def make_train(data: dict[str, dict[str, Any]], *, method: str, setting: str, num_classes: int,
               max_experts: int, hidden: Sequence[int] = (256, 256), lr: float = 1e-3,
               batch_size: int = 128, epochs: int = 30, loss_kwargs: dict | None = None,
               expert_kwargs: dict | None = None) -> Callable:
    """Builds ``train(key, num_experts, hparams=None) -> (params, metrics)`` (`run_one` on these data).

    Args:
      data: ``{"train"|"validation"|"test": {"x": [N, d], "y": [N], optional "eta": [N, K]}}``.
      method: a key of :data:`jaxlab.l2d.losses.LOSSES`.
      setting: an expert setting (:data:`jaxlab.l2d.experts.SETTINGS`).
      lr, loss_kwargs: defaults; ``train``'s ``hparams`` (``{"lr": scalar, <loss kwarg>: scalar}``, values may
        be traced, so a grid over them needs no recompilation) override them.
    Returns:
      ``train`` (a ``functools.partial`` of `run_one`: ``train.keywords`` holds ``hp``, ``in_dim`` and the
      ``data`` of `l2d_arrays`); its ``metrics`` dict holds ``train_loss [E]`` and, for ``val``/``test``, every
      :func:`jaxlab.l2d.decision.l2d_metrics` entry stacked over epochs (``[E]`` or ``[E, J_max]``), plus
      the population class masses ``mass_vanilla_theory`` / ``mass_picce_theory`` (scalars).
    """
    hp = L2DHParams(method=method, setting=setting, num_classes=num_classes, max_experts=max_experts,
                    num_experts=max_experts, hidden=tuple(int(h) for h in hidden), lr=float(lr),
                    batch_size=int(batch_size), epochs=int(epochs),
                    loss_kwargs=tuple(sorted((loss_kwargs or {}).items())),
                    expert_kwargs=tuple(sorted((expert_kwargs or {}).items())))
    check_hparams(hp)
    arrays = l2d_arrays(data)
    n_train = arrays["train"]["x"].shape[0]
    if batch_size > n_train:
        raise ValueError(f"batch_size must be <= the train size {n_train}, got {batch_size}")
    return functools.partial(_train, hp=hp, in_dim=int(arrays["train"]["x"].shape[1]), data=arrays)


def _train(key, num_experts, hparams=None, *, hp: L2DHParams, in_dim: int, data: dict):
    return run_one(key, num_experts, hparam_point(hp, hparams), data, hp=_static(hp), in_dim=in_dim)


def _grid(keys, num_experts, point, data, *, hp: L2DHParams, in_dim: int):
    one = functools.partial(run_one, hp=hp, in_dim=in_dim)
    return jax.vmap(jax.vmap(one, in_axes=(0, None, None, None)), in_axes=(None, 0, None, None))(
        keys, num_experts, point, data)


_GRID = jax.jit(_grid, static_argnames=("hp", "in_dim"))


def grid_fn(train: Callable) -> Callable:
    """``jit(vmap(J) o vmap(seed))`` of ``train``'s `run_one`: ``f(keys [S, 2], num_experts [n_J], hparams, data)
    -> (params, metrics)`` with leading axes ``[n_J, S]``. ``hparams`` (a dict of f32 scalars, shared by every run)
    and ``data`` (`l2d_arrays`) are jit arguments, the static hyperparameters (hashed by value) its key in one jit
    cache (``f.func``): another grid point, or another ``train`` of equal hyperparameters, reuses the program."""
    kw = train.keywords
    return functools.partial(_GRID, hp=_static(kw["hp"]), in_dim=kw["in_dim"])


def run_grid(train: Callable, seeds: Sequence[int], num_experts: Sequence[int], hparams: dict | None = None,
             *, fn: Callable | None = None):
    """Runs ``train`` over ``num_experts x seeds`` in one jit (``fn``: a cached :func:`grid_fn` of ``train``).

    Returns ``(params, metrics)``, every leaf with leading axes ``[n_J, n_seeds]``."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    kw = train.keywords
    return (fn or grid_fn(train))(keys, jnp.asarray(num_experts, jnp.int32), hparam_point(kw["hp"], hparams),
                                  kw["data"])
