"""core.loop: one training contract (scan in chunks, host collect, resume, vmap over seeds, meshes)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import loop
from jaxlab.core.checkpoint import Checkpointer
from jaxlab.core.testing import run_with_fake_devices
from tests.core.toy_experiment import ToyHParams, make_trainer, update

HP = ToyHParams(lr=0.05, batch=16, dim=4)


def _manual(hp, key, steps):
    """The reference: a plain Python loop over the un-jitted step."""
    state = make_trainer(hp).init(key)
    losses = []
    for _ in range(steps):
        state, m = update(state, None, hp=hp)
        losses.append(float(m["loss"]))
    return state, losses


def test_scan_chunks_equal_a_python_loop_and_history_is_per_step():
    state, history = loop.run(make_trainer(HP), jax.random.key(0), steps=23, chunk=5, progress=False)
    ref, ref_losses = _manual(HP, jax.random.key(0), 23)
    np.testing.assert_allclose(np.asarray(state[0]), np.asarray(ref[0]), rtol=1e-5, atol=1e-6)
    assert history["step"] == list(range(1, 24)) and int(state[3]) == 23
    np.testing.assert_allclose(history["loss"], ref_losses, rtol=1e-4)
    assert history["loss"][-1] < 0.05 * history["loss"][0]        # it learns


def test_resume_is_bitwise_and_keeps_the_history(tmp_path):
    full, h_full = loop.run(make_trainer(HP), jax.random.key(1), steps=30, chunk=10, progress=False)
    ck = str(tmp_path / "ckpt")
    loop.run(make_trainer(HP), jax.random.key(1), steps=20, chunk=10, ckpt_dir=ck, progress=False)
    assert Checkpointer(ck, save_every=1).latest_step() == 20
    evals = []
    resumed, h = loop.run(make_trainer(HP), jax.random.key(99), steps=30, chunk=10, ckpt_dir=ck, progress=False,
                          eval_fn=lambda s: {"w0": s[0][0]}, log_fn=lambda step, rec: evals.append(step))
    np.testing.assert_array_equal(np.asarray(resumed[0]), np.asarray(full[0]))   # the key of the resumed call is unused
    assert h["loss"] == h_full["loss"] and h["step"] == list(range(1, 31))
    assert evals == [30] and h["eval"][-1]["step"] == 30


def test_interrupted_save_leaves_tmp_folder_that_does_not_block_resume(tmp_path):
    ck = tmp_path / "ckpt"
    loop.run(make_trainer(HP), jax.random.key(2), steps=10, chunk=10, ckpt_dir=str(ck), progress=False)
    (ck / "20.orbax-checkpoint-tmp-123").mkdir()                  # what a kill during an async save leaves
    (ck / "20.orbax-checkpoint-tmp-123" / "partial").write_text("x")
    state, _ = loop.run(make_trainer(HP), jax.random.key(2), steps=20, chunk=10, ckpt_dir=str(ck), progress=False)
    assert int(state[3]) == 20 and not (ck / "20.orbax-checkpoint-tmp-123").exists()
    assert sorted(p.name for p in ck.iterdir() if p.name.isdigit()) == ["10", "20"]


def test_collect_feeds_host_batches():
    def step(state, batch):
        return state + batch.sum(), {"got": batch.sum()}

    seen = []

    def collect(state, i):
        seen.append(i)
        return jnp.full((4,), float(i))

    trainer = loop.Trainer(init=lambda key: jnp.float32(0.0), step=step)
    state, history = loop.run(trainer, jax.random.key(0), steps=5, chunk=2, collect=collect, progress=False)
    assert seen == [0, 1, 2, 3, 4]
    assert float(state) == 4 * (0 + 1 + 2 + 3 + 4) and history["got"] == [0.0, 4.0, 8.0, 12.0, 16.0]


def test_vmap_seeds_equals_separate_runs():
    keys = jax.random.split(jax.random.key(3), 3)
    states, history = loop.run(loop.vmap_seeds(make_trainer(HP)), keys, steps=12, chunk=4, progress=False)
    assert np.asarray(history["loss"]).shape == (12, 3)
    for i in range(3):
        one, _ = loop.run(make_trainer(HP), keys[i], steps=12, chunk=4, progress=False)
        np.testing.assert_allclose(np.asarray(states[0][i]), np.asarray(one[0]), rtol=1e-5, atol=1e-6)


def test_non_finite_stops_at_once_naming_step_and_quantity(tmp_path):
    def step(state, _):
        nxt = state["x"] + 1.0
        return {"x": nxt}, {"loss": jnp.where(nxt >= 7, jnp.nan, nxt), "ok": nxt}

    trainer = loop.Trainer(init=lambda key: {"x": jnp.float32(0.0)}, step=step)
    ck = str(tmp_path / "ckpt")
    with pytest.raises(loop.NonFiniteError, match=r"'loss' at step 7"):
        loop.run(trainer, jax.random.key(0), steps=20, chunk=5, ckpt_dir=ck, progress=False)
    assert Checkpointer(ck, save_every=1).latest_step() == 5       # the NaN chunk was never saved


def test_equal_hyperparameters_reuse_one_compile_and_bad_arguments():
    loop.run(make_trainer(ToyHParams(lr=0.031)), jax.random.key(0), steps=3, chunk=3, progress=False)
    size = loop.scan_steps._cache_size()
    loop.run(make_trainer(ToyHParams(lr=0.031)), jax.random.key(1), steps=3, chunk=3, progress=False)
    assert loop.scan_steps._cache_size() == size                  # rebuilt trainer, same jit entry
    loop.run(make_trainer(ToyHParams(lr=0.032)), jax.random.key(1), steps=3, chunk=3, progress=False)
    assert loop.scan_steps._cache_size() == size + 1
    assert loop.bind(update, hp=HP) == loop.bind(update, hp=ToyHParams(lr=0.05, batch=16, dim=4))
    with pytest.raises(TypeError):
        loop.bind(update, hp=[1, 2])                              # unhashable hyperparameters
    with pytest.raises(ValueError, match="chunk"):
        loop.run(make_trainer(HP), jax.random.key(0), steps=3, chunk=0)
    with pytest.raises(ValueError, match="steps"):
        loop.run(make_trainer(HP), jax.random.key(0), steps=-1, chunk=1)


def _weak_init(key, *, w0):
    return {"w": w0.value + jax.random.normal(key, (3,)), "t": 0.0}          # "t": a weakly typed scalar


def _weak_step(state, _):
    return {"w": state["w"] * 0.5, "t": state["t"] + 1.0}, {"loss": jnp.sum(state["w"] ** 2)}


def test_a_resumed_run_reuses_the_compiled_chunk_and_init(tmp_path):
    """Orbax restores committed, strongly typed arrays; `Checkpointer.restore` gives them the fresh state's
    placement and weak types, so the resumed run compiles neither its chunk nor its init again (a trainer rebuilt
    around the same `Static` arrays is equal to the first one), and ends where the uninterrupted run ends."""
    w0 = jnp.arange(3.0)
    make = lambda: loop.Trainer(init=loop.bind(_weak_init, w0=loop.Static(w0)), step=_weak_step)  # noqa: E731
    assert make() == make() and loop.Static(w0) != loop.Static(jnp.arange(3.0))
    ck = str(tmp_path / "ckpt")
    loop.run(make(), jax.random.key(0), steps=2, chunk=2, ckpt_dir=ck, progress=False)
    sizes = loop.scan_steps._cache_size(), loop.jit_init._cache_size()
    fresh = loop.jit_init(jax.random.key(0), init=make().init)
    _, restored = Checkpointer(ck, save_every=1).restore(fresh)
    for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(restored)):
        assert (a.dtype, a.weak_type, a.committed) == (b.dtype, b.weak_type, b.committed)
    state, _ = loop.run(make(), jax.random.key(0), steps=4, chunk=2, ckpt_dir=ck, progress=False)
    assert (loop.scan_steps._cache_size(), loop.jit_init._cache_size()) == sizes
    ref, _ = loop.run(make(), jax.random.key(0), steps=4, chunk=4, progress=False)
    np.testing.assert_array_equal(np.asarray(state["w"]), np.asarray(ref["w"]))
    assert float(state["t"]) == 4.0 and state["t"].weak_type


def test_eight_fake_devices_give_the_same_parameters_as_one():
    code = """
