"""The captioner on the tiny Qwen3-VL (random weights: its captions are noise; these tests prove the
machinery — determinism, batching, the cache, the context path, the prompts)."""

from __future__ import annotations

import numpy as np
import pytest

from services.captioning.captioner import (
    CONTEXT_SENTENCE,
    DEFAULT_INSTRUCTION,
    DEFAULT_SYSTEM_PROMPT,
    CaptionContext,
    Captioner,
    CaptionerConfig,
    Rect,
    _clean,
    mark_rect,
)
from services.common.errors import Cancelled, FailedPrecondition, InvalidArgument

from .conftest import load_captioner

TOKENS = 12


def _tile(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def uncached(tiny_captioner_dir) -> Captioner:
    return load_captioner(tiny_captioner_dir, device="cpu", max_batch=2, cache_size=0)


@pytest.fixture
def cached(tiny_captioner_dir) -> Captioner:
    return load_captioner(tiny_captioner_dir, device="cpu", max_batch=4, cache_size=8)


def test_same_tile_gives_the_same_caption(uncached) -> None:
    first = uncached.caption([_tile(0)], max_new_tokens=TOKENS)
    second = uncached.caption([_tile(0)], max_new_tokens=TOKENS)
    assert first == second
    assert first[0].text
    assert "\n" not in first[0].text
    assert not first[0].cached
    assert 1 <= first[0].generated_tokens <= TOKENS


def test_batched_captions_come_in_request_order_and_match_single_ones(uncached) -> None:
    tiles = [_tile(1), _tile(2, 64, 32), _tile(3)]  # two batches of max_batch=2, mixed sizes
    batched = uncached.caption(tiles, max_new_tokens=TOKENS)
    singles = [uncached.caption([tile], max_new_tokens=TOKENS)[0] for tile in tiles]
    assert batched == singles
    assert len({result.text for result in batched}) == 3


def test_a_cache_hit_skips_the_model(cached, monkeypatch) -> None:
    (first,) = cached.caption([_tile(4)], max_new_tokens=TOKENS)
    calls = []
    generate = cached._generate
    monkeypatch.setattr(cached, "_generate", lambda *a: calls.append(a) or generate(*a))
    (again,) = cached.caption([_tile(4)], max_new_tokens=TOKENS)
    assert again.cached
    assert again.text == first.text
    assert again.generated_tokens == 0
    assert calls == []
    # Another prompt or token budget is another key.
    (other,) = cached.caption([_tile(4)], instruction="Name the colours.", max_new_tokens=TOKENS)
    assert not other.cached
    assert len(calls) == 1


def test_identical_images_in_one_call_are_generated_once(cached, monkeypatch) -> None:
    rows = []
    generate = cached._generate
    monkeypatch.setattr(
        cached, "_generate", lambda text, batch, n: rows.append(len(batch)) or generate(text, batch, n)
    )
    results = cached.caption([_tile(5), _tile(6), _tile(5)], max_new_tokens=TOKENS)
    assert rows == [2]
    assert len(results) == 3
    assert results[0] == results[2]


def test_context_shows_the_overview_and_changes_the_key(cached) -> None:
    overview = _tile(7, 64, 96)
    context = CaptionContext(overview, (960, 640), (Rect(0, 0, 480, 320), Rect(480, 320, 480, 320)))
    tiles = [_tile(8), _tile(9)]
    with_context = cached.caption(tiles, max_new_tokens=TOKENS, context=context)
    assert [result.cached for result in with_context] == [False, False]
    assert cached.caption(tiles, max_new_tokens=TOKENS, context=context)[0].cached
    moved = CaptionContext(overview, (960, 640), (Rect(10, 0, 480, 320), Rect(480, 320, 480, 320)))
    assert [r.cached for r in cached.caption(tiles, max_new_tokens=TOKENS, context=moved)] == [False, True]
    assert not cached.caption(tiles[:1], max_new_tokens=TOKENS)[0].cached
    with pytest.raises(InvalidArgument) as caught:
        cached.caption(tiles[:1], context=context)
    assert caught.value.field == "context.rects"


def test_prompts_appear_in_the_chat_template(uncached) -> None:
    text = uncached.prompt("SYSTEM-WORDS", "INSTRUCTION-WORDS")
    assert text.index("SYSTEM-WORDS") < text.index("INSTRUCTION-WORDS")
    assert text.count("<|image_pad|>") == 1
    assert text.endswith("<|im_start|>assistant\n")
    framed = uncached.prompt(DEFAULT_SYSTEM_PROMPT, DEFAULT_INSTRUCTION, with_context=True)
    assert f"{CONTEXT_SENTENCE} {DEFAULT_INSTRUCTION}" in framed
    assert framed.count("<|image_pad|>") == 2


def test_mark_rect_outlines_the_scaled_rect_in_red() -> None:
    marked = np.asarray(mark_rect(np.zeros((100, 200, 3), np.uint8), (2000, 1000), Rect(500, 200, 1000, 500)))
    assert tuple(marked[20, 100]) == (255, 0, 0)  # top edge: y 200 / 10, x inside 50..149
    assert tuple(marked[45, 50]) == (255, 0, 0)  # left edge
    assert tuple(marked[45, 100]) == (0, 0, 0)  # inside stays untouched
    assert tuple(marked[5, 5]) == (0, 0, 0)


def test_cancellation_is_checked_between_batches(uncached) -> None:
    with pytest.raises(Cancelled):
        uncached.caption([_tile(10)], cancelled=lambda: True)


def test_missing_weights_name_the_fix(tmp_path) -> None:
    captioner = Captioner(
        CaptionerConfig(tmp_path / "nothing", "tiny-qwen3-vl", "run `make models`", device="cpu")
    )
    with pytest.raises(FailedPrecondition, match="make models"):
        captioner.load()
    with pytest.raises(FailedPrecondition, match="not loaded"):
        captioner.caption([_tile(0)])


def test_clean_makes_one_trimmed_line() -> None:
    assert _clean(" red brick,\n\tmoss\x1d, ") == "red brick, moss"
