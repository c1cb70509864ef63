"""FARL (arXiv 2601.07821): failure-aware offline-to-online RL on FailureBench-style Brax tasks."""
from jaxlab.farl.envs import TASKS, FailureBenchEnv, failure_event, make_env, register_envs, task_reward
from jaxlab.farl.losses import (bc_loss, gae, normalize_advantages, ppo_policy_loss, risk_critic_loss, value_loss,
                                world_model_loss)
from jaxlab.farl.ppo import Arm, PPOHParams, make_arm, make_train, online_trainer, run_online
from jaxlab.farl.safety import (aggregate_ensemble, auroc, discounted_risk, precision_recall, risk_labels,
                                safety_bellman_target, safety_switch, world_model_risk)
