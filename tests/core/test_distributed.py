"""Two processes on localhost (jax.distributed, CPU collectives over gloo) run the same data-parallel
toy step as one process: the `data` mesh axis spans processes and the result is unchanged."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

from jaxlab.core import loop
from tests.core.toy_experiment import ToyHParams, make_trainer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORKER = """
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
from jaxlab.core import loop, sharding
sharding.initialize_distributed()
import numpy as np
from tests.core.toy_experiment import ToyHParams, make_trainer
assert jax.process_count() == 2 and jax.device_count() == 2
state, _ = loop.run(make_trainer(ToyHParams(lr=0.05, batch=16, dim=4)), jax.random.key(0), steps=20, chunk=10,
                    progress=False, mesh=sharding.make_mesh())
w = np.asarray(state[0].addressable_data(0))
print("W " + " ".join(repr(float(x)) for x in w), flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_single_process_step():
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(pid), PYTHONPATH=ROOT, XLA_FLAGS="")
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(np.array([float(x) for x in out.split("W ", 1)[1].split()]))
    one, _ = loop.run(make_trainer(ToyHParams(lr=0.05, batch=16, dim=4)), jax.random.key(0), steps=20, chunk=10,
                      progress=False)
    np.testing.assert_array_equal(outs[0], outs[1])                   # both processes hold the same replica
    np.testing.assert_allclose(outs[0], np.asarray(one[0]), rtol=1e-5, atol=1e-6)
