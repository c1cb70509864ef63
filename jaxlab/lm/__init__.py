"""jaxlab.lm: the shared tiny reasoning language model.

Tasks (seeded arithmetic with written-out chain of thought), a character tokenizer, a Flax
decoder-only transformer whose forward pass is pure in (params, tokens), a jitted KV-cache
sampler, teacher-forced log-probs, SFT (`make_train(sft_spec(config))`) and a model cache keyed by config hash.

Typical use by a paper package:

    from jaxlab import lm
    tok = lm.CharTokenizer()
    cfg = lm.LMConfig(vocab_size=tok.vocab_size)              # or lm.model_config(sft_config)
    params = lm.init(key, cfg)                         # or lm.load_or_train(lm.sft_spec(sft_config), seed)[0]
    logits = lm.apply(params, tokens_bt, cfg=cfg)              # [B, T, V]
    logits, hid = lm.apply(params, tokens_bt, cfg=cfg, return_hidden=True)
    out = lm.sample(params, key, prompts_bp, cfg=cfg, max_new_tokens=96, num_samples=8)
    seq, mask = lm.sequences(prompts_bp, out)
    logp = lm.logprobs(params, seq, mask, cfg=cfg)             # == out.model_logprobs at the mask

SFT as a `jaxlab.core.loop.Trainer` (typed hyperparameters, data as a jit argument):

    hp = lm.SFTHParams(optim=lm.OptimHParams(lr=2e-3, steps=1200), chunk=100)   # or lm.sft_hparams(config)
    state, history = loop.run(lm.sft_trainer(cfg, hp), key, steps=hp.optim.steps, chunk=hp.chunk,
                              data=(tokens_nt, mask_nt, None))
"""

from jaxlab.lm.model import (LMConfig, Hidden, TinyLM, apply, init, logprobs, num_params,
                             output_log_softmax)
from jaxlab.lm.sampler import SampleOutput, sample, sequences
from jaxlab.lm.tokenizer import CharTokenizer
from jaxlab.lm.tasks import (FAMILIES, Problem, check_disjoint, find_overlap, generate,
                             generate_mix, parse_answer, split_of, verify, all_add1, UNPARSEABLE)
from jaxlab.lm.train import (OptimHParams, SFTDataHParams, SFTHParams, SFTSpec, make_train, model_config,
                             rows_arrays, sft_arrays, sft_hparams, sft_loss, sft_spec, sft_trainer)
from jaxlab.lm.evaluate import evaluate, generate_answers, pass_at_k
from jaxlab.lm.cache import load, load_or_train, model_key, rows_digest

__all__ = [
    "LMConfig", "Hidden", "TinyLM", "apply", "init", "logprobs", "num_params", "output_log_softmax",
    "SampleOutput", "sample", "sequences", "CharTokenizer", "FAMILIES", "Problem",
    "check_disjoint", "find_overlap", "generate", "generate_mix", "parse_answer", "split_of",
    "verify", "all_add1", "UNPARSEABLE", "OptimHParams", "SFTHParams", "SFTDataHParams", "SFTSpec", "sft_hparams",
    "sft_spec", "sft_trainer",
    "make_train", "model_config", "rows_arrays", "sft_arrays", "sft_loss",
    "evaluate", "generate_answers", "pass_at_k", "load", "load_or_train", "model_key", "rows_digest",
]
