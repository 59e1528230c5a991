"""Prompt building, analysis splitting, reference validation and storage, circuit breaker states."""

from __future__ import annotations

import os
import time

import pytest

from services.bridge.circuit import CircuitBreaker, CircuitState
from services.bridge.prompts import Attributes, build_prompt, split_analysis
from services.bridge.references import ReferenceStore, decode_upload
from services.common.errors import ImageError, ImageTooLarge
from tilesmith.v1 import common_pb2

from .conftest import Clock, png_bytes


def test_attributes_merge_in_declaration_order_then_extra_by_key() -> None:
    attributes = Attributes(
        hair_color="auburn",
        hair_style="braided ponytail",
        eye_color="green",
        age="young adult",
        extra={"freckles": "light", "beard": "short"},
    )
    prompt = build_prompt("a knight", ["KNGHT", "knght", "armor"], attributes)
    assert prompt == (
        "a knight, KNGHT, armor, auburn hair, braided ponytail hairstyle, green eyes, young adult, "
        "short beard, light freckles"
    )
    # Stable: the same inputs give the same prompt.
    assert build_prompt("a knight", ["KNGHT", "knght", "armor"], attributes) == prompt


def test_trigger_words_already_in_the_prompt_are_not_repeated() -> None:
    assert build_prompt("pixel art of a KNGHT", ["knght", "pixel art"]) == "pixel art of a KNGHT"
    assert build_prompt("a cat", [], Attributes()) == "a cat"


def test_split_analysis_takes_the_prompt_line() -> None:
    answer = (
        "<|begin_of_box|>A knight in a forest.\nMood: calm.\nPrompt: a knight, forest, calm<|end_of_box|>"
    )
    assert split_analysis(answer) == ("A knight in a forest.\nMood: calm.", "a knight, forest, calm")
    assert split_analysis("Just a description.") == ("Just a description.", "Just a description.")


def test_decode_upload_refuses_non_images_naming_the_field() -> None:
    message = common_pb2.Image(encoding=common_pb2.IMAGE_ENCODING_PNG, data=b"GIF89a not an image")
    with pytest.raises(ImageError) as caught:
        decode_upload(message, field="reference", max_pixels=1 << 20, max_bytes=1 << 20, allow_raw=False)
    assert caught.value.field.startswith("reference")
    raw = common_pb2.Image(
        encoding=common_pb2.IMAGE_ENCODING_RAW,
        format=common_pb2.PIXEL_FORMAT_RGB8,
        width=1,
        height=1,
        data=b"abc",
    )
    with pytest.raises(ImageError, match="raw pixels"):
        decode_upload(raw, field="reference", max_pixels=1 << 20, max_bytes=1 << 20, allow_raw=False)
    big = common_pb2.Image(encoding=common_pb2.IMAGE_ENCODING_PNG, data=png_bytes(64, 64))
    with pytest.raises(ImageTooLarge):
        decode_upload(big, field="reference", max_pixels=32 * 32, max_bytes=1 << 20, allow_raw=False)


def test_reference_store_uses_unique_names_and_cleans_old_files(tmp_path) -> None:
    store = ReferenceStore(tmp_path / "refs", max_age=24 * 3600)
    upload = decode_upload(
        common_pb2.Image(encoding=common_pb2.IMAGE_ENCODING_PNG, data=png_bytes()),
        field="reference",
        max_pixels=1 << 20,
        max_bytes=1 << 20,
        allow_raw=False,
    )
    first, second = store.save(upload), store.save(upload)
    assert first != second
    assert first.read_bytes() == upload.data
    old = time.time() - 25 * 3600
    os.utime(first, (old, old))
    assert store.clean() == 1
    assert not first.exists()
    assert second.exists()


def test_circuit_breaker_opens_skips_and_half_opens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, cooldown=30, clock=clock)
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.try_acquire()
    assert breaker.retry_time == clock.now + 30
    clock.now += 30
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 30
    assert breaker.try_acquire()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive_failures == 0
