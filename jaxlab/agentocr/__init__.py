"""AgentOCR (arXiv 2601.04786) miniature: agent history rendered as images with a segment optical cache,
self-compression with a ln(c) reward, GRPO over ShelfWorld episodes."""

from jaxlab.agentocr.env import (EnvParams, ShelfWorld, encode, encode_padded, expert_action, expert_episode,
                                 parse_action, words)
from jaxlab.agentocr.losses import (C_SET, CompressionHParams, c_index, compression_reward, parse_compression,
                                    policy_loss, step_advantages, step_scores)
from jaxlab.agentocr.render import (NaiveAppendCache, RenderSettings, SegmentCache, compress, compressed_size,
                                    make_segment, render_history_nocache, render_segment, segment_key, stack,
                                    visual_tokens)

__all__ = [
    "EnvParams", "ShelfWorld", "encode", "encode_padded", "expert_action", "expert_episode", "parse_action",
    "words", "C_SET", "CompressionHParams", "c_index", "compression_reward", "parse_compression", "policy_loss",
    "step_advantages", "step_scores", "NaiveAppendCache", "RenderSettings", "SegmentCache", "compress",
    "compressed_size", "make_segment", "render_history_nocache", "render_segment", "segment_key", "stack",
    "visual_tokens",
]
