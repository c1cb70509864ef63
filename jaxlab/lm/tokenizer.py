"""Character-level tokenizer with special tokens for the tiny reasoning LM.

Every printable character of the arithmetic and agent formats is one token. Special tokens are
written in text as `<name>` (e.g. `<eos>`); literal `<` and `>` are therefore not plain characters.

Ids are fixed (they are part of every cached model): PAD=0, BOS=1, EOS=2, then the role tokens
`<S>` (solver), `<C>` (checker), `<U>` (user/orchestrator), the verdict tokens `<yes>` / `<no>`,
then the plain characters in `CHARS` order.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SOLVER, CHECKER, USER = "<S>", "<C>", "<U>"
YES, NO = "<yes>", "<no>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, SOLVER, CHECKER, USER, YES, NO)
CHARS: str = ("0123456789+-*=;:,.()[] ?!/_'\"#"
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


class CharTokenizer:
    """Maps text <-> int32 ids. Unknown characters raise ValueError naming the character.

    Examples:
      >>> tok = CharTokenizer()
      >>> tok.decode(tok.encode("Q:1+2= A:3<eos>"))
      'Q:1+2= A:3<eos>'
    """

    def __init__(self):
        self.vocab: tuple[str, ...] = SPECIALS + tuple(CHARS)
        self._to_id = {s: i for i, s in enumerate(self.vocab)}
        self.pad_id = self._to_id[PAD]
        self.bos_id = self._to_id[BOS]
        self.eos_id = self._to_id[EOS]
        self.solver_id = self._to_id[SOLVER]
        self.checker_id = self._to_id[CHECKER]
        self.user_id = self._to_id[USER]
        self.yes_id = self._to_id[YES]
        self.no_id = self._to_id[NO]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def token_id(self, token: str) -> int:
        """Id of one token (a character or a special token such as '<eos>')."""
        if token not in self._to_id:
            raise ValueError(f"token: unknown token {token!r}; expected one of the vocabulary")
        return self._to_id[token]

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> np.ndarray:
        """text -> ids [T] (int32); optional leading BOS / trailing EOS."""
        if not isinstance(text, str):
            raise ValueError(f"text: expected str, got {type(text).__name__}")
        ids = [self.bos_id] if bos else []
        for part in _SPECIAL_RE.split(text):
            if not part:
                continue
            if part in self._to_id and part in SPECIALS:
                ids.append(self._to_id[part])
                continue
            for ch in part:
                i = self._to_id.get(ch)
                if i is None or ch in "<>":
                    raise ValueError(f"text: unknown character {ch!r} in {text!r}; "
                                     f"allowed are {CHARS!r} and special tokens {SPECIALS}")
                ids.append(i)
        if eos:
            ids.append(self.eos_id)
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray, *, skip_pad: bool = True,
               stop_at_eos: bool = False) -> str:
        """ids [T] -> text. PAD is dropped unless skip_pad=False; stop_at_eos keeps text up to EOS."""
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids: id {i} outside [0, {self.vocab_size})")
            if skip_pad and i == self.pad_id:
                continue
            out.append(self.vocab[i])
            if stop_at_eos and i == self.eos_id:
                break
        return "".join(out)

    def decode_batch(self, ids_bt: np.ndarray, **kw) -> list[str]:
        return [self.decode(row, **kw) for row in np.asarray(ids_bt)]

    def encode_batch(self, texts: Sequence[str], *, length: int | None = None,
                     pad_side: str = "right", bos: bool = False, eos: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Encodes and pads a batch.

        Args:
          texts: B strings.
          length: padded length T (default: longest row). A longer row raises ValueError.
          pad_side: "right" (training batches) or "left" (prompts for `sample`).
        Returns:
          (ids_bt [B, T] int32, mask_bt [B, T] bool), mask True on real tokens.
        """
        if pad_side not in ("left", "right"):
            raise ValueError(f"pad_side: expected 'left' or 'right', got {pad_side!r}")
        rows = [self.encode(t, bos=bos, eos=eos) for t in texts]
        longest = max((len(r) for r in rows), default=0)
        T = longest if length is None else int(length)
        if longest > T:
            raise ValueError(f"length: a row has {longest} tokens, more than length={T}")
        ids = np.full((len(rows), T), self.pad_id, np.int32)
        mask = np.zeros((len(rows), T), bool)
        for b, r in enumerate(rows):
            if pad_side == "right":
                ids[b, :len(r)] = r
                mask[b, :len(r)] = True
            elif len(r):
                ids[b, T - len(r):] = r
                mask[b, T - len(r):] = True
        return ids, mask
