import jax
import pytest

from jaxlab.lm import CharTokenizer, LMConfig, init


@pytest.fixture(scope="session")
def tok():
    return CharTokenizer()


@pytest.fixture(scope="session")
def cfg(tok):
    return LMConfig(vocab_size=tok.vocab_size, d_model=32, num_layers=2, num_heads=4, d_ff=64,
                    max_len=64, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)


@pytest.fixture(scope="session")
def params(cfg):
    return jax.jit(init, static_argnums=1)(jax.random.PRNGKey(0), cfg)


@pytest.fixture(scope="session")
def sharp_params(params):
    """Random params with the LM head scaled so logits are O(10) (realistic for a trained model)."""
    p = jax.tree_util.tree_map(lambda x: x, params)
    p["head"]["kernel"] = p["head"]["kernel"] * 150.0
    return p
