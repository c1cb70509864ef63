"""The root conftest's XLA mode: under JAXLAB_TEST_XLA=fast, unmarked tests run with most optimisations off
and tests marked xla_optimized run with them on (in-process and for subprocesses)."""

import os

import jax
import pytest

FAST = os.environ.get("JAXLAB_TEST_XLA", "optimized") == "fast"
USER_SET = os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS") not in (None, "", "0") and not FAST


@pytest.mark.xla_optimized
def test_a_marked_test_runs_with_the_optimisations_on():
    if USER_SET:
        pytest.skip("the user exported JAX_DISABLE_MOST_OPTIMIZATIONS")
    assert not jax.config.values["jax_disable_most_optimizations"]
    assert os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS") in (None, "", "0")


def test_an_unmarked_test_follows_the_mode():
    if FAST:
        assert jax.config.values["jax_disable_most_optimizations"]
        assert os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "1"
    elif not USER_SET:
        assert not jax.config.values["jax_disable_most_optimizations"]