import jax, numpy as np
from jaxlab.core import loop, sharding
from tests.core.toy_experiment import ToyHParams, make_trainer
assert jax.device_count() == 8
hp = ToyHParams(lr=0.05, batch=16, dim=4)
one, _ = loop.run(make_trainer(hp), jax.random.key(0), steps=20, chunk=10, progress=False)
mesh = sharding.make_mesh(8)
many, _ = loop.run(make_trainer(hp), jax.random.key(0), steps=20, chunk=10, progress=False, mesh=mesh)
np.testing.assert_allclose(np.asarray(many[0]), np.asarray(one[0]), rtol=1e-5, atol=1e-6)
print("OK", len(many[0].sharding.device_set))
"""
    proc = run_with_fake_devices(code, n=8)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK 8" in proc.stdout


def test_metrics_after_resume_hold_each_step_once(tmp_path):
    from jaxlab.core.metrics import MetricsWriter, read_jsonl
    path, ck = str(tmp_path / "metrics.jsonl"), str(tmp_path / "ckpt")
    with MetricsWriter(path) as w:
        loop.run(make_trainer(HP), jax.random.key(0), steps=10, chunk=5, ckpt_dir=ck, writer=w, tags={"seed": 0},
                 progress=False)
        w.write(15, seed=0, loss=1.0)                                # written, then killed before its save
        w.write(15, seed=1, loss=2.0)                                # another run's record stays
    with open(path, "a") as f:
        f.write('{"step": 20, "seed": 0, "lo')                       # a line cut mid-write
    with MetricsWriter(path) as w:
        loop.run(make_trainer(HP), jax.random.key(0), steps=20, chunk=5, ckpt_dir=ck, writer=w, tags={"seed": 0},
                 progress=False)
    rows = read_jsonl(path)
    assert [r["step"] for r in rows if r["seed"] == 0] == [5, 10, 15, 20]
    assert [r["step"] for r in rows if r["seed"] == 1] == [15]
    assert os.listdir(tmp_path / "tb")                               # TensorBoard events beside the JSONL


def test_sigkill_during_an_async_save_then_resume_is_bitwise(tmp_path):
    """Issue 20 item 1: a real SIGKILL while an asynchronous save is in flight (the process kills itself right
    after `maybe_save` returned for step 20, before orbax finalised it). The same call then resumes from the
    last complete checkpoint (10 or 20), never refuses, and ends bitwise equal to an uninterrupted run."""
    import signal
    import subprocess
    import sys
    ck = tmp_path / "ckpt"
    code = f"""
