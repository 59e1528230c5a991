"""The LoRA library: header parsing, architecture detection, names, upload, install, metadata, stacking."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.diffusion import loras
from services.diffusion.loras import (
    BaseArchitecture,
    LoraInfo,
    LoraLibrary,
    LoraMetadata,
    LoraType,
    StackingRules,
    check_name,
    detect_architecture,
    parse_download_url,
    read_safetensors_header,
    trigger_words,
)
from tests.unit.diffusion import lora_files
from tests.unit.diffusion.lora_files import SD2, SD15, SDXL
from tilesmith.errors import (
    AlreadyExists,
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

MAX_BYTES = 1024 * 1024
HF_TOKEN = "hf_SECRETtoken123"
CIVITAI_TOKEN = "civitai-SECRET-456"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "loras"


@pytest.fixture
def library(folder: Path) -> LoraLibrary:
    return LoraLibrary(folder, StackingRules(), MAX_BYTES, download_backoff_s=0)


def upload(library: LoraLibrary, name: str, data: bytes, chunk: int = 1000, **kwargs: object) -> LoraInfo:
    with library.begin_upload(name, len(data), **kwargs) as up:  # type: ignore[arg-type]
        for start in range(0, len(data), chunk):
            up.write(data[start : start + chunk])
        return up.commit()


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.partial"))


def write_library(folder: Path, entries: dict) -> None:
    (folder / "library.json").write_text(json.dumps({"loras": entries}))


# ---------------------------------------------------------------------------------------------------
# safetensors headers
# ---------------------------------------------------------------------------------------------------


def test_reads_the_header_safetensors_wrote(tmp_path: Path) -> None:
    data = lora_files.lora_bytes(lora_files.kohya(2048, rank=8), metadata={"ss_network_dim": "8"})
    header = read_safetensors_header(lora_files.write(tmp_path / "x.safetensors", data))

    key = f"{lora_files.KOHYA_UNET}_attn2_to_k.lora_down.weight"
    assert header.tensors[key].dtype == "F16"
    assert header.tensors[key].shape == (8, 2048)
    assert header.tensors[f"{lora_files.KOHYA_UNET}_attn2_to_k.alpha"].shape == ()
    assert header.metadata == {"ss_network_dim": "8"}


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        pytest.param(lora_files.pickled(), "pickled PyTorch checkpoint", id="pickle"),
        pytest.param(lora_files.torch_zip(), "pickled PyTorch checkpoint", id="torch-zip"),
        pytest.param(b"\x01\x02\x03", "too short", id="three-bytes"),
        pytest.param(b"", "too short", id="empty"),
        pytest.param(lora_files.raw_safetensors({})[:-1], "points past the end", id="truncated-header"),
        pytest.param((10_000).to_bytes(8, "little") + b"{}", "points past the end", id="length-past-eof"),
        pytest.param(SDXL[:-10], "data section holds", id="truncated-data"),
        pytest.param(SDXL + b"\0" * 4, "data section holds", id="trailing-bytes"),
        pytest.param((4).to_bytes(8, "little") + b"\xff\xfe{}", "not UTF-8 JSON", id="not-utf8"),
        pytest.param((2).to_bytes(8, "little") + b"[]", "not a JSON object", id="json-array"),
        pytest.param(
            lora_files.raw_safetensors({"__metadata__": {"a": 1}}), "__metadata__", id="metadata-not-strings"
        ),
        pytest.param(
            lora_files.raw_safetensors(
                {"t": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16
            ),
            "unknown dtype",
            id="dtype",
        ),
        pytest.param(
            lora_files.raw_safetensors(
                {"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4
            ),
            "not a list of sizes",
            id="negative-shape",
        ),
        pytest.param(
            lora_files.raw_safetensors(
                {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4
            ),
            "needs 8 bytes",
            id="size-mismatch",
        ),
        pytest.param(
            lora_files.raw_safetensors(
                {"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4
            ),
            "not [begin, end]",
            id="reversed-offsets",
        ),
        pytest.param(
            lora_files.raw_safetensors(
                {
                    "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
                },
                b"\0" * 12,
            ),
            "gap or overlap",
            id="hole",
        ),
    ],
)
def test_refuses_what_is_not_safetensors(tmp_path: Path, data: bytes, detail: str) -> None:
    path = lora_files.write(tmp_path / "x.safetensors", data)
    with pytest.raises(InvalidArgument) as caught:
        read_safetensors_header(path)
    assert caught.value.field == "data"
    assert caught.value.message.startswith("not a safetensors file: ")
    assert detail in caught.value.message


def test_caps_the_header_size(tmp_path: Path) -> None:
    path = lora_files.write(tmp_path / "x.safetensors", SDXL)
    with pytest.raises(InvalidArgument, match="over the 64-byte limit") as caught:
        read_safetensors_header(path, field="url", max_header_bytes=64)
    assert caught.value.field == "url"


# ---------------------------------------------------------------------------------------------------
# Base architectures
# ---------------------------------------------------------------------------------------------------


def header_of(tmp_path: Path, data: bytes) -> loras.SafetensorsHeader:
    return read_safetensors_header(lora_files.write(tmp_path / "x.safetensors", data))


@pytest.mark.parametrize(
    ("tensors", "metadata", "expected", "reason"),
    [
        pytest.param(lora_files.kohya(2048), None, BaseArchitecture.SDXL, "width 2048", id="kohya-sdxl"),
        pytest.param(lora_files.peft(2048), None, BaseArchitecture.SDXL, "attn2.to_k.lora_A", id="peft-sdxl"),
        pytest.param(
            lora_files.old_diffusers(2048), None, BaseArchitecture.SDXL, "to_k_lora", id="old-diffusers"
        ),
        pytest.param(lora_files.kohya(768), None, BaseArchitecture.SD15, "width 768", id="kohya-sd15"),
        pytest.param(lora_files.peft(768), None, BaseArchitecture.SD15, "width 768", id="peft-sd15"),
        pytest.param(lora_files.peft(1024), None, BaseArchitecture.SD2, "width 1024", id="peft-sd2"),
        pytest.param(lora_files.text_encoder_2(), None, BaseArchitecture.SDXL, "lora_te2_", id="te2-only"),
        pytest.param(
            {**lora_files.kohya(768), **lora_files.text_encoder_2()},
            {"ss_base_model_version": "sdxl_base_v1-0"},
            BaseArchitecture.SD15,
            "width 768",
            id="widths-win",
        ),
        pytest.param(
            lora_files.text_encoder_1(),
            {"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"},
            BaseArchitecture.SDXL,
            "modelspec.architecture",
            id="modelspec-hint",
        ),
        pytest.param(
            lora_files.text_encoder_1(),
            {"ss_base_model_version": "sd_v1"},
            BaseArchitecture.SD15,
            "ss_base_model_version",
            id="kohya-hint",
        ),
        pytest.param(
            lora_files.text_encoder_1(),
            None,
            BaseArchitecture.UNSPECIFIED,
            "no cross-attention",
            id="unknown",
        ),
        pytest.param(
            lora_files.kohya(96),
            None,
            BaseArchitecture.UNSPECIFIED,
            "matches no base model",
            id="96-on-real-sdxl",
        ),
        pytest.param(
            {**lora_files.kohya(768), **lora_files.peft(2048)},
            None,
            BaseArchitecture.UNSPECIFIED,
            "disagree",
            id="mixed-widths",
        ),
    ],
)
def test_detects_the_base_architecture(
    tmp_path: Path, tensors: dict, metadata: dict | None, expected: BaseArchitecture, reason: str
) -> None:
    guess = detect_architecture(header_of(tmp_path, lora_files.lora_bytes(tensors, metadata)))
    assert guess.architecture is expected
    assert reason in guess.reason


def test_the_tiny_sdxl_width_counts_as_sdxl(tmp_path: Path) -> None:
    header = header_of(tmp_path, lora_files.lora_bytes(lora_files.kohya(96)))
    assert detect_architecture(header, sdxl_cross_attention_dim=96).architecture is BaseArchitecture.SDXL
    real = header_of(tmp_path, SDXL)
    guess = detect_architecture(real, sdxl_cross_attention_dim=96)
    assert guess.architecture is BaseArchitecture.UNSPECIFIED
    assert "the loaded SDXL 96" in guess.reason


# ---------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "detail-tweaker_xl", "Style.v2-1", "_x", "0", "x" * 100])
def test_accepts_names(library: LoraLibrary, name: str) -> None:
    assert library.path_of(name) == library.folder / f"{name}.safetensors"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "is required"),
        ("../x", "not a LoRA name"),
        ("/etc/passwd", "not a LoRA name"),
        ("a/b", "not a LoRA name"),
        ("a\\b", "not a LoRA name"),
        (".hidden", "not starting with '.'"),
        ("..", "not a LoRA name"),
        ("a..b", "must not contain '..'"),
        ("x" * 101, "1..100 characters"),
        ("a b", "not a LoRA name"),
        ("a\n", "not a LoRA name"),
        ("a\x00", "not a LoRA name"),
        ("é", "not a LoRA name"),
        ("x.safetensors", "without the .safetensors extension"),
        ("X.SafeTensors", "without the .safetensors extension"),
    ],
)
def test_refuses_names_naming_the_rule(library: LoraLibrary, name: str, rule: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        library.path_of(name, "params.name")
    assert caught.value.field == "params.name"
    assert rule in caught.value.message


def test_a_symlink_cannot_lead_out_of_the_folder(library: LoraLibrary, tmp_path: Path) -> None:
    outside = lora_files.write(tmp_path / "outside.safetensors", SDXL)
    (library.folder / "evil.safetensors").symlink_to(outside)
    with pytest.raises(InvalidArgument, match="outside the LoRA folder"):
        library.get("evil")
    assert library.list() == []


_NEAR_NAMES = st.text(alphabet="aZ09._-/\\\x00 ~:é", max_size=12) | st.text(max_size=130)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_NEAR_NAMES)
def test_no_accepted_name_escapes_the_folder(library: LoraLibrary, name: str) -> None:
    try:
        path = library.path_of(name)
    except InvalidArgument:
        return
    check_name(name)
    assert path.parent == library.folder
    assert path.name == f"{name}.safetensors"
    assert path.resolve().is_relative_to(library.folder)
    assert not name.startswith(".")
    assert ".." not in name


# ---------------------------------------------------------------------------------------------------
# Upload
# ---------------------------------------------------------------------------------------------------


def test_upload_keeps_a_checked_sdxl_lora(library: LoraLibrary) -> None:
    data = lora_files.lora_bytes(lora_files.kohya(2048, rank=8, te2=True))
    info = upload(library, "detail-xl", data, chunk=777, sha256=hashlib.sha256(data).hexdigest().upper())

    assert info.name == "detail-xl"
    assert info.architecture is BaseArchitecture.SDXL
    assert info.compatible
    assert "cross-attention width 2048" in info.architecture_reason
    assert info.size_bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.tensor_count == 11
    assert info.rank == 8
    assert info.metadata == LoraMetadata()
    assert info.modified_time.tzinfo is not None
    assert (library.folder / "detail-xl.safetensors").read_bytes() == data
    assert library.get("detail-xl") == info
    assert partials(library.folder) == []
    assert not (library.folder / "library.json").exists()  # no metadata given, none written


def test_the_tiny_profile_library_takes_tiny_sdxl_loras(folder: Path) -> None:
    library = LoraLibrary(folder, StackingRules(), MAX_BYTES, sdxl_cross_attention_dim=96)
    assert upload(library, "tiny", lora_files.lora_bytes(lora_files.peft(96))).compatible
    with pytest.raises(FailedPrecondition, match="the loaded SDXL 96"):
        upload(library, "real", SDXL)
    with pytest.raises(FailedPrecondition, match=r"an SD1\.5 LoRA cannot be applied to SDXL"):
        upload(library, "old", SD15)


def test_upload_records_its_metadata(library: LoraLibrary) -> None:
    metadata = LoraMetadata(type=LoraType.STYLE, min_weight=-1, max_weight=1.5, trigger_words=("pixel art",))
    info = upload(library, "pixel", SDXL, metadata=metadata)
    assert info.metadata == metadata
    entry = json.loads((library.folder / "library.json").read_text())["loras"]["pixel"]
    assert entry == {
        "type": "style",
        "min_weight": -1,
        "max_weight": 1.5,
        "trigger_words": ["pixel art"],
        "description": "",
        "source_url": "",
    }


@pytest.mark.parametrize(
    ("data", "error", "text"),
    [
        (lora_files.pickled(), InvalidArgument, "not a safetensors file"),
        (lora_files.torch_zip(), InvalidArgument, "pickled PyTorch checkpoint"),
        (lora_files.lora_bytes({}), InvalidArgument, "holds no tensors"),
        (SD15, FailedPrecondition, "an SD1.5 LoRA cannot be applied to SDXL"),
        (SD2, FailedPrecondition, "an SD2.x LoRA cannot be applied to SDXL"),
        (
            lora_files.lora_bytes(lora_files.text_encoder_1()),
            FailedPrecondition,
            "cannot be read from its tensors",
        ),
    ],
)
def test_upload_refuses_bad_content_and_leaves_nothing(
    library: LoraLibrary, data: bytes, error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as caught:
        upload(library, "bad", data)
    assert text in str(caught.value)
    if isinstance(caught.value, InvalidArgument):
        assert caught.value.field == "data"
    assert list(library.folder.iterdir()) == []
    with pytest.raises(NotFound):
        library.get("bad")


def test_upload_checks_the_byte_count_and_digest(library: LoraLibrary) -> None:
    with pytest.raises(InvalidArgument) as caught:
        upload(library, "x", SDXL, sha256="0" * 64)
    assert caught.value.field == "params.sha256"
    assert hashlib.sha256(SDXL).hexdigest() in caught.value.message

    with library.begin_upload("x", len(SDXL) + 1) as up:
        up.write(SDXL)
        with pytest.raises(InvalidArgument) as caught:
            up.commit()
    assert caught.value.field == "params.total_bytes"

    with pytest.raises(InvalidArgument) as caught, library.begin_upload("x", 10) as up:
        up.write(SDXL)
    assert caught.value.field == "data"
    assert "more bytes than params.total_bytes" in caught.value.message
    assert list(library.folder.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "../x", "total_bytes": 10}, "params.name"),
        ({"name": "x", "total_bytes": 0}, "params.total_bytes"),
        ({"name": "x", "total_bytes": 10, "sha256": "abc"}, "params.sha256"),
        (
            {"name": "x", "total_bytes": 10, "metadata": LoraMetadata(min_weight=1, max_weight=0)},
            "params.metadata.min_weight",
        ),
    ],
)
def test_upload_checks_its_params_first(library: LoraLibrary, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        library.begin_upload(**kwargs)
    assert caught.value.field == field
    assert partials(library.folder) == []


def test_upload_enforces_the_size_cap(folder: Path) -> None:
    library = LoraLibrary(folder, StackingRules(), 100)
    with pytest.raises(ResourceExhausted, match="over the LoRA size cap of 100 bytes"):
        library.begin_upload("x", 101)
    up = library.begin_upload("x", 100)
    up.write(b"\0" * 60)
    with pytest.raises(ResourceExhausted, match="size cap"):
        up.write(b"\0" * 60)
    assert partials(folder) == []


def test_overwrite_semantics(library: LoraLibrary) -> None:
    style = LoraMetadata(type=LoraType.STYLE, trigger_words=("ink",))
    upload(library, "x", SDXL, metadata=style)
    with pytest.raises(AlreadyExists, match="set overwrite"):
        library.begin_upload("x", len(SDXL))

    # Replacing the file without metadata keeps the library entry.
    other = lora_files.lora_bytes(lora_files.peft(2048))
    info = upload(library, "x", other, overwrite=True)
    assert info.sha256 == hashlib.sha256(other).hexdigest()
    assert info.metadata == style
    # With metadata, the entry is replaced too.
    info = upload(library, "x", SDXL, overwrite=True, metadata=LoraMetadata(description="v3"))
    assert info.metadata == LoraMetadata(description="v3")
    assert info.sha256 == hashlib.sha256(SDXL).hexdigest()


def test_the_second_of_two_racing_uploads_is_refused(library: LoraLibrary) -> None:
    first = library.begin_upload("x", len(SDXL))
    other = lora_files.lora_bytes(lora_files.peft(2048))
    second = library.begin_upload("x", len(other))
    first.write(SDXL)
    second.write(other)
    first.commit()
    with pytest.raises(AlreadyExists):
        second.commit()
    assert (library.folder / "x.safetensors").read_bytes() == SDXL
    assert partials(library.folder) == []


def test_abort_and_unfinished_uploads_leave_nothing(library: LoraLibrary) -> None:
    up = library.begin_upload("x", len(SDXL))
    up.write(SDXL[:100])
    assert len(partials(library.folder)) == 1
    up.abort()
    with library.begin_upload("y", len(SDXL)) as up:
        up.write(SDXL[:100])
    assert partials(library.folder) == []
    assert library.list() == []


def test_cleanup_partials_removes_only_stale_ones(library: LoraLibrary) -> None:
    stale = library.folder / ".x.0123.partial"
    stale.write_bytes(b"old")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = library.begin_upload("y", len(SDXL))
    fresh.write(SDXL[:10])

    assert library.cleanup_partials() == 1
    assert not stale.exists()
    assert len(partials(library.folder)) == 1  # another transfer's, still in progress
    assert library.cleanup_partials(older_than_s=0) == 1
    assert partials(library.folder) == []


# ---------------------------------------------------------------------------------------------------
# Listing, library.json, delete
# ---------------------------------------------------------------------------------------------------


def test_list_is_sorted_filterable_and_skips_what_it_cannot_read(
    library: LoraLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    folder = library.folder
    for name, data in (("b", SDXL), ("A", SDXL), ("old", SD15), ("c", SD2)):
        lora_files.write(folder / f"{name}.safetensors", data)
    lora_files.write(folder / "broken.safetensors", lora_files.pickled())
    lora_files.write(folder / "Detail Tweaker.safetensors", SDXL)
    lora_files.write(folder / "notes.txt", b"hi")
    (folder / "folder.safetensors").mkdir()

    with caplog.at_level(logging.WARNING):
        infos = library.list()
        library.list()
    assert [i.name for i in infos] == ["A", "b", "c", "old"]
    assert [(i.architecture, i.compatible) for i in infos] == [
        (BaseArchitecture.SDXL, True),
        (BaseArchitecture.SDXL, True),
        (BaseArchitecture.SD2, False),
        (BaseArchitecture.SD15, False),
    ]
    assert [i.name for i in library.list(BaseArchitecture.SDXL)] == ["A", "b"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # once per file, not once per listing
    assert any("broken.safetensors" in w and "not a safetensors file" in w for w in warnings)
    assert any("Detail Tweaker.safetensors" in w for w in warnings)
    with pytest.raises(FailedPrecondition, match="'broken' cannot be read: not a safetensors file"):
        library.get("broken")
    with pytest.raises(NotFound):
        library.get("folder")


def test_inspection_is_cached_until_the_file_changes(
    library: LoraLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = lora_files.write(library.folder / "x.safetensors", SDXL)
    hashed: list[Path] = []
    real = loras._sha256_file
    monkeypatch.setattr(loras, "_sha256_file", lambda p: hashed.append(p) or real(p))

    first = library.list()
    assert library.list() == first
    assert library.get("x") == first[0]
    assert hashed == [path]

    lora_files.write(path, lora_files.lora_bytes(lora_files.peft(2048, rank=16)))
    later = time.time() + 5
    os.utime(path, (later, later))
    (info,) = library.list()
    assert info.rank == 16
    assert len(hashed) == 2


def test_metadata_defaults_without_a_library_file(library: LoraLibrary) -> None:
    upload(library, "x", SDXL)
    metadata = library.get("x").metadata
    assert metadata.type is LoraType.UNSPECIFIED
    assert (metadata.min_weight, metadata.max_weight, metadata.suggested_weight) == (-2.0, 2.0, 1.0)
    assert metadata.trigger_words == ()


def test_a_hand_written_entry_may_leave_keys_out(library: LoraLibrary) -> None:
    upload(library, "x", SDXL)
    write_library(library.folder, {"x": {"type": "detail", "max_weight": 0.5}, "gone": {"type": "style"}})
    metadata = library.get("x").metadata
    assert metadata == LoraMetadata(type=LoraType.DETAIL, max_weight=0.5)
    assert metadata.suggested_weight == 0.5  # 1.0 lies outside the range


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("{not json", "is not valid JSON"),
        ('{"loras": []}', "is not {"),
        ('{"loras": {"x": {"max_wieght": 1}}}', "unknown key(s) ['max_wieght']"),
        ('{"loras": {"x": {"type": "lighting"}}}', "'lighting' is not a valid LoraType"),
        ('{"loras": {"x": {"min_weight": 3}}}', "entry.min_weight: 3 is above max_weight 2"),
        ('{"loras": {"x": {"trigger_words": "a"}}}', "trigger_words is a list of strings"),
    ],
)
def test_a_broken_library_file_is_reported_not_dropped(library: LoraLibrary, content: str, text: str) -> None:
    upload(library, "x", SDXL)
    (library.folder / "library.json").write_text(content)
    for call in (library.list, lambda: library.get("x"), lambda: library.validate_stack([("x", 1.0)])):
        with pytest.raises(FailedPrecondition) as caught:
            call()
        assert "library.json" in caught.value.message
        assert text in caught.value.message


def test_update_metadata_round_trips_through_the_file(library: LoraLibrary) -> None:
    upload(library, "x", SDXL)
    metadata = LoraMetadata(
        type=LoraType.CHARACTER,
        min_weight=0.0,
        max_weight=1.2,
        default_weight=0.8,
        trigger_words=("1girl", "red hair"),
        description="A <b>character</b>",
        source_url="https://civitai.com/models/1?modelVersionId=2",
    )
    info = library.update_metadata("x", metadata)
    assert info.metadata == metadata

    again = LoraLibrary(library.folder, StackingRules(), MAX_BYTES)
    assert again.get("x").metadata == metadata
    document = json.loads((library.folder / "library.json").read_text())
    assert document["version"] == 1
    assert document["loras"]["x"]["default_weight"] == 0.8

    # It replaces the entry as a whole.
    assert library.update_metadata("x", LoraMetadata()).metadata == LoraMetadata()


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        (LoraMetadata(min_weight=1.0, max_weight=0.5), "metadata.min_weight"),
        (LoraMetadata(max_weight=11.0), "metadata.max_weight"),
        (LoraMetadata(min_weight=math.nan), "metadata.min_weight"),
        (LoraMetadata(default_weight=3.0), "metadata.default_weight"),
        (LoraMetadata(trigger_words=("w",) * 33), "metadata.trigger_words"),
        (LoraMetadata(trigger_words=("ok", " ")), "metadata.trigger_words[1]"),
        (LoraMetadata(trigger_words=("w" * 101,)), "metadata.trigger_words[0]"),
        (LoraMetadata(description="d" * 2001), "metadata.description"),
        (LoraMetadata(source_url="u" * 2001), "metadata.source_url"),
    ],
)
def test_update_metadata_validates(library: LoraLibrary, metadata: LoraMetadata, field: str) -> None:
    upload(library, "x", SDXL)
    with pytest.raises(InvalidArgument) as caught:
        library.update_metadata("x", metadata)
    assert caught.value.field == field
    assert library.get("x").metadata == LoraMetadata()


def test_update_and_delete_of_unknown_or_bad_names(library: LoraLibrary) -> None:
    with pytest.raises(NotFound, match="no LoRA named 'nope'"):
        library.update_metadata("nope", LoraMetadata())
    with pytest.raises(NotFound):
        library.delete("nope")
    with pytest.raises(InvalidArgument) as caught:
        library.delete("../x")
    assert caught.value.field == "name"


def test_concurrent_updates_lose_nothing(folder: Path) -> None:
    # Two library objects on one folder stand in for two replicas sharing a volume.
    replicas = [LoraLibrary(folder, StackingRules(), MAX_BYTES) for _ in range(2)]
    names = [f"lora{i}" for i in range(8)]
    for name in names:
        lora_files.write(folder / f"{name}.safetensors", SDXL)
    errors: list[BaseException] = []

    def edit(i: int, name: str) -> None:
        try:
            for round_ in range(10):
                replicas[i % 2].update_metadata(name, LoraMetadata(trigger_words=(f"{name}-{round_}",)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(i, name)) for i, name in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for name in names:
        assert replicas[0].get(name).metadata.trigger_words == (f"{name}-9",)
    assert partials(folder) == []


def test_delete_removes_the_file_and_its_entry(library: LoraLibrary) -> None:
    upload(library, "x", SDXL, metadata=LoraMetadata(type=LoraType.STYLE))
    upload(library, "y", SDXL, metadata=LoraMetadata(type=LoraType.DETAIL))
    library.delete("x")
    assert [i.name for i in library.list()] == ["y"]
    assert set(json.loads((library.folder / "library.json").read_text())["loras"]) == {"y"}
    with pytest.raises(NotFound):
        library.get("x")
    # A new upload under the old name starts from the defaults.
    assert upload(library, "x", SDXL).metadata == LoraMetadata()


# ---------------------------------------------------------------------------------------------------
# Install from a URL
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "download", "host", "file_name"),
    [
        (
            "https://huggingface.co/owner/repo/resolve/main/detail-xl.safetensors",
            "https://huggingface.co/owner/repo/resolve/main/detail-xl.safetensors",
            "huggingface",
            "detail-xl.safetensors",
        ),
        (
            "https://huggingface.co/owner/repo/blob/v1.0/sub/dir/my%20lora.safetensors?download=true",
            "https://huggingface.co/owner/repo/resolve/v1.0/sub/dir/my%20lora.safetensors",
            "huggingface",
            "my lora.safetensors",
        ),
        (
            "https://civitai.com/api/download/models/123456",
            "https://civitai.com/api/download/models/123456",
            "civitai",
            "123456",
        ),
        (
            "https://civitai.com/api/download/models/123456?type=Model&format=SafeTensor",
            "https://civitai.com/api/download/models/123456?type=Model&format=SafeTensor",
            "civitai",
            "123456",
        ),
        (
            "https://civitai.com/models/4201/detail-tweaker?modelVersionId=135867",
            "https://civitai.com/api/download/models/135867",
            "civitai",
            "135867",
        ),
        (
            "https://www.civitai.com/models/4201?modelVersionId=135867",
            "https://civitai.com/api/download/models/135867",
            "civitai",
            "135867",
        ),
    ],
)
def test_parses_download_urls(url: str, download: str, host: str, file_name: str) -> None:
    source = parse_download_url(url)
    assert (source.url, source.host, source.file_name) == (download, host, file_name)


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("http://huggingface.co/o/r/resolve/main/x.safetensors", "not a supported download"),
        ("https://example.com/x.safetensors", "not a supported download"),
        ("https://huggingface.co/o/r/resolve/main/x.ckpt", "not a supported download"),
        ("https://huggingface.co/o/r/tree/main/x.safetensors", "not a supported download"),
        ("https://huggingface.co/o/r", "not a supported download"),
        ("https://huggingface.co:8443/o/r/resolve/main/x.safetensors", "not a supported download"),
        ("https://user:pw@civitai.com/api/download/models/1", "not a supported download"),
        ("https://civitai.com/models/4201", "add ?modelVersionId="),
        ("https://civitai.com/models/4201?modelVersionId=abc", "add ?modelVersionId="),
        ("https://civitai.com/api/download/models/x1", "not a supported download"),
        ("https://[::1/x", "is not a URL"),
        ("", "not a supported download"),
        ("https://civitai.com/" + "a" * 2000, "at most 2000"),
    ],
)
def test_refuses_other_urls(url: str, text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_download_url(url)
    assert caught.value.field == "url"
    assert text in caught.value.message


def test_a_url_carrying_a_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_download_url("https://civitai.com/api/download/models/1?token=abcd1234")
    assert "abcd1234" not in str(caught.value)
    assert "uses its own" in caught.value.message


class FakeHosts:
    """Hugging Face and CivitAI as an httpx.MockTransport: records every request."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._handler(request)


