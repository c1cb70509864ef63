"""Data-parallel steps on 8 fake CPU devices match one device (run in a separate process)."""

import json

import jax
import numpy as np
import pytest

from jaxlab.core import sharding
from jaxlab.core.testing import run_with_fake_devices

_CODE = r'''
import json
import jax, jax.numpy as jnp, numpy as np, optax
from jaxlab.core import sharding

assert jax.device_count() == 8, jax.device_count()
opt = optax.adam(0.05)

def loss_fn(params, batch):
    pred = batch["x"] @ params["w"] + params["b"]
    return jnp.mean((pred - batch["y"]) ** 2)

def step(state, batch):
    params, opt_state = state
    loss, g = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = opt.update(g, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

def local_step(state, batch):  # shard_map flavour: local shard, explicit gradient mean
    params, opt_state = state
    loss, g = jax.value_and_grad(loss_fn)(params, batch)
    g = sharding.pmean_grads(g)
    updates, opt_state = opt.update(g, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), jax.lax.pmean(loss, "data")

key = jax.random.key(0)
x = jax.random.normal(key, (64, 5))
y = x @ jnp.arange(1.0, 6.0) + 0.3
batch = {"x": x, "y": y}
params = {"w": jnp.zeros(5), "b": jnp.zeros(())}
state0 = (params, opt.init(params))

single = jax.jit(step)
mesh = sharding.make_mesh(8)
dp = sharding.data_parallel_step(step, mesh)
sm = sharding.shard_map_step(local_step, mesh)
s1 = s8 = s9 = state0
b8 = sharding.shard_batch(batch, mesh)
for _ in range(20):
    s1, l1 = single(s1, batch)
    s8, l8 = dp(s8, b8)
    s9, l9 = sm(s9, b8)
out = {
  "w1": np.asarray(s1[0]["w"]).tolist(), "w8": np.asarray(s8[0]["w"]).tolist(), "w9": np.asarray(s9[0]["w"]).tolist(),
  "l1": float(l1), "l8": float(l8), "l9": float(l9),
  "nshards": len(b8["x"].addressable_shards), "mesh": dict(mesh.shape),
}
placed = sharding.shard_rows({"rows": x, "key": jax.random.key_data(key), "scalar": np.float32(1.0)}, mesh)
out["rows_spec"] = [str(placed[k].sharding.spec) for k in ("rows", "key", "scalar")]
out["rows_equal"] = bool(np.array_equal(np.asarray(placed["rows"]), np.asarray(x)))
try:
    dp(s8, {"x": x[:63], "y": y[:63]})
    out["bad_batch_error"] = ""
except ValueError as e:
    out["bad_batch_error"] = str(e)
print(json.dumps(out))
'''


def test_data_parallel_on_8_fake_devices_matches_one_device():
    proc = run_with_fake_devices(_CODE, n=8, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mesh"] == {"data": 8} and out["nshards"] == 8
    np.testing.assert_allclose(out["w8"], out["w1"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["w9"], out["w1"], rtol=1e-5, atol=1e-6)
    assert abs(out["l8"] - out["l1"]) < 1e-4 and abs(out["l9"] - out["l1"]) < 1e-4
    assert out["w1"][0] != 0.0  # it trained
    assert "divisible by 8" in out["bad_batch_error"]
    # shard_rows: rows split over the 8 devices, a PRNG key ([2]) and a scalar replicated, values unchanged
    assert out["rows_spec"] == ["P('data',)", "P()", "P()"] and out["rows_equal"]


def test_make_mesh_rejects_too_many_devices():
    with pytest.raises(ValueError, match="n_devices"):
        sharding.make_mesh(jax.device_count() + 1)
