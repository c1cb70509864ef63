"""jaxlab.finance: drift-aware financial dataflow (paper A, arXiv 2601.10143) and shared trading pieces.

Importable pure functions: manipulation ops and mix-ups (`ops`), Alg. 1/2, the scheduler and one-step
hypergradient (`planner`), metrics (`metrics`), drift/quality monitor (`monitor`), provenance replay
(`provenance`), the pure-JAX trading environment (`env`) and DQN trader (`dqn`), the data layer (`data`, `tfds_builders`)
and training (`train`).
"""

from jaxlab.finance.dqn import dqn_loss, dqn_targets, epsilon_schedule
from jaxlab.finance.losses import DQNLossHParams, forecast_loss  # the front door: jaxlab.finance.losses
from jaxlab.finance.metrics import (equity_curve, information_coefficient, long_short_returns, mae,
                                    max_drawdown, mse, rank_information_coefficient, risk_aware_loss,
                                    sharpe_ratio, total_return)
from jaxlab.finance.monitor import drift_distances, ks_statistic, mmd2, psi, quality_report, stylized_facts
from jaxlab.finance.ops import (MIX_OPS, SINGLE_OPS, amplitude_mix, binary_mix, binary_mix_weight, curate_kline,
                                cut_mix, jitter, kline_valid, linear_mix, magnitude_warp, manipulate,
                                manipulate_all_pairs, permutation, proposed_mix, sample_target, scaling,
                                stl_bootstrap, straight_through, target_probs)
from jaxlab.finance.planner import (expected_augmentation, hyper_objective, hypergradient, scheduler_alpha,
                                    scheduler_update)
from jaxlab.finance.provenance import array_digest, replay
# paper B (robust trading, arXiv 2601.17008): macro data, conditional GAN, adversary, QBN, NFSP, trader
from jaxlab.finance.adversary import (adversary_reinforce_loss, discounted_returns, gaussian_log_prob,
                                      project_delta, sample_delta)
from jaxlab.finance.belief import belief_bucket, interval_coverage, pinball_loss, soft_belief
from jaxlab.finance.gan import (bce_with_logits, gan_discriminator_loss, gan_embedder_loss, gan_generator_loss,
                                moment_loss, std_loss, supervised_loss)
from jaxlab.finance.kuhn import kuhn_exploitability, kuhn_nash_conv, nfsp_kuhn
from jaxlab.finance.macro import align_released, real_macro_world, release_dates, synthetic_macro_world
from jaxlab.finance.nfsp import exploitability, nash_conv, reservoir_add, reservoir_init
from jaxlab.finance.robust_trader import trading_metrics
