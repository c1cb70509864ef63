"""Config for experiments/lm_sft.py: SFT of the shared tiny reasoning LM (jaxlab.lm).

quick: a ~0.2M-parameter model on one-digit addition, two-digit add/sub and two-digit x one-digit
       (about two minutes on 2 cores).
full:  the ~0.8M model (d=128, L=4) on all four families the papers use, 3 seeds.
Knobs the later papers use: optim.steps / train.target_acc (stop SFT early), data.direct_frac
(how much direct-answer data the non-thinking mode sees), data.weights (task mix).
"""

import ml_collections

from jaxlab.core.config import check_size


def get_config(size: str = "quick") -> ml_collections.ConfigDict:
    size = check_size(size)
    c = ml_collections.ConfigDict()
    c.seeds = [0, 1, 2]

    c.model = ml_collections.ConfigDict(dict(d_model=128, num_layers=4, num_heads=4, d_ff=512,
                                             max_len=128))
    c.data = ml_collections.ConfigDict()
    c.data.weights = ml_collections.ConfigDict(dict(add1=0.1, addsub=0.3, mul1=0.3, chain2=0.3))
    c.data.digits = ml_collections.ConfigDict(dict(add1=1, addsub=2, mul1=3, chain2=2))
    c.data.detail = "columns"
    c.data.n_train = 30_000
    c.data.seq_len = 96
    c.data.direct_frac = 0.5     # half of the SFT rows in direct (no-thinking) form
    c.data.seed = 0

    c.optim = ml_collections.ConfigDict(dict(lr=1e-3, warmup=100, steps=2000, batch_size=64,
                                             weight_decay=0.01, grad_clip=1.0, b2=0.98,
                                             end_lr_frac=0.05))
    c.train = ml_collections.ConfigDict(dict(chunk=100, n_devices=0, eval_every=500,
                                             target_acc=0.0, target_family="chain2",
                                             target_mode="cot", eval_n=128))
    c.eval = ml_collections.ConfigDict(dict(n_test=200, n_samples=8, temperature=1.0,
                                            batch_size=128))
    c.cache = True               # store/reuse trained params in the model cache
    if size == "quick":
        c.seeds = [0]
        c.model.update(d_model=64, num_layers=3, num_heads=4, d_ff=256, max_len=64)
        c.data.weights = ml_collections.ConfigDict(dict(add1=0.2, addsub=0.4, mul1=0.4))
        c.data.digits = ml_collections.ConfigDict(dict(add1=1, addsub=2, mul1=2))
        c.data.n_train = 8_000
        c.data.seq_len = 48
        c.optim.update(steps=1200, batch_size=64, lr=2e-3, warmup=50)
        c.train.update(chunk=100, eval_every=1200)
        c.eval.update(n_test=60, n_samples=8, batch_size=60)
    return c