import os, signal, jax
from jaxlab.core import loop
from tests.core.toy_experiment import ToyHParams, make_trainer
def die(step, record):
    if step == 20:
        os.kill(os.getpid(), signal.SIGKILL)
loop.run(make_trainer(ToyHParams(lr=0.05, batch=16, dim=4)), jax.random.key(3), steps=40, chunk=10,
         ckpt_dir={str(ck)!r}, log_fn=die, progress=False)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert Checkpointer(str(ck), save_every=1).latest_step() in (10, 20)
    reference, ref_hist = loop.run(make_trainer(HP), jax.random.key(3), steps=40, chunk=10, progress=False)
    state, hist = loop.run(make_trainer(HP), jax.random.key(3), steps=40, chunk=10, ckpt_dir=str(ck),
                           progress=False)
    np.testing.assert_array_equal(np.asarray(state[0]), np.asarray(reference[0]))
    assert hist["step"] == ref_hist["step"] and not any(".orbax-checkpoint-tmp" in p.name for p in ck.iterdir())


def _data_trainer():
    """A trainer whose step reads its data argument: state = (w, step); step i moves w toward data[i % 4]."""
    def init(key):
        return (jnp.zeros(()), jnp.zeros((), jnp.int32))

    def step(state, data):
        w, i = state
        w = w + 0.5 * (data[i % data.shape[0]] - w)
        return (w, i + 1), {"loss": (w - data.mean()) ** 2}
    return loop.Trainer(init, step)