def installer(
    folder: Path, handler: Callable[[httpx.Request], httpx.Response], **kwargs: object
) -> tuple[LoraLibrary, FakeHosts]:
    hosts = FakeHosts(handler)
    options: dict = {
        "hf_token": HF_TOKEN,
        "civitai_token": CIVITAI_TOKEN,
        "http_client": httpx.Client(transport=httpx.MockTransport(hosts)),
        "download_backoff_s": 0,
    }
    options.update(kwargs)
    library = LoraLibrary(folder, StackingRules(), options.pop("max_bytes", MAX_BYTES), **options)
    return library, hosts


def file_response(data: bytes, file_name: str | None = None, **headers: str) -> httpx.Response:
    all_headers = {"content-length": str(len(data)), **headers}
    if file_name:
        all_headers["content-disposition"] = f'attachment; filename="{file_name}"'
    return httpx.Response(200, headers=all_headers, content=data)


def test_installs_from_hugging_face_through_its_cdn_redirect(folder: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "huggingface.co":
            return httpx.Response(302, headers={"location": "https://cdn-lfs.hf.co/abc?X-Amz-Signature=s"})
        return httpx.Response(
            200,
            headers={"content-disposition": "inline; filename*=UTF-8''detail-xl.safetensors"},
            content=iter([SDXL[:1000], SDXL[1000:]]),  # streamed, no Content-Length
        )

    library, hosts = installer(folder, handler)
    seen: list[tuple[int, int | None]] = []
    url = "https://huggingface.co/owner/repo/blob/main/detail-xl.safetensors"
    info = library.install(url, progress=lambda done, total: seen.append((done, total)))

    assert info.name == "detail-xl"
    assert info.sha256 == hashlib.sha256(SDXL).hexdigest()
    assert info.metadata.source_url == url
    assert [str(r.url) for r in hosts.requests] == [
        "https://huggingface.co/owner/repo/resolve/main/detail-xl.safetensors",
        "https://cdn-lfs.hf.co/abc?X-Amz-Signature=s",
    ]
    assert hosts.requests[0].headers["authorization"] == f"Bearer {HF_TOKEN}"
    assert "authorization" not in hosts.requests[1].headers  # the token stays with its host
    assert seen[-1] == (len(SDXL), None)
    assert partials(folder) == []


def test_installs_from_civitai_naming_it_after_the_served_file(folder: Path) -> None:
    library, hosts = installer(folder, lambda r: file_response(SDXL, "Detail Tweaker XL (v2).safetensors"))
    seen: list[tuple[int, int | None]] = []
    info = library.install(
        "https://civitai.com/models/4201?modelVersionId=135867",
        metadata=LoraMetadata(type=LoraType.DETAIL),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert info.name == "Detail_Tweaker_XL_v2_"
    assert info.metadata == LoraMetadata(
        type=LoraType.DETAIL, source_url="https://civitai.com/models/4201?modelVersionId=135867"
    )
    assert str(hosts.requests[0].url) == "https://civitai.com/api/download/models/135867"
    assert hosts.requests[0].headers["authorization"] == f"Bearer {CIVITAI_TOKEN}"
    assert seen[-1] == (len(SDXL), len(SDXL))


def test_install_name_and_overwrite(folder: Path) -> None:
    library, hosts = installer(folder, lambda r: file_response(SDXL, "served.safetensors"))
    url = "https://civitai.com/api/download/models/7"
    assert library.install(url, name="mine").name == "mine"
    upload(library, "served", SDXL, metadata=LoraMetadata(type=LoraType.STYLE, source_url="elsewhere"))

    with pytest.raises(AlreadyExists):
        library.install(url)
    info = library.install(url, overwrite=True)
    # The entry stays, but says where the file now came from.
    assert info.metadata == LoraMetadata(type=LoraType.STYLE, source_url=url)

    requests = len(hosts.requests)
    with pytest.raises(InvalidArgument) as caught:
        library.install(url, name="../x")
    assert caught.value.field == "name"
    with pytest.raises(AlreadyExists):
        library.install(url, name="mine")
    assert len(hosts.requests) == requests  # refused before any download


def test_install_retries_transient_failures(folder: Path) -> None:
    answers = iter([httpx.Response(500), httpx.Response(429), file_response(SDXL, "x.safetensors")])
    library, hosts = installer(folder, lambda r: next(answers))
    assert library.install("https://civitai.com/api/download/models/1").name == "x"
    assert len(hosts.requests) == 3


def test_install_retries_a_body_cut_short(folder: Path) -> None:
    cut = httpx.Response(200, headers={"content-length": str(len(SDXL))}, content=SDXL[:100])
    answers = iter([cut, file_response(SDXL, "x.safetensors")])
    library, hosts = installer(folder, lambda r: next(answers))
    assert (
        library.install("https://civitai.com/api/download/models/1").sha256
        == hashlib.sha256(SDXL).hexdigest()
    )
    assert len(hosts.requests) == 2


def test_install_gives_up_with_unavailable(folder: Path) -> None:
    library, hosts = installer(folder, lambda r: httpx.Response(503))
    with pytest.raises(Unavailable, match=r"HTTP 503 .*gave up after 3 tries"):
        library.install("https://civitai.com/api/download/models/1")
    assert len(hosts.requests) == 3

    def refuse_connection(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    library, hosts = installer(folder, refuse_connection, download_attempts=2)
    with pytest.raises(Unavailable, match="ConnectError"):
        library.install("https://huggingface.co/o/r/resolve/main/x.safetensors")
    assert len(hosts.requests) == 2

    loop = httpx.Response(302, headers={"location": "https://civitai.com/api/download/models/1"})
    library, _ = installer(folder, lambda r: loop)
    with pytest.raises(Unavailable, match="TooManyRedirects"):
        library.install("https://civitai.com/api/download/models/1")
    assert partials(folder) == []


def test_a_missing_file_is_not_found_without_retries(folder: Path) -> None:
    library, hosts = installer(folder, lambda r: httpx.Response(404))
    with pytest.raises(NotFound, match="HTTP 404"):
        library.install("https://huggingface.co/o/r/resolve/main/x.safetensors")
    assert len(hosts.requests) == 1


@pytest.mark.parametrize(
    ("status", "tokens", "text"),
    [
        (401, {"hf_token": None}, "needs a Hugging Face token and the service has none configured"),
        (403, {}, "the service's Hugging Face token was refused"),
        (451, {}, "HTTP 451"),
    ],
)
def test_a_refused_download_is_unavailable_and_never_shows_the_token(
    folder: Path, caplog: pytest.LogCaptureFixture, status: int, tokens: dict, text: str
) -> None:
    library, hosts = installer(folder, lambda r: httpx.Response(status), **tokens)
    with caplog.at_level(logging.DEBUG), pytest.raises(Unavailable) as caught:
        library.install("https://huggingface.co/o/r/resolve/main/x.safetensors")
    assert text in caught.value.message
    assert len(hosts.requests) == 1
    assert HF_TOKEN not in str(caught.value)
    assert HF_TOKEN not in caplog.text


def test_install_refuses_an_announced_oversize_file_before_its_body(folder: Path) -> None:
    read: list[bool] = []

    def body() -> Iterator[bytes]:
        read.append(True)
        yield b"\0" * 10

    library, _ = installer(
        folder, lambda r: httpx.Response(200, headers={"content-length": str(MAX_BYTES + 1)}, content=body())
    )
    with pytest.raises(ResourceExhausted, match=f"{MAX_BYTES + 1} bytes, over the LoRA size cap"):
        library.install("https://civitai.com/api/download/models/1")
    assert read == []


def test_install_enforces_the_cap_while_streaming(folder: Path) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(100):
            yield b"\0" * 1000

    library, _ = installer(folder, lambda r: httpx.Response(200, content=body()), max_bytes=5000)
    with pytest.raises(ResourceExhausted, match="over the LoRA size cap of 5000 bytes"):
        library.install("https://civitai.com/api/download/models/1")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "text"),
    [
        (lora_files.pickled(), {}, InvalidArgument, "not a safetensors file"),
        (b"<html>Log in</html>", {}, InvalidArgument, "not a safetensors file"),
        (SD15, {}, FailedPrecondition, "an SD1.5 LoRA cannot be applied to SDXL"),
        (SDXL, {"sha256": "a" * 64}, InvalidArgument, "not aaaa"),
    ],
)
def test_install_checks_the_content_like_an_upload(
    folder: Path, data: bytes, kwargs: dict, error: type[Exception], text: str
) -> None:
    library, _ = installer(folder, lambda r: file_response(data, "x.safetensors"))
    with pytest.raises(error) as caught:
        library.install("https://civitai.com/api/download/models/1", **kwargs)
    assert text in str(caught.value)
    if isinstance(caught.value, InvalidArgument):
        assert caught.value.field in ("url", "sha256")
    assert list(folder.iterdir()) == []


def test_a_progress_callback_can_cancel_an_install(folder: Path) -> None:
    library, hosts = installer(folder, lambda r: file_response(SDXL, "x.safetensors"))

    def cancel(done: int, total: int | None) -> None:
        raise Cancelled("client went away")

    with pytest.raises(Cancelled):
        library.install("https://civitai.com/api/download/models/1", progress=cancel)
    assert len(hosts.requests) == 1
    assert list(folder.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# Stacking rules
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def stocked(library: LoraLibrary) -> LoraLibrary:
    """A library with three LoRAs of each type, six untyped, one ranged, one SD1.5 and one broken."""
    folder = library.folder
    entries: dict = {}
    for lora_type in ("style", "detail", "character"):
        for i in range(1, 4):
            entries[f"{lora_type}{i}"] = {"type": lora_type, "trigger_words": [f"{lora_type}-word", f"w{i}"]}
    for i in range(1, 7):
        entries[f"plain{i}"] = {}
    entries["ranged"] = {"min_weight": -1, "max_weight": 1.1}
    for name in entries:
        lora_files.write(folder / f"{name}.safetensors", SDXL)
    lora_files.write(folder / "old.safetensors", SD15)
    lora_files.write(folder / "broken.safetensors", lora_files.torch_zip())
    write_library(folder, entries)
    return library


def test_an_empty_stack_is_fine(stocked: LoraLibrary) -> None:
    assert stocked.validate_stack([]) == []


def test_a_valid_stack_resolves_for_the_engine(stocked: LoraLibrary) -> None:
    resolved = stocked.validate_stack(
        [("style1", 0.8), ("detail1", -0.5), ("detail2", 0.0), ("character1", 1.0)]
    )
    assert [(r.name, r.weight, r.type) for r in resolved] == [
        ("style1", 0.8, LoraType.STYLE),
        ("detail1", -0.5, LoraType.DETAIL),
        ("detail2", 0.0, LoraType.DETAIL),
        ("character1", 1.0, LoraType.CHARACTER),
    ]
    assert resolved[0].path == stocked.folder / "style1.safetensors"
    assert resolved[0].sha256 == hashlib.sha256(SDXL).hexdigest()
    assert resolved[0].architecture is BaseArchitecture.SDXL
    assert trigger_words(resolved) == ["style-word", "w1", "detail-word", "character-word"]


@pytest.mark.parametrize(
    ("stack", "field", "text"),
    [
        (
            [(f"plain{i}", 0.1) for i in range(1, 7)],
            "loras",
            "6 LoRAs; the stacking rules allow at most 5 LoRAs (max_loras)",
        ),
        ([("style1", 0.5), ("style2", 0.5)], "loras", "at most 1 style LoRA (max_per_type.style)"),
        ([(f"detail{i}", 0.5) for i in range(1, 4)], "loras", "at most 2 detail LoRAs (max_per_type.detail)"),
        (
            [(f"character{i}", 0.5) for i in range(1, 4)],
            "loras",
            "3 character LoRAs (character1, character2, character3)",
        ),
        (
            [("plain1", 1.5), ("plain2", -1.5), ("plain3", 0.6)],
            "loras",
            "the sum of |weight| is 3.6; the stacking rules allow at most 3.5 (max_weight_sum)",
        ),
        ([("plain1", 2.5)], "loras[0].weight", "2.5 is outside 'plain1''s library range -2..2"),
        (
            [("plain1", 0.5), ("ranged", -1.5)],
            "loras[1].weight",
            "-1.5 is outside 'ranged''s library range -1..1.1",
        ),
        ([("plain1", math.nan)], "loras[0].weight", "nan is outside"),
        (
            [("plain1", 0.5), ("plain1", 0.5)],
            "loras[1].name",
            "'plain1' is already loras[0]; a LoRA may appear once",
        ),
        ([("../plain1", 0.5)], "loras[0].name", "not a LoRA name"),
    ],
)
def test_each_broken_rule_is_named(stocked: LoraLibrary, stack: list, field: str, text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        stocked.validate_stack(stack)
    assert caught.value.field == field
    assert text in caught.value.message


def test_unknown_incompatible_and_unreadable_loras(stocked: LoraLibrary) -> None:
    with pytest.raises(NotFound, match=r"loras\[1\]\.name: no LoRA named 'nope'"):
        stocked.validate_stack([("plain1", 1.0), ("nope", 1.0)])
    with pytest.raises(FailedPrecondition, match=r"loras\[0\]: .*an SD1\.5 LoRA cannot be applied to SDXL"):
        stocked.validate_stack([("old", 1.0)])
    with pytest.raises(FailedPrecondition, match="'broken' cannot be read"):
        stocked.validate_stack([("broken", 1.0)])


def test_float32_weights_at_the_limits_pass(stocked: LoraLibrary) -> None:
    # Weights arrive as proto float32: 1.1 becomes 1.10000002, and 1.2 + 1.2 + 1.1 sums past 3.5.
    f32 = [float(np.float32(w)) for w in (1.2, 1.2, 1.1)]
    assert sum(f32) > 3.5
    stocked.validate_stack([("plain1", f32[0]), ("plain2", f32[1]), ("ranged", f32[2])])


def test_configured_rules_and_field_names(folder: Path) -> None:
    library = LoraLibrary(
        folder, StackingRules(max_loras=2, max_per_type={"style": 0}, max_weight_sum=1.0), MAX_BYTES
    )
    for name in ("a", "b", "c"):
        lora_files.write(folder / f"{name}.safetensors", SDXL)
    write_library(folder, {"a": {"type": "style"}})

    with pytest.raises(InvalidArgument, match=r"at most 0 style LoRAs \(max_per_type.style\)"):
        library.validate_stack([("a", 0.5)])
    with pytest.raises(InvalidArgument, match="at most 2 LoRAs"):
        library.validate_stack([("a", 0.1), ("b", 0.1), ("c", 0.1)])
    with pytest.raises(InvalidArgument, match=r"at most 1 \(max_weight_sum\)"):
        library.validate_stack([("b", 0.6), ("c", -0.6)])
    with pytest.raises(InvalidArgument) as caught:
        library.validate_stack([("b", 3.0)], field="sampling.loras")
    assert caught.value.field == "sampling.loras[0].weight"
    # Untyped LoRAs count against max_loras only.
    assert len(library.validate_stack([("b", 0.5), ("c", 0.5)])) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_per_type": {"unspecified": 1}},
        {"max_per_type": {"style": -1}},
        {"max_per_type": {"lighting": 1}},
        {"max_loras": -1},
        {"max_weight_sum": 0},
        {"max_lora": 5},
    ],
)
def test_stacking_rules_validate_themselves(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        StackingRules(**kwargs)


def test_stacking_rules_defaults() -> None:
    rules = StackingRules()
    assert rules.max_loras == 5
    assert rules.max_per_type == {LoraType.STYLE: 1, LoraType.DETAIL: 2, LoraType.CHARACTER: 2}
    assert rules.max_weight_sum == 3.5
    assert StackingRules.model_validate_json('{"max_per_type": {"detail": 3}}').max_per_type == {
        LoraType.DETAIL: 3
    }
