"""chex.variants: the policy-gradient losses give the same values with and without jit, and equal hand
computed closed forms; distrax as an independent implementation of the stochastic policies' log-probs
(FARL's diagonal Gaussian, AgentOCR's categorical heads) and entropies.

The library keeps its closed forms (bitwise continuity of the committed results); distrax is the reference
they are checked against (BUILD_NOTES, issue 12 item 6)."""

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from jaxlab.farl.networks import gaussian_logp
from jaxlab.rl.losses import grpo_loss, kpo_loss
from jaxlab.rl.pg import gae, normalize_advantages, ppo_policy_loss


class LossVariantsTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_ppo_policy_loss_matches_the_clipped_surrogate_by_hand(self):
        logp = jnp.log(jnp.array([1.5, 0.5, 1.0, 1.1]))     # ratios 1.5, 0.5, 1.0, 1.1 (old logp = 0)
        adv = jnp.array([1.0, -2.0, 3.0, -1.0])
        mask = jnp.array([1.0, 1.0, 0.0, 1.0])
        loss = self.variant(lambda a, b, c, d: ppo_policy_loss(a, b, c, d, clip_eps=0.2))(
            logp, jnp.zeros(4), adv, mask)
        # min(r A, clip(r) A): 1.2*1 (clipped), min(0.5*-2, 0.8*-2) = -1.6, masked, min(1.1*-1, 1.1*-1) = -1.1
        chex.assert_trees_all_close(loss, -(1.2 - 1.6 - 1.1) / 3.0, atol=1e-6)
        chex.assert_shape(loss, ())

    @chex.variants(with_jit=True, without_jit=True)
    def test_gae_with_lambda_one_and_zero_values_is_the_discounted_return(self):
        r = jnp.array([1.0, 2.0, 3.0, 4.0])[:, None]
        done = jnp.array([0.0, 1.0, 0.0, 0.0])[:, None]        # an episode ends after step 1
        zeros = jnp.zeros_like(r)
        adv, ret = self.variant(lambda *a: gae(*a, gamma=0.5, lam=1.0))(r, zeros, zeros, done)
        expect = jnp.array([1 + 0.5 * 2, 2.0, 3 + 0.5 * 4, 4.0])[:, None]
        chex.assert_trees_all_close(adv, expect, atol=1e-6)
        chex.assert_trees_all_close(ret, expect, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_normalized_advantages_have_zero_mean_unit_std_on_the_mask(self):
        adv = jnp.array([1.0, 2.0, 3.0, 100.0])
        mask = jnp.array([1.0, 1.0, 1.0, 0.0])
        out = self.variant(normalize_advantages)(adv, mask)
        on = np.asarray(out)[:3]
        np.testing.assert_allclose(on.mean(), 0.0, atol=1e-6)
        np.testing.assert_allclose(on.std(), 1.0, atol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_on_policy_grpo_and_kpo_equal_minus_the_mean_advantage(self):
        """At r = 1 every GRPO-family surrogate is A: the loss is -mean_seq mean_tok A (closed form)."""
        logp = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
        mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
        adv = jnp.array([0.5, -1.0, 2.0])
        for fn in (lambda a, b, c, d: grpo_loss(a, b, c, d)[0], lambda a, b, c, d: kpo_loss(a, b, c, d)[0]):
            loss = self.variant(fn)(logp, logp, adv, mask)
            chex.assert_trees_all_close(loss, -jnp.mean(adv), atol=1e-6)


class DistraxReferenceTest(parameterized.TestCase):

    def test_farl_gaussian_logp_equals_distrax(self):
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
        mean = jax.random.normal(k1, (7, 3))
        log_std = 0.5 * jax.random.normal(k2, (7, 3))
        a = jax.random.normal(k3, (7, 3))
        ref = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std)).log_prob(a)
        chex.assert_trees_all_close(gaussian_logp(mean, log_std, a), ref, atol=1e-5)
        # and a sample of the distrax policy is scored the same way
        s = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std)).sample(seed=jax.random.PRNGKey(2))
        chex.assert_trees_all_close(gaussian_logp(mean, log_std, s),
                                    distrax.MultivariateNormalDiag(mean, jnp.exp(log_std)).log_prob(s), atol=1e-5)

    def test_categorical_head_log_prob_and_entropy_equal_distrax(self):
        """AgentOCR's action and compression heads score actions with log_softmax gathers."""
        logits = jax.random.normal(jax.random.PRNGKey(3), (6, 5)) * 3.0
        act = jnp.array([0, 4, 2, 2, 1, 3])
        ours = jnp.take_along_axis(jax.nn.log_softmax(logits), act[:, None], 1)[:, 0]
        dist = distrax.Categorical(logits=logits)
        chex.assert_trees_all_close(ours, dist.log_prob(act), atol=1e-5)
        p = jax.nn.softmax(logits)
        chex.assert_trees_all_close(-jnp.sum(p * jax.nn.log_softmax(logits), -1), dist.entropy(), atol=1e-5)
