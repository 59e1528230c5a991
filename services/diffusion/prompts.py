"""SDXL text conditioning through compel: prompts longer than 77 tokens and `(word:1.2)` weighting.

compel (`CompelForSDXL`) encodes a prompt with both SDXL text encoders — their penultimate hidden states,
not normalised, concatenated — and the pooled output of the second. A prompt longer than 75 tokens is
split into 77-token chunks (each with its own start and end tokens) whose embeddings are concatenated,
so the conditioning has 77 x k tokens; a tile's negative prompt is padded with empty-prompt chunks to
the length of its positive one, or the other way round.

Each tile is encoded on its own, never padded to the length of another tile's prompt: an extra empty
chunk changes what the UNet attends to, and so the pixels (by up to 40 levels in 255 on the tiny
model). The engine runs tiles whose conditioning lengths differ as separate sub-batches.

An empty negative prompt gives zero embeddings when the checkpoint asks for it
(`force_zeros_for_empty_prompt` in its model_index.json, true for SDXL base), as diffusers' own
prompt encoding does; otherwise it is encoded as the empty string.

The pooled embedding is compel's: the second encoder's pooled output of the prompt text as written
(weighting markup included), truncated to 77 tokens.

Caching. compel parses every prompt with a pyparsing grammar it builds anew each time, which costs far
more than the tiny text encoders (about 0.1 s a prompt pair on a laptop core), and the tiles of a job
mostly share their prompts. `PromptEncoder` keeps the conditioning of recent prompt pairs, and drops it
all when the text encoders change (a new LoRA stack: LoRAs patch the text encoders too). compel also
caches the empty prompt's embedding, used for weighting and padding, inside its own object; that object
is made anew with the cache, for the same reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from compel import Compel, CompelForSDXL
from compel.prompt_parser import PromptParser
from diffusers import StableDiffusionXLImg2ImgPipeline

from services.common.errors import InvalidArgument

__all__ = ["Conditioning", "PromptEncoder", "PromptPair"]


@dataclass(frozen=True)
class PromptPair:
    """One tile's prompts and the request fields they came from (for error messages)."""

    prompt: str
    negative_prompt: str
    prompt_field: str = "prompt"
    negative_prompt_field: str = "negative_prompt"


@dataclass(frozen=True)
class Conditioning:
    """Text conditioning of one tile or a batch, in the shapes SDXL pipelines take (batch first)."""

    # (batch, 77 * chunks, cross-attention width)
    prompt_embeds: torch.Tensor
    # (batch, text_encoder_2 projection width)
    pooled_prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    negative_pooled_prompt_embeds: torch.Tensor

    @property
    def tokens(self) -> int:
        """Token count of the conditioning (77 times its number of chunks)."""
        return self.prompt_embeds.shape[1]

    @classmethod
    def concat(cls, parts: Sequence[Conditioning]) -> Conditioning:
        """One batch from parts of equal `tokens`, in order."""
        return cls(
            prompt_embeds=torch.cat([part.prompt_embeds for part in parts]),
            pooled_prompt_embeds=torch.cat([part.pooled_prompt_embeds for part in parts]),
            negative_prompt_embeds=torch.cat([part.negative_prompt_embeds for part in parts]),
            negative_pooled_prompt_embeds=torch.cat([part.negative_pooled_prompt_embeds for part in parts]),
        )


class PromptEncoder:
    """Encodes prompt pairs with a pipeline's text encoders, keeping the most recent `capacity`.

    Args:
        pipe: Any SDXL pipeline holding the text encoders and tokenizers.
        device: Where the token ids go (the pipeline's execution device).
        capacity: Prompt pairs kept (a 77-token SDXL pair takes about 0.6 MB in float16).
    """

    def __init__(
        self, pipe: StableDiffusionXLImg2ImgPipeline, device: torch.device, capacity: int = 64
    ) -> None:
        self._pipe = pipe
        self._device = device
        self._capacity = capacity
        self._zero_empty_negative = bool(pipe.config.get("force_zeros_for_empty_prompt", False))
        self._text_encoders: Hashable = None
        self._compel: CompelForSDXL | None = None
        self._cache: OrderedDict[tuple[str, str], Conditioning] = OrderedDict()

    def encode(self, pairs: Sequence[PromptPair], text_encoders: Hashable) -> list[Conditioning]:
        """One Conditioning per pair, each encoded on its own (see the module docstring).

        Args:
            pairs: The tiles' prompts, in batch order.
            text_encoders: What the text encoders are now (the active LoRA stack); when it differs from
                the last call's, nothing cached is used.

        Raises:
            InvalidArgument: on the pair's field, a prompt compel cannot parse (e.g. a `.blend()` whose
                weights do not match its prompts).
        """
        if self._compel is None or text_encoders != self._text_encoders:
            self._compel = CompelForSDXL(self._pipe, device=str(self._device))
            self._cache.clear()
            self._text_encoders = text_encoders
        conditionings = []
        for pair in pairs:
            key = (pair.prompt, pair.negative_prompt)
            if key in self._cache:
                self._cache.move_to_end(key)
            else:
                self._cache[key] = self._encode(self._compel, pair)
                if len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
            conditionings.append(self._cache[key])
        return conditionings

    def _encode(self, compel: CompelForSDXL, pair: PromptPair) -> Conditioning:
        # 1. Encode; compel pads the positive and negative parts to one length.
        try:
            encoded = compel(pair.prompt, negative_prompt=pair.negative_prompt)
        except (PromptParser.ParsingException, ValueError) as exc:
            field = pair.prompt_field if _syntax_error(pair.prompt) else pair.negative_prompt_field
            raise InvalidArgument(field, f"is not valid compel syntax: {exc}") from exc
        # compel applies weights in float32; keep the text encoders' dtype, so a batch has one.
        dtype = encoded.pooled_embeds.dtype
        negative, negative_pooled = encoded.negative_embeds.to(dtype), encoded.negative_pooled_embeds
        # 2. An empty negative prompt means "none", as diffusers reads it for this checkpoint.
        if self._zero_empty_negative and not pair.negative_prompt:
            negative, negative_pooled = torch.zeros_like(negative), torch.zeros_like(negative_pooled)
        return Conditioning(
            prompt_embeds=encoded.embeds.to(dtype),
            pooled_prompt_embeds=encoded.pooled_embeds,
            negative_prompt_embeds=negative,
            negative_pooled_prompt_embeds=negative_pooled,
        )


def _syntax_error(prompt: str) -> bool:
    """Whether compel's parser refuses `prompt` (asked only once encoding failed: parsing is slow)."""
    try:
        Compel.parse_prompt_string(prompt)
    except (PromptParser.ParsingException, ValueError):
        return True
    return False
