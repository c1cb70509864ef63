"""ShelfWorld: determinism, rewards, admissible list, expert success, code recall, tokenizer, bad input."""

import pytest

from jaxlab.agentocr import env as E


@pytest.mark.parametrize("variant", E.VARIANTS)
def test_expert_solves_every_seed_within_horizon(variant):
    p = E.EnvParams(variant=variant)
    for seed in range(60):
        env, acts = E.expert_episode(p, seed)
        assert env.success and len(acts) <= p.horizon and env.n_invalid == 0


def test_reset_is_seeded_and_resets_state():
    a, b = E.ShelfWorld(), E.ShelfWorld()
    assert a.reset(5) == b.reset(5) and a.task == b.task and a.contents == b.contents
    a.step("go to drawer 1")
    a.reset(5)
    assert a.history == [] and a.t == 0 and a.location is None


def test_rewards_invalid_penalty_and_success():
    env = E.ShelfWorld()
    env.reset(0)
    obs, r, done, info = env.step(f"take {E.OBJECTS[0]}")   # well-formed, not admissible in the room
    assert obs == "Nothing happens." and r == pytest.approx(-0.1) and info["invalid"] and not done
    total = r
    while not env.done:
        _, r, _, _ = env.step(E.expert_action(env))
        total += r
    assert env.success and total == pytest.approx(10.0 - 0.1)


def test_admissible_list_bounded_and_expert_in_it():
    for variant in E.VARIANTS:
        env = E.ShelfWorld(E.EnvParams(variant=variant))
        for seed in range(20):
            env.reset(seed)
            while not env.done:
                adm = env.admissible()
                a = E.expert_action(env)
                assert a in adm and len(adm) <= E.MAX_ACTIONS and len(set(adm)) == len(adm)
                env.step(a)


def test_code_appears_only_in_first_observation_and_wrong_code_fails():
    env = E.ShelfWorld(E.EnvParams(variant="code"))
    first = env.reset(3)
    assert f"code {env.code}" in first
    seen = []
    while not env.placed:
        obs, *_ = env.step(E.expert_action(env))
        seen.append(obs)
    assert not any(str(env.code) in o for o in seen) and str(env.code) not in env.task
    wrong = next(c for c in env.codes if c != env.code)
    _, r, done, info = env.step(f"open safe {wrong}")
    assert done and not info["success"] and r == 0.0


def test_horizon_ends_episode_and_segments_repeat():
    env = E.ShelfWorld(E.EnvParams(horizon=4))
    env.reset(1)
    for _ in range(4):
        env.step("look")
    assert env.done and not env.success and len(set(env.segments())) == 2 and len(env.segments()) == 4
    with pytest.raises(ValueError, match="episode is over"):
        env.step("look")


def test_unknown_action_and_bad_params_raise():
    env = E.ShelfWorld()
    env.reset(0)
    for bad in ("fly away", "go to kitchen 9", "take unicorn", "open safe 4"):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    with pytest.raises(ValueError, match="variant"):
        E.EnvParams(variant="maze") and E.ShelfWorld(E.EnvParams(variant="maze"))
    with pytest.raises(ValueError, match="n_receptacles"):
        E.ShelfWorld(E.EnvParams(n_receptacles=1))


def test_word_tokenizer_covers_the_world():
    env, _ = E.expert_episode(E.EnvParams(variant="code"), 7)
    text = " ".join(env.segments()) + " " + env.task
    ids = E.encode(text)
    assert E.UNK not in ids and len(ids) == len(E.words(text))
    assert E.words("[Observation]: code 47.") == ["[", "observation", "]", ":", "code", "47", "."]
    ids, dropped = E.encode_padded("go to shelf 1", 3)
    assert dropped == 1 and list(ids) == [E.TOKEN_ID[w] for w in ("to", "shelf", "1")]