def test_data_eval_cadence_early_stop_and_resume_after_a_stop(tmp_path):
    """`data` reaches every step as a jit argument; eval runs at multiples of eval_every and at the end;
    stop_fn ends training after the chunk whose eval hits the target, and a resumed run does not train on."""
    data = jnp.asarray([1.0, 2.0, 3.0, 4.0])
    state, h = loop.run(_data_trainer(), jax.random.key(0), steps=12, chunk=2, data=data, progress=False,
                        eval_fn=lambda s: {"i": float(s[1])}, eval_every=4)
    w = 0.0
    for i in range(12):                                      # the same recursion by hand
        w = w + 0.5 * (float(data[i % 4]) - w)
    assert float(state[0]) == pytest.approx(w, rel=1e-6)
    assert [e["step"] for e in h["eval"]] == [4, 8, 12] and h["stopped_early"] is False
    # a different data array changes the result without a recompile of a constant
    state2, _ = loop.run(_data_trainer(), jax.random.key(0), steps=12, chunk=2, data=data * 2, progress=False)
    assert float(state2[0]) == pytest.approx(2 * w, rel=1e-6)
    ck = str(tmp_path / "ck")
    seen = []
    stop = lambda ev: ev["i"] >= 6                          # first true at the eval after step 6
    state, h = loop.run(_data_trainer(), jax.random.key(0), steps=20, chunk=3, data=data, progress=False,
                        eval_fn=lambda s: {"i": float(s[1])}, stop_fn=stop, ckpt_dir=ck,
                        check_state=lambda s, i: seen.append(i))
    assert int(state[1]) == 6 and h["stopped_early"] is True and h["step"][-1] == 6 and seen == [3, 6]
    again, h2 = loop.run(_data_trainer(), jax.random.key(0), steps=20, chunk=3, data=data, progress=False,
                         eval_fn=lambda s: {"i": float(s[1])}, stop_fn=stop, ckpt_dir=ck)
    assert int(again[1]) == 6 and h2["stopped_early"] is True and len(h2["step"]) == 6
    with pytest.raises(ValueError, match="eval_every"):
        loop.run(_data_trainer(), jax.random.key(0), steps=2, chunk=1, data=data, eval_every=0, progress=False)


def test_eval_at_start_and_a_log_line_per_step():
    data = jnp.asarray([1.0, 2.0, 3.0, 4.0])
    lines = []
    _, h = loop.run(_data_trainer(), jax.random.key(0), steps=5, chunk=2, data=data, progress=False,
                    eval_fn=lambda s: {"i": float(s[1])}, eval_at_start=True,
                    step_log_fn=lambda step, m: lines.append((step, float(m["loss"]))))
    assert [e["step"] for e in h["eval"]] == [0, 2, 4, 5] and h["eval"][0]["i"] == 0.0
    assert [s for s, _ in lines] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([x for _, x in lines], h["loss"], rtol=0)


def test_chunk_step_key_reproduces_a_loop_that_splits_one_key_per_chunk():
    """Update i of chunk c draws split(fold_in(key, c), n_c)[i]: n_c = chunk, and the shorter last chunk's own
    length when `total` is given; without `total` every chunk is full."""
    key = jax.random.PRNGKey(7)
    total, chunk = 7, 3
    want = [k for c, n in enumerate((3, 3, 1)) for k in jax.random.split(jax.random.fold_in(key, c), n)]
    got = jax.jit(jax.vmap(lambda s: loop.chunk_step_key(key, s, chunk=chunk, total=total)))(jnp.arange(total))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jnp.stack(want)))
    full = [loop.chunk_step_key(key, s, chunk=chunk) for s in range(6)]
    np.testing.assert_array_equal(np.asarray(jnp.stack(full)), np.asarray(jnp.stack(want[:6])))
