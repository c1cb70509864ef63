"""Policy featurizing, the c off-by-one in rollouts, BC and GRPO plumbing on a tiny model (fast);
the BC learning check is in the slow suite."""

import jax
import numpy as np
import pytest

from jaxlab.agentocr import env as E
from jaxlab.agentocr import losses as L
from jaxlab.agentocr import policy as P
from jaxlab.agentocr import render as R
from jaxlab.agentocr import train as T
from jaxlab.core import loop

TINY = P.PolicyConfig(kind="ocr", d=16, layers=1, heads=2, mlp=32, stem=(), canvas_h=420)


def _assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def test_minibatch_layout_pads_and_covers_every_row_once():
    idx, valid = T.minibatch_layout(5, 2, 4, seed=0)
    perm = np.random.default_rng(0).permutation(5)
    assert sorted(idx[valid].tolist()) == list(range(5)) and idx[valid].tolist() == perm.tolist()
    assert valid.sum(1).tolist() == [2, 2, 1, 0] and idx[2, 1] == idx[2, 0]
    with pytest.raises(ValueError, match="n: expected 1..8"):
        T.minibatch_layout(9, 2, 4, seed=0)


def test_canvas_mask_crop_and_width_error():
    ink = np.full((60, 150), 200, np.uint8)
    canvas, mask, cropped = P.place_on_canvas(ink, TINY)
    assert canvas.shape == (420, 196) and not cropped and canvas[:60, :150].min() == 200 and canvas[60:].max() == 0
    assert mask.sum() == R.visual_tokens(60, 150) == 3 * 6
    _, mask, cropped = P.place_on_canvas(np.ones((500, 192), np.uint8), TINY)
    assert cropped and mask.sum() == 15 * 7
    assert P.place_on_canvas(np.zeros((0, 192), np.uint8), TINY)[1].sum() == 0
    with pytest.raises(ValueError, match="wider than the page"):
        P.place_on_canvas(np.zeros((28, 224), np.uint8), TINY)
    assert P.to_ink(np.full((2, 2, 3), 255, np.uint8)).max() == 0
    with pytest.raises(ValueError, match="actions"):
        P.encode_actions(["look"] * 21, TINY)


def test_featurize_compresses_history_by_previous_c():
    env, _ = E.expert_episode(E.EnvParams(variant="code"), 4)
    env.reset(4)
    for _ in range(3):
        env.step(E.expert_action(env))
    cache = R.SegmentCache()
    full = R.render_history_nocache(env.segments())
    for c in L.C_SET:
        f, info = P.featurize(env, cache, c, TINY)
        h, w = R.compressed_size(*full.shape[:2], c)
        assert info["visual"] == R.visual_tokens(h, w) == f["patch_mask"].sum()
        assert info["words"] == len(E.words(" ".join(env.segments())))


