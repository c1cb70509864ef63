import numpy as np
import pytest

from jaxlab.lm.tokenizer import CHARS, SPECIALS


def test_round_trip_random_text(tok):
    rng = np.random.default_rng(0)
    pieces = list(CHARS) + list(SPECIALS[1:])   # PAD is dropped by decode by default
    for _ in range(50):
        text = "".join(rng.choice(pieces, size=rng.integers(0, 40)))
        assert tok.decode(tok.encode(text)) == text


def test_special_ids_and_lengths(tok):
    ids = tok.encode("Q:47*36= T:47*6=282 A:1692<eos>", bos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert len(ids) == 1 + len("Q:47*36= T:47*6=282 A:1692") + 1
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.token_id("<yes>") == tok.yes_id != tok.no_id


def test_unknown_character_is_a_clear_error(tok):
    with pytest.raises(ValueError, match="unknown character '€'"):
        tok.encode("1+1=€")
    with pytest.raises(ValueError, match="unknown character '<'"):
        tok.encode("1<2")
    with pytest.raises(ValueError, match="id 999"):
        tok.decode([999])


def test_encode_batch_padding_and_masks(tok):
    ids, mask = tok.encode_batch(["ab", "abcd"], pad_side="left")
    assert ids.shape == (2, 4) and mask.tolist() == [[False, False, True, True], [True] * 4]
    assert tok.decode_batch(ids) == ["ab", "abcd"]
    ids_r, mask_r = tok.encode_batch(["ab", "abcd"], length=6)
    assert mask_r.sum(1).tolist() == [2, 4] and ids_r[0, 2:].tolist() == [tok.pad_id] * 4
    with pytest.raises(ValueError, match="length"):
        tok.encode_batch(["abcdef"], length=3)
    with pytest.raises(ValueError, match="pad_side"):
        tok.encode_batch(["a"], pad_side="middle")
    assert tok.decode(tok.encode("1<eos>2"), stop_at_eos=True) == "1<eos>"
