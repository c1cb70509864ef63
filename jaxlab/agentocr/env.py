"""ShelfWorld: a seeded, pure-Python, ALFWorld-like text world (spec §7), its scripted expert and the
word-level tokenizer of the text-history baseline.

Layout (seed -> world): the first `n_receptacles` of RECEPTACLES (fixed order, the expert's search order),
`n_objects` random objects in random receptacles, a goal "put a O in R" (O never starts in R).
Actions (the admissible list, at most 20): ``look``, ``go to R``, ``take O`` (at R, hands empty),
``put O in R`` (holding O, at R) and, in the code-recall variant once the object is placed,
``open safe NN`` for the true code and `n_codes - 1` distractors.
Rewards: +10 on success, -0.1 for a well-formed but inadmissible action (observation "Nothing happens.");
a string that is no action at all raises ValueError. The episode ends on success, on a wrong safe code
(failure) or at the horizon.

Code-recall variant (the text-dense counterpart of search QA): the first observation carries
"A note on the wall says: code NN."; the code appears nowhere else, so after step 1 it can only be read
back from the history (the image, for the OCR policy).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from jaxlab.agentocr.render import make_segment

RECEPTACLES = ("drawer 1", "drawer 2", "shelf 1", "shelf 2", "table 1", "desk 1", "cabinet 1", "drawer 3")
OBJECTS = ("key", "mug", "book", "pen", "apple", "cup", "card", "vase")
VARIANTS = ("shelf", "code")
MAX_ACTIONS = 20
SUCCESS_REWARD = 10.0
INVALID_PENALTY = -0.1


class EnvParams(NamedTuple):
    variant: str = "shelf"       # "shelf" | "code" (code recall)
    n_receptacles: int = 5
    n_objects: int = 3
    horizon: int = 10
    n_codes: int = 4             # candidate codes offered at the safe (code variant)


def check_params(p: EnvParams) -> EnvParams:
    if p.variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {p.variant!r}")
    if not 2 <= p.n_receptacles <= len(RECEPTACLES):
        raise ValueError(f"n_receptacles: expected 2..{len(RECEPTACLES)}, got {p.n_receptacles}")
    if not 1 <= p.n_objects <= len(OBJECTS):
        raise ValueError(f"n_objects: expected 1..{len(OBJECTS)}, got {p.n_objects}")
    if p.horizon < 1:
        raise ValueError(f"horizon: expected >= 1, got {p.horizon}")
    if not 1 <= p.n_codes <= 10:
        raise ValueError(f"n_codes: expected 1..10, got {p.n_codes}")
    if 1 + p.n_receptacles + p.n_objects + p.n_codes > MAX_ACTIONS:
        raise ValueError(f"n_receptacles/n_objects/n_codes: the admissible list may exceed {MAX_ACTIONS}")
    return p


_ACTION_RE = re.compile(r"^(look|go to (?P<go>[a-z]+ \d)|take (?P<take>[a-z]+)|"
                        r"put (?P<put>[a-z]+) in (?P<dst>[a-z]+ \d)|open safe (?P<code>\d{2}))$")


def parse_action(action: str) -> tuple:
    """A well-formed action -> (kind, args); anything else raises ValueError (unknown action)."""
    m = _ACTION_RE.match(str(action).strip())
    if not m:
        raise ValueError(f"action: unknown action {action!r}; expected 'look', 'go to R', 'take O', "
                         f"'put O in R' or 'open safe NN'")
    if m.group("go"):
        r = m.group("go")
        if r not in RECEPTACLES:
            raise ValueError(f"action: unknown receptacle {r!r} in {action!r}")
        return ("go", r)
    if m.group("take"):
        if m.group("take") not in OBJECTS:
            raise ValueError(f"action: unknown object {m.group('take')!r} in {action!r}")
        return ("take", m.group("take"))
    if m.group("put"):
        if m.group("put") not in OBJECTS or m.group("dst") not in RECEPTACLES:
            raise ValueError(f"action: unknown object or receptacle in {action!r}")
        return ("put", m.group("put"), m.group("dst"))
    if m.group("code"):
        return ("open", int(m.group("code")))
    return ("look",)


def _listing(items):
    return ", ".join(f"a {o}" for o in items) if items else "nothing"


class ShelfWorld:
    """One environment instance (host-side Python). `reset(seed)` -> first observation; `step(action)`."""

    def __init__(self, params: EnvParams = EnvParams()):
        self.params = check_params(params)
        self.receptacles = RECEPTACLES[:params.n_receptacles]

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int) -> str:
        p = self.params
        rng = np.random.default_rng(int(seed))
        objs = [OBJECTS[i] for i in rng.choice(len(OBJECTS), p.n_objects, replace=False)]
        self.contents = {r: [] for r in self.receptacles}
        self.goal_obj = objs[0]
        self.target = self.receptacles[int(rng.integers(p.n_receptacles))]
        others = [r for r in self.receptacles if r != self.target]
        for o in objs:
            place = others[int(rng.integers(len(others)))] if o == self.goal_obj else \
                self.receptacles[int(rng.integers(p.n_receptacles))]
            self.contents[place].append(o)
        self.code = int(rng.integers(10, 100))
        cands = {self.code}
        while len(cands) < p.n_codes:
            cands.add(int(rng.integers(10, 100)))
        self.codes = sorted(cands)
        self.location, self.holding = None, None
        self.placed = False
        self.t, self.done, self.success, self.n_invalid = 0, False, False, 0
        obs = "You are in the middle of a room. Looking around you see " + ", ".join(self.receptacles) + "."
        if p.variant == "code":
            obs += f" A note on the wall says: code {self.code}."
        self.obs = obs
        self.history: list[tuple[str, str]] = []  # (observation, action) pairs of finished steps
        return obs

    @property
    def task(self) -> str:
        t = f"Your task is to: put a {self.goal_obj} in {self.target}"
        return t + (", then open the safe." if self.params.variant == "code" else ".")

    def admissible(self) -> list[str]:
        acts = ["look"] + [f"go to {r}" for r in self.receptacles if r != self.location]
        if self.location is not None and self.holding is None:
            acts += [f"take {o}" for o in self.contents[self.location]]
        if self.location is not None and self.holding is not None:
            acts.append(f"put {self.holding} in {self.location}")
        if self.params.variant == "code" and self.placed:
            acts += [f"open safe {c}" for c in self.codes]
        return acts

    def segments(self) -> list[str]:
        """The history's segments (one per finished step), the text the renderer draws."""
        return [make_segment(o, a) for o, a in self.history]

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        """-> (observation, reward, done, info). Raises ValueError on an unknown action or after done."""
        if self.done:
            raise ValueError("action: the episode is over; call reset(seed) first")
        parsed = parse_action(action)
        reward, p = 0.0, self.params
        if action.strip() not in self.admissible():
            obs, reward = "Nothing happens.", INVALID_PENALTY
            self.n_invalid += 1
        elif parsed[0] == "look":
            obs = "Nothing happens." if self.location is None else \
                f"You are at {self.location}. Nothing happens."
        elif parsed[0] == "go":
            self.location = parsed[1]
            obs = f"You arrive at {parsed[1]}. On {parsed[1]} you see {_listing(self.contents[parsed[1]])}."
        elif parsed[0] == "take":
            self.contents[self.location].remove(parsed[1])
            self.holding = parsed[1]
            obs = f"You pick up the {parsed[1]} from {self.location}."
        elif parsed[0] == "put":
            self.contents[self.location].append(parsed[1])
            self.holding = None
            obs = f"You put the {parsed[1]} in {self.location}."
            if parsed[1] == self.goal_obj and self.location == self.target:
                if p.variant == "code":
                    self.placed = True
                    obs += " Now open the safe."
                else:
                    self.success = True
        else:  # open safe
            if parsed[1] == self.code:
                self.success, obs = True, "The safe opens."
            else:
                self.done, obs = True, "The safe stays locked."
        if self.success:
            reward += SUCCESS_REWARD
            self.done = True
        self.history.append((self.obs, action.strip()))
        self.t += 1
        if self.t >= p.horizon:
            self.done = True
        self.obs = obs
        return obs, reward, self.done, {"success": self.success, "invalid": reward < 0}


