"""jaxlab: ten recent ML papers as pure, jit-compiled JAX functions with honest miniature reproductions.

Paper packages (import the losses from their top level):
  jaxlab.l2d (PiCCE), jaxlab.fusion + jaxlab.diffusion (audio-visual fusion), jaxlab.rl (KPO, Dr. MAS),
  jaxlab.pac (G-PAC), jaxlab.ars (ARS), jaxlab.finance (dataflow, robust trading), jaxlab.farl (FARL),
  jaxlab.agentocr (AgentOCR); shared substrates jaxlab.lm, jaxlab.rl, jaxlab.diffusion; jaxlab.core.
"""

__version__ = "0.1.0"