def test_rollout_off_by_one_bc_and_grpo_plumbing(tmp_path):
    ep = E.EnvParams(variant="shelf", horizon=5)
    data = T.bc_dataset(ep, TINY, range(6), c_seed=0)
    assert np.isin(data["c_img"], L.C_SET).all() and (data["act_mask"].sum(1) > data["act"]).all()
    trainer, collect = T.make_bc(TINY, T.BCHParams(lr=3e-3, batch=16), data)
    state, hist = loop.run(trainer, jax.random.PRNGKey(0), steps=40, chunk=40, collect=collect, progress=False)
    loss = np.asarray(hist["loss"])
    assert loss[-10:].mean() < loss[:5].mean()
    # the c chosen at step t is the c of the image at step t + 1 (and step 1 sees c = 1)
    ro = T.rollout(state.params, TINY, ep, [1, 2, 3, 4], sample_seed=0)
    by_ep = {}
    for s in ro["steps"]:
        by_ep.setdefault(s["episode"], []).append(s)
    for steps in by_ep.values():
        assert steps[0]["c_img"] == 1.0 and steps[0]["patch_mask"].sum() == 0
        for prev, cur in zip(steps, steps[1:]):
            assert cur["c_img"] == prev["c_value"]
    # its reward goes to step t: all-success group, only the lambda ln c_t term differs
    steps = [{**ro["steps"][0], "episode": 0, "c_value": c, "c": L.c_index(c)} for c in (1.0, 3.0)]
    out = T.grpo_samples([{"steps": steps, "ret": np.array([10.0]), "success": np.array([1.0])}],
                         iteration=0, hp=T.GRPOHParams())
    assert out["adv"][1] > 0 > out["adv"][0]
    hp = T.GRPOHParams(minibatch=16)
    st = T.grpo_init(state.params, hp)
    st2, m = T.grpo_iteration(st, 0, cfg=TINY, env_params=ep, hp=hp, task_seeds=[7, 8], group_size=2,
                              sample_seed=1)
    assert np.isfinite(m["loss"]) and 0.0 <= m["success"] <= 1.0
    st2, _ = T.grpo_update(st, out, cfg=TINY, hp=hp)           # non-zero advantages move the parameters
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(st.params), jax.tree.leaves(st2.params)))
    # all-padding minibatches are skipped: whatever fills one changes no bit of the state (one program, so bit
    # for bit), and the state (Adam moments and counts included) is the update without it. The latter compares
    # scans of different lengths, two XLA programs that need not round alike: to float32 round-off.
    step = loop.bind(T._grpo_iteration_step, cfg=TINY, hp=T._step_hp(hp))
    padded = T._iteration_batch(out, hp=hp, n_minibatches=2, seed=0)    # the shape grpo_trainer uses below
    st3, m3 = loop.jit_step(st, padded, step=step)
    empty = ~padded["valid"].any(0)                                     # [n_mb]: the all-padding minibatches
    assert empty.any() and not empty.all()
    refill = {k: np.where(empty.reshape((1, -1) + (1,) * (v.ndim - 2)), v[:, :1], v)
              if k in out and k != "valid" else v for k, v in padded.items()}   # real rows, still marked invalid
    _assert_trees_equal(st3, loop.jit_step(st, refill, step=step)[0])
    # The attention key bias has an exact gradient of 0 (it shifts every score of a softmax alike), so Adam turns
    # its round-off gradient into steps of up to lr: those leaves only within one step (cf. the 8-device test).
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(st2), jax.tree.leaves(st3)):
        noise_only = "['key']['bias']" in jax.tree_util.keystr(path)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=hp.lr if noise_only else 1e-7,
                                   err_msg=jax.tree_util.keystr(path))
    assert float(m3["loss"]) == pytest.approx(_["loss"], rel=1e-6)
    # GRPO on the training contract: loop.run over iterations = the host loop of grpo_iteration, bit for bit,
    # also when killed after iteration 1 and resumed from its checkpoint
    tasks = [[7, 8], [9, 10]]
    trainer, collect = T.grpo_trainer(state.params, TINY, ep, hp, task_seeds=tasks, group_size=2, sample_seed=3)
    ref = T.grpo_init(state.params, hp)
    for i in range(2):
        ref, mi = T.grpo_iteration(ref, i, cfg=TINY, env_params=ep, hp=hp, task_seeds=tasks[i], group_size=2,
                                   sample_seed=3 + i)
    ckpt = str(tmp_path / "grpo")
    loop.run(trainer, jax.random.PRNGKey(0), steps=1, chunk=1, collect=collect, ckpt_dir=ckpt, progress=False)
    res, hist = loop.run(trainer, jax.random.PRNGKey(0), steps=2, chunk=1, collect=collect, ckpt_dir=ckpt,
                         progress=False)
    _assert_trees_equal(ref, res)
    assert hist["step"] == [1, 2] and hist["success"][-1] == mi["success"]
    with pytest.raises(ValueError, match="task_seeds"):
        T.grpo_trainer(state.params, TINY, ep, hp, task_seeds=[7, 8], group_size=2, sample_seed=3)
    # evaluation temperature: a tiny temperature acts like greedy; a non-positive one is an error
    g = T.rollout(state.params, TINY, ep, [1, 2, 3], greedy=True)
    cold = T.rollout(state.params, TINY, ep, [1, 2, 3], sample_seed=5, temperature=1e-6)
    assert [s["act"] for s in g["steps"]] == [s["act"] for s in cold["steps"]]
    with pytest.raises(ValueError, match="temperature"):
        T.rollout(state.params, TINY, ep, [1], temperature=0.0)