def expert_action(env: ShelfWorld) -> str:
    """Scripted expert: search the receptacles in their fixed order, take the goal object, carry it to the
    target, put it there; in the code variant, then type the code seen at step 1."""
    if env.params.variant == "code" and env.placed:
        return f"open safe {env.code}"
    if env.holding == env.goal_obj:
        return f"put {env.goal_obj} in {env.target}" if env.location == env.target else f"go to {env.target}"
    if env.location is not None and env.goal_obj in env.contents[env.location]:
        return f"take {env.goal_obj}"
    order = [r for r in env.receptacles if r != env.target]
    i = -1 if env.location not in order else order.index(env.location)
    return f"go to {order[(i + 1) % len(order)]}"


def expert_episode(params: EnvParams, seed: int) -> tuple[ShelfWorld, list[str]]:
    """Runs the expert for one episode; returns (the finished env, the actions)."""
    env = ShelfWorld(params)
    env.reset(seed)
    acts = []
    while not env.done:
        a = expert_action(env)
        acts.append(a)
        env.step(a)
    return env, acts


# --------------------------------------------------------------------------- word-level tokenizer
_TOKEN_RE = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
SPECIALS = ("<pad>", "<unk>", "<cls>", "<sep>")


def words(text: str) -> list[str]:
    """Word-level tokens (lower-cased words, whole numbers, single punctuation marks)."""
    return _TOKEN_RE.findall(str(text).lower())


def _build_vocab():
    base = ("you are in the middle of a room . looking around see , note on wall says : code arrive at "
            "nothing pick up from put now open safe opens stays locked happens your task is to then look "
            "go take [ observation ] action")
    toks = list(SPECIALS) + words(base)
    for s in RECEPTACLES + OBJECTS:
        toks += words(s)
    toks += [str(i) for i in range(100)]
    out = []
    for t in toks:
        if t not in out:
            out.append(t)
    return tuple(out)


VOCAB = _build_vocab()
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
PAD, UNK, CLS, SEP = 0, 1, 2, 3


def encode(text: str) -> list[int]:
    return [TOKEN_ID.get(w, UNK) for w in words(text)]


def encode_padded(text: str, length: int, *, keep: str = "last") -> tuple[np.ndarray, int]:
    """Token ids padded with PAD to `length` -> (ids int32 [length], n_dropped). keep='last' truncates
    the oldest tokens (left) when the text is too long."""
    ids = encode(text)
    dropped = max(0, len(ids) - length)
    if dropped:
        ids = ids[-length:] if keep == "last" else ids[:length]
    out = np.full((length,), PAD, np.int32)
    out[:len(ids)] = ids
    return out, dropped
