"""The experiments the main job runs: one entry per paper (plus the shared LM substrate).

An entry with `runner=None` is not implemented yet: the report lists it as such and the main job
skips it. A runner is "module:function" with `function(config, workdir) -> summary dict`; the config is
a file with `get_config("quick"|"full")`.
"""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str                  # registry key and results/<suite>/<name>/
    title: str                 # paper title (or substrate name)
    arxiv: str                 # arXiv id, "" for substrates
    package: str               # jaxlab package(s)
    claim: str                 # the paper's key claim, one sentence
    runner: str | None = None  # "experiments.<name>:run" once implemented
    config: str | None = None  # "experiments/configs/<name>.py"
    colab: str | None = None   # "colabs/<name>.ipynb"
    budget_s: float = 120.0    # quick-suite time budget on 2 CPU cores

    @property
    def implemented(self) -> bool:
        return self.runner is not None

    def load_runner(self):
        module, _, fn = self.runner.partition(":")
        return getattr(importlib.import_module(module), fn)


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("lm_sft", "Tiny reasoning LM (shared substrate: arithmetic with chain of thought, SFT)", "",
               "jaxlab.lm",
               "A small decoder-only transformer learns arithmetic with written-out chain of thought; "
               "chain of thought beats direct answers on multi-digit problems.",
               runner="experiments.lm_sft:run", config="experiments/configs/lm_sft.py", colab="colabs/lm.ipynb",
               budget_s=150),
    Experiment("picce", "When More Experts Hurt: Underfitting in Multi-Expert Learning to Defer", "2602.17144",
               "jaxlab.l2d",
               "Vanilla multi-expert L2D surrogates underfit the classifier as experts are added; PiCCE keeps "
               "classifier accuracy and coverage without hurting system error.",
               runner="experiments.picce:run", config="experiments/configs/picce.py", colab="colabs/picce.ipynb",
               budget_s=150),
    Experiment("fusion", "Hierarchical Audio-Visual-Proprioceptive Fusion for Precise Robotic Manipulation",
               "2602.13640", "jaxlab.fusion, jaxlab.diffusion",
               "Audio-first hierarchical fusion feeding a diffusion policy beats flat and symmetric fusion on "
               "tasks whose state is carried by sound.",
               runner="experiments.fusion:run", config="experiments/configs/fusion.py", colab="colabs/fusion.ipynb",
               budget_s=270),
    Experiment("kpo", "Online Causal Kalman Filtering for Stable and Effective Policy Optimization", "2602.10609",
               "jaxlab.rl",
               "Kalman-filtered token importance ratios make policy optimization more stable than GRPO/GSPO/GMPO "
               "and at least as accurate.",
               runner="experiments.kpo:run", config="experiments/configs/kpo.py", colab="colabs/kpo.ipynb",
               budget_s=150),
    Experiment("drmas", "Dr. MAS: Stable Reinforcement Learning for Multi-Agent LLM Systems", "2602.08847", "jaxlab.rl",
               "Normalizing advantages per agent stabilizes multi-agent RL and improves accuracy over global "
               "normalization.",
               runner="experiments.drmas:run", config="experiments/configs/drmas.py",
               colab="colabs/drmas.ipynb", budget_s=150),
    Experiment("gpac", "G-PAC / C-PAC: group-conditional PAC guarantees for thinking/non-thinking switching",
               "2601.22790",
               "jaxlab.pac",
               "Group-conditional PAC switching keeps the error guarantee in every group while saving thinking "
               "compute.",
               runner="experiments.gpac:run", config="experiments/configs/gpac.py",
               colab="colabs/gpac.ipynb", budget_s=150),
    Experiment("ars", "Harnessing Reasoning Trajectories for Hallucination Detection via Answer-agreement "
               "Representation Shaping", "2601.17467", "jaxlab.ars",
               "Shaping hidden states by answer agreement improves hallucination detection over raw embeddings.",
               runner="experiments.ars:run", config="experiments/configs/ars.py",
               colab="colabs/ars.ipynb", budget_s=180),
    Experiment("finance_dataflow", "History Is Not Enough: An Adaptive Dataflow System for Financial Time-Series "
               "Synthesis", "2601.10143", "jaxlab.finance",
               "Drift-aware, planner-scheduled augmentation lowers forecasting error and improves risk-adjusted "
               "trading returns over training on history alone.",
               runner="experiments.finance_dataflow:run", config="experiments/configs/finance_dataflow.py",
               colab="colabs/finance_dataflow.ipynb", budget_s=240),
    Experiment("robust_trading", "Bayesian Robust Financial Trading with Adversarial Synthetic Market Data", "2601.17008",
               "jaxlab.finance",
               "A macro-conditioned GAN adversary with a Bayesian NFSP agent yields more robust trading under "
               "regime shifts.",
               runner="experiments.robust_trading:run", config="experiments/configs/robust_trading.py",
               colab="colabs/robust_trading.ipynb", budget_s=240),
    Experiment("farl", "Failure-Aware RL: Reliable Offline-to-Online RL with Self-Recovery", "2601.07821",
               "jaxlab.farl",
               "A world-model safety critic with a recovery policy cuts intervention-requiring failures during "
               "online RL (paper: -73.1%) while raising performance (+11.3%).",
               runner="experiments.farl:run", config="experiments/configs/farl.py", colab="colabs/farl.ipynb",
               budget_s=180),
    Experiment("agentocr", "AgentOCR: Reimagining Agent History via Optical Self-Compression", "2601.04786",
               "jaxlab.agentocr",
               "Rendering agent history as images with a segment optical cache and a self-compression reward keeps "
               "task success at a fraction of the history tokens.",
               runner="experiments.agentocr:run", config="experiments/configs/agentocr.py",
               colab="colabs/agentocr.ipynb", budget_s=180),
)


def _extra() -> tuple[Experiment, ...]:
    """Extra entries from the module named by $JAXLAB_REGISTRY_EXTRA (its EXPERIMENTS tuple); for tests
    and for users who register their own experiments without editing this file."""
    import os
    name = os.environ.get("JAXLAB_REGISTRY_EXTRA")
    return tuple(importlib.import_module(name).EXPERIMENTS) if name else ()


EXPERIMENTS = EXPERIMENTS + _extra()
_BY_NAME = {e.name: e for e in EXPERIMENTS}


def names() -> list[str]:
    return [e.name for e in EXPERIMENTS]


def get(name: str) -> Experiment:
    if name not in _BY_NAME:
        raise ValueError(f"unknown experiment {name!r}; expected one of: {', '.join(names())}")
    return _BY_NAME[name]


def implemented() -> list[Experiment]:
    return [e for e in EXPERIMENTS if e.implemented]
