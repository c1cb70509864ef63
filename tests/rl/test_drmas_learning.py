"""Issue 14's learning check (slow): the multi-agent trainer raises held-out system avg@8 from the role-SFT
start on 3 seeds. It is one cell of the full study (`experiments/configs/drmas.py:full`, the study and mode
below, 32 prompts x G = 8, 40 steps, 256 held-out problems x 8 samples), run with the study's own code, so
its numbers equal that cell's records in results/full/drmas/cells/."""

import jax
import pytest

from experiments import drmas as E
from experiments.configs.drmas import STUDIES, get_config
from jaxlab.lm import CharTokenizer
from jaxlab.lm.train import model_config
from jaxlab.rl import multiagent as ma

STUDY, MODE = "stress_shared", "drmas"


@pytest.mark.slow
def test_drmas_raises_held_out_system_accuracy_from_the_sft_start_on_three_seeds():
    config = get_config("full")
    params, _ = E.warm_start(config)                    # cached role-SFT model (trained once if absent)
    tok = CharTokenizer()
    train_p, eval_p = E.problems(config)
    st = STUDIES[STUDY]
    hp = E.hparams(config, mode=MODE, regime=st["regime"], shared=st["shared"])
    build = lambda h: ma.make_train(h, cfg=model_config(config.sft, tok), init_params=params,
                                    train_problems=train_p, eval_problems=eval_p, tok=tok)
    k = config.rl.eval_samples
    s0 = build(E.hparams(config, mode="drmas", regime="faithful", shared=True))   # as the study's sft_start
    start = s0.eval_fn(s0.trainer.init(jax.random.PRNGKey(0)))[f"avg@{k}"]
    m = build(hp)
    finals = []
    for seed in (0, 1, 2):
        _, hist = ma.train(m, jax.random.PRNGKey(seed), steps=config.rl.steps, chunk=config.rl.chunk)
        finals.append(hist["eval"][-1][f"avg@{k}"])
    assert all(f > start for f in finals), (start, finals)
