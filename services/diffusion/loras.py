"""The LoRA library: SDXL LoRA files in one folder, their library metadata, and the stacking rules.

Plain domain code (no gRPC): the Diffusion servicer converts its LoRA messages to these calls. Nothing
here imports torch: a LoRA is inspected by reading its safetensors header, never by loading it.

    <folder>/<name>.safetensors   one LoRA per file; <name> follows `check_name` (the proto's rule)
    <folder>/library.json         optional metadata, written atomically:
                                  {"version": 1, "loras": {"<name>": {"type": "style",
                                   "min_weight": -1.0, "max_weight": 1.5, "default_weight": 0.8,
                                   "trigger_words": ["..."], "description": "...", "source_url": "..."}}}
                                  A LoRA without an entry has `LoraMetadata()`: type unspecified,
                                  weights -2..2. An entry may leave out any key (its default applies);
                                  an unknown key or bad value makes the library FailedPrecondition
                                  until the file is fixed, rather than being silently dropped.
    <folder>/.*.partial           uploads, downloads and library.json rewrites in flight
    <folder>/.library.lock        flock'd while the library changes (replicas share the folder)

Only SDXL LoRAs enter the library: a file's base architecture is read from its tensors
(`detect_architecture`) when it is uploaded or installed, and anything else — SD1.x, SD2.x, or a
file whose architecture cannot be told — is refused with FailedPrecondition. "SDXL" means "matches
the loaded checkpoint's cross-attention width" (2048 in production, 96 for the tiny test model).

Errors (`tilesmith.errors`); InvalidArgument fields are named as in the request messages of
diffusion.proto (`params.name` in UploadLora, `name`/`url` in InstallLora, `loras[2].weight`):

    InvalidArgument     a bad name, URL, digest, byte count, metadata value or stack; a file that
                        is not safetensors (field `data` for uploads, `url` for installs)
    NotFound            an unknown LoRA; a URL its host says does not exist (HTTP 404 / 410)
    AlreadyExists       the name is taken and `overwrite` is false
    FailedPrecondition  a LoRA of another base architecture; an unreadable LoRA file or library.json
    ResourceExhausted   a file over the size cap (announced, or while it streams)
    Unavailable         the download host cannot be reached, keeps failing (429 / 5xx), or refuses
                        the download (401 / 403 / other 4xx)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import Message
from enum import StrEnum
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import Any, Literal, NamedTuple, Self
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import tenacity
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

__all__ = [
    "MAX_HEADER_BYTES",
    "ArchitectureGuess",
    "BaseArchitecture",
    "DownloadSource",
    "LoraInfo",
    "LoraLibrary",
    "LoraMetadata",
    "LoraType",
    "ResolvedLora",
    "SafetensorsHeader",
    "StackingRules",
    "TensorInfo",
    "Upload",
    "check_name",
    "detect_architecture",
    "parse_download_url",
    "read_safetensors_header",
    "trigger_words",
]

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
LIBRARY_FILE = "library.json"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_NAME_RULE = "1..100 characters of A-Z a-z 0-9 . _ -, not starting with '.'"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

# safetensors' own parser refuses headers over 100 MB; a LoRA's header is a few hundred KB.
MAX_HEADER_BYTES = 100_000_000
_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip

# Metadata bounds (LoraMetadata in diffusion.proto).
_WEIGHT_BOUND = 10.0
_MAX_TRIGGER_WORDS = 32
_MAX_TRIGGER_WORD_CHARS = 100
_MAX_TEXT_CHARS = 2000
# Weights arrive as proto float32 (1.1 becomes 1.10000002) while library ranges are often typed by
# hand, so range and sum checks allow this much slack.
_WEIGHT_TOLERANCE = 1e-6

_PROGRESS_INTERVAL_S = 0.25
_HTTP_TIMEOUT = httpx.Timeout(30.0)
_USER_AGENT = "tilesmith-lora-install/1"


class BaseArchitecture(StrEnum):
    """Base model family of a LoRA; the values read well in messages.

    Member names are the proto's `tilesmith.v1.BaseArchitecture` without its prefix:
    `common_pb2.BaseArchitecture.Value("BASE_ARCHITECTURE_" + arch.name)` converts.
    """

    UNSPECIFIED = "unspecified"
    SD15 = "SD1.5"
    SD2 = "SD2.x"
    SDXL = "SDXL"


class LoraType(StrEnum):
    """The role a LoRA plays; stacking rules count LoRAs per type.

    Member names are the proto's `tilesmith.v1.LoraType` without its prefix:
    `diffusion_pb2.LoraType.Value("LORA_TYPE_" + lora_type.name)` converts.
    """

    UNSPECIFIED = "unspecified"
    STYLE = "style"
    DETAIL = "detail"
    CHARACTER = "character"


def _quote(value: str, limit: int = 120) -> str:
    """repr() of a caller's string, cut short so an absurd value cannot flood a message."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


# ---------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------


def check_name(name: str, field: str = "name") -> None:
    """Refuse a LoRA name that breaks the proto's rule (LoraInfo.name) or could leave the folder.

    A name is the file name without `.safetensors`: 1..100 characters of [A-Za-z0-9._-], not
    starting with "." and without "..". A name ending in `.safetensors` is refused, not stripped.
    `LoraLibrary` also checks that the resolved path stays inside its folder (symlinks).

    Raises:
        InvalidArgument: on `field`, naming the rule broken.
    """
    if not name:
        raise InvalidArgument(field, f"is required: {_NAME_RULE}")
    if name.lower().endswith(SUFFIX):
        raise InvalidArgument(field, f"{_quote(name)}: give the name without the {SUFFIX} extension")
    if not _NAME.fullmatch(name):
        raise InvalidArgument(field, f"{_quote(name)} is not a LoRA name: {_NAME_RULE}")
    if ".." in name:
        raise InvalidArgument(field, f"{_quote(name)} must not contain '..'")


def _name_from_file_name(file_name: str) -> str:
    """A LoRA name from a downloaded file's name: the stem, with runs of other characters as "_"
    (hosts serve names like "Detail Tweaker XL.safetensors")."""
    stem = PurePosixPath(file_name.replace("\\", "/")).name
    if stem.lower().endswith(SUFFIX):
        stem = stem[: -len(SUFFIX)]
    stem = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", stem)).lstrip(".")[:100]
    if not stem:
        raise InvalidArgument(
            "name", f"the downloaded file's name {_quote(file_name)} gives no LoRA name; give one"
        )
    return stem


def _check_sha256(value: str | None, field: str) -> str | None:
    if not value:
        return None
    if not _SHA256.fullmatch(value):
        raise InvalidArgument(field, f"{_quote(value)} is not a SHA-256: 64 hexadecimal digits")
    return value.lower()


# ---------------------------------------------------------------------------------------------------
# safetensors headers and base architectures
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header."""

    dtype: str
    shape: tuple[int, ...]
    # (begin, end) byte offsets into the data section that follows the header.
    data_offsets: tuple[int, int]


@dataclass(frozen=True)
class SafetensorsHeader:
    """A parsed, checked safetensors header."""

    tensors: dict[str, TensorInfo]
    # The free-form `__metadata__` strings (kohya writes ss_*, modelspec.* keys).
    metadata: dict[str, str]


def _not_safetensors(field: str, detail: str, prefix: bytes) -> InvalidArgument:
    message = f"not a safetensors file: {detail}"
    if prefix.startswith((b"PK\x03\x04", b"\x80")):
        message += (
            " (it looks like a pickled PyTorch checkpoint; only .safetensors files are accepted,"
            " and none is ever unpickled)"
        )
    return InvalidArgument(field, message)


def _tensor_info(key: str, entry: Any, fail: Callable[[str], InvalidArgument]) -> TensorInfo:
    if not isinstance(entry, dict):
        raise fail(f"tensor {_quote(key)} is not described by an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPE_BITS:
        raise fail(f"tensor {_quote(key)} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise fail(f"tensor {_quote(key)} has shape {shape!r}, not a list of sizes")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise fail(f"tensor {_quote(key)} has data_offsets {offsets!r}, not [begin, end]")
    bits = math.prod(shape) * _DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise fail(
            f"tensor {_quote(key)} ({dtype} {shape}) needs {bits / 8:g} bytes but its data_offsets "
            f"span {offsets[1] - offsets[0]}"
        )
    return TensorInfo(dtype, tuple(shape), (offsets[0], offsets[1]))


def read_safetensors_header(
    path: Path, *, field: str = "data", max_header_bytes: int = MAX_HEADER_BYTES
) -> SafetensorsHeader:
    """Read and check a safetensors file's header without loading (or unpickling) anything.

    The layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping tensor names
    to {dtype, shape, data_offsets} (plus an optional `__metadata__` of strings), then the data
    section. Checked as safetensors itself checks it: known dtypes, offsets that match each tensor's
    byte size and tile the data section exactly (no gaps, no overlaps, nothing left over).

    Args:
        path: The file.
        field: The request field errors name (`data` for an upload, `url` for an install).
        max_header_bytes: Largest header accepted.

    Raises:
        InvalidArgument: on `field`, "not a safetensors file: <what is wrong>".
    """
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        prefix = file.read(8)

        def fail(detail: str) -> InvalidArgument:
            return _not_safetensors(field, detail, prefix)

        if len(prefix) < 8:
            raise fail(f"the file is {size} bytes, too short for the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > max_header_bytes:
            raise fail(f"its header length field says {length} bytes, over the {max_header_bytes}-byte limit")
        if 8 + length > size:
            raise fail(f"its header length ({length} bytes) points past the end of the file ({size} bytes)")
        raw = file.read(length)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail("its header is not UTF-8 JSON") from exc
    if not isinstance(document, dict):
        raise fail("its header is not a JSON object")

    metadata = document.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise fail("its __metadata__ is not an object of strings")
    tensors = {key: _tensor_info(key, entry, fail) for key, entry in document.items()}

    data_size = size - 8 - length
    end = 0
    for begin, stop in sorted(t.data_offsets for t in tensors.values()):
        if begin != end:
            raise fail(f"its tensor data has a gap or overlap at byte {begin} of the data section")
        end = stop
    if end != data_size:
        raise fail(f"its tensors cover {end} bytes but the data section holds {data_size}")
    return SafetensorsHeader(tensors, metadata)


class ArchitectureGuess(NamedTuple):
    architecture: BaseArchitecture
    # What it was told from, or why it could not be told; for messages and logs.
    reason: str


# Cross-attention key/value projections, in kohya (`..._attn2_to_k`), peft/diffusers
# (`....attn2.to_k`) and old diffusers (`....attn2.processor.to_k_lora`) spellings.
_CROSS_ATTENTION = re.compile(r"attn2[._](?:processor[._])?to_[kv]")
# The "down" matrix of a LoRA pair, shaped (rank, in_features): kohya, peft, diffusers.
_DOWN_SUFFIXES = (".lora_down.weight", ".lora_A.weight", ".down.weight")
_TEXT_ENCODER_2 = ("lora_te2_", "text_encoder_2.", "te2.")
_METADATA_HINTS = (
    (
        "modelspec.architecture",
        (
            ("stable-diffusion-xl", BaseArchitecture.SDXL),
            ("stable-diffusion-v1", BaseArchitecture.SD15),
            ("stable-diffusion-v2", BaseArchitecture.SD2),
        ),
    ),
    (
        "ss_base_model_version",
        (("sdxl", BaseArchitecture.SDXL), ("sd_v1", BaseArchitecture.SD15), ("sd_v2", BaseArchitecture.SD2)),
    ),
)


def detect_architecture(header: SafetensorsHeader, sdxl_cross_attention_dim: int = 2048) -> ArchitectureGuess:
    """Tell a LoRA's base architecture from its tensors, as the diffusion service must before loading.

    In order:
    1. The input width of the UNet's cross-attention (`attn2.to_k` / `to_v`) LoRA down matrices is
       the text-embedding width: 768 -> SD1.5, 1024 -> SD2.x, `sdxl_cross_attention_dim` -> SDXL
       (2048 for real SDXL; pass the loaded UNet's `cross_attention_dim` so the tiny model's 96
       counts). Any other width, or widths that disagree, -> UNSPECIFIED.
    2. Without such matrices: text-encoder-2 keys (`lora_te2_`, `text_encoder_2.`, `te2.`) exist
       only in SDXL LoRAs.
    3. Without either: the trainer's `__metadata__` (`modelspec.architecture`,
       `ss_base_model_version`).
    Otherwise UNSPECIFIED.
    """
    # 1. Cross-attention widths.
    widths: dict[int, str] = {}
    for key, tensor in header.tensors.items():
        if key.endswith(_DOWN_SUFFIXES) and _CROSS_ATTENTION.search(key) and len(tensor.shape) >= 2:
            widths.setdefault(tensor.shape[1], key)
    if len(widths) > 1:
        return ArchitectureGuess(
            BaseArchitecture.UNSPECIFIED, f"its cross-attention widths disagree: {sorted(widths)}"
        )
    if widths:
        ((width, key),) = widths.items()
        known = {
            768: BaseArchitecture.SD15,
            1024: BaseArchitecture.SD2,
            sdxl_cross_attention_dim: BaseArchitecture.SDXL,
        }
        if width in known:
            return ArchitectureGuess(known[width], f"cross-attention width {width} in {key}")
        return ArchitectureGuess(
            BaseArchitecture.UNSPECIFIED,
            f"cross-attention width {width} in {key} matches no base model "
            f"(SD1.x 768, SD2.x 1024, the loaded SDXL {sdxl_cross_attention_dim})",
        )
    # 2. Text encoder 2.
    te2 = next((key for key in header.tensors if key.startswith(_TEXT_ENCODER_2)), None)
    if te2 is not None:
        return ArchitectureGuess(BaseArchitecture.SDXL, f"SDXL text-encoder-2 key {te2}")
    # 3. The trainer's note.
    for meta_key, prefixes in _METADATA_HINTS:
        value = header.metadata.get(meta_key, "")
        for prefix, architecture in prefixes:
            if value.startswith(prefix):
                return ArchitectureGuess(architecture, f"metadata {meta_key}={value!r}")
    return ArchitectureGuess(
        BaseArchitecture.UNSPECIFIED,
        "it has no cross-attention LoRA matrices, no text-encoder-2 keys and no base-model metadata",
    )


def _rank(header: SafetensorsHeader) -> int | None:
    """The largest rank over the LoRA down matrices; None when there are none (LoHa, LoKr, ...)."""
    ranks = [
        t.shape[0] for k, t in header.tensors.items() if k.endswith(_DOWN_SUFFIXES) and len(t.shape) >= 2
    ]
    return max(ranks, default=None)


def _incompatible(name: str, guess: ArchitectureGuess) -> str:
    if guess.architecture is BaseArchitecture.UNSPECIFIED:
        return (
            f"the base architecture of LoRA {name!r} cannot be read from its tensors ({guess.reason}); "
            "only SDXL LoRAs can be applied"
        )
    return (
        f"LoRA {name!r} is an {guess.architecture} LoRA ({guess.reason}); "
        f"an {guess.architecture} LoRA cannot be applied to SDXL"
    )


# ---------------------------------------------------------------------------------------------------
# Library metadata, infos, stacking rules
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraMetadata:
    """What library.json says about one LoRA (LoraMetadata in diffusion.proto); defaults = no entry.

    `default_weight` None means unset: clients are offered `suggested_weight`, 1.0 or the nearest
    end of the range when 1.0 lies outside it.
    """

    type: LoraType = LoraType.UNSPECIFIED
    min_weight: float = -2.0
    max_weight: float = 2.0
    default_weight: float | None = None
    trigger_words: tuple[str, ...] = ()
    description: str = ""
    source_url: str = ""

    @property
    def suggested_weight(self) -> float:
        if self.default_weight is not None:
            return self.default_weight
        return min(max(1.0, self.min_weight), self.max_weight)

    def check(self, field: str = "metadata") -> None:
        """Raise InvalidArgument on `<field>.<key>` for a value the proto does not allow."""
        weights = {"min_weight": self.min_weight, "max_weight": self.max_weight}
        if self.default_weight is not None:
            weights["default_weight"] = self.default_weight
        for key, value in weights.items():
            if not (math.isfinite(value) and -_WEIGHT_BOUND <= value <= _WEIGHT_BOUND):
                raise InvalidArgument(f"{field}.{key}", f"{value:g} is outside -10..10")
        if self.min_weight > self.max_weight:
            raise InvalidArgument(
                f"{field}.min_weight", f"{self.min_weight:g} is above max_weight {self.max_weight:g}"
            )
        if self.default_weight is not None and not self.min_weight <= self.default_weight <= self.max_weight:
            raise InvalidArgument(
                f"{field}.default_weight",
                f"{self.default_weight:g} is outside min_weight..max_weight ({self.min_weight:g}..{self.max_weight:g})",
            )
        if len(self.trigger_words) > _MAX_TRIGGER_WORDS:
            raise InvalidArgument(
                f"{field}.trigger_words", f"{len(self.trigger_words)} words; at most {_MAX_TRIGGER_WORDS}"
            )
        for i, word in enumerate(self.trigger_words):
            if not word.strip() or len(word) > _MAX_TRIGGER_WORD_CHARS:
                raise InvalidArgument(
                    f"{field}.trigger_words[{i}]",
                    f"{_quote(word)}: a word is 1..{_MAX_TRIGGER_WORD_CHARS} characters, not blank",
                )
        for key in ("description", "source_url"):
            if len(getattr(self, key)) > _MAX_TEXT_CHARS:
                raise InvalidArgument(
                    f"{field}.{key}", f"{len(getattr(self, key))} characters; at most {_MAX_TEXT_CHARS}"
                )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": str(self.type),
            "min_weight": self.min_weight,
            "max_weight": self.max_weight,
        }
        if self.default_weight is not None:
            data["default_weight"] = self.default_weight
        data |= {
            "trigger_words": list(self.trigger_words),
            "description": self.description,
            "source_url": self.source_url,
        }
        return data

    @classmethod
    def from_json(cls, data: Any) -> LoraMetadata:
        """Raises ValueError or TypeError for an entry that is not one."""
        if not isinstance(data, dict):
            raise TypeError("an entry is an object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)}")
        values = dict(data)
        if "type" in values:
            values["type"] = LoraType(values["type"])
        for key in ("min_weight", "max_weight", "default_weight"):
            if values.get(key) is not None:
                if isinstance(values[key], bool) or not isinstance(values[key], int | float):
                    raise TypeError(f"{key} is a number")
                values[key] = float(values[key])
        words = values.get("trigger_words", [])
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise TypeError("trigger_words is a list of strings")
        values["trigger_words"] = tuple(words)
        for key in ("description", "source_url"):
            if not isinstance(values.get(key, ""), str):
                raise TypeError(f"{key} is a string")
        metadata = cls(**values)
        metadata.check("entry")
        return metadata


@dataclass(frozen=True)
class LoraInfo:
    """One LoRA in the library (LoraInfo in diffusion.proto, less `loaded`, which the engine knows)."""

    name: str
    path: Path
    architecture: BaseArchitecture
    # How the architecture was told (or why not), e.g. "cross-attention width 2048 in lora_unet_...".
    architecture_reason: str
    size_bytes: int
    sha256: str
    tensor_count: int
    # Largest rank of its LoRA matrices; None when it has no plain LoRA pairs.
    rank: int | None
    metadata: LoraMetadata
    modified_time: datetime

    @property
    def compatible(self) -> bool:
        """Whether it can be stacked on the loaded SDXL checkpoint."""
        return self.architecture is BaseArchitecture.SDXL


@dataclass(frozen=True)
class ResolvedLora:
    """One checked entry of a stack, as the engine needs it."""

    name: str
    path: Path
    weight: float
    # The file's digest: an overwritten LoRA keeps its name but must be reloaded.
    sha256: str
    architecture: BaseArchitecture
    type: LoraType
    trigger_words: tuple[str, ...]


def trigger_words(stack: Sequence[ResolvedLora]) -> list[str]:
    """The trigger words of a checked stack, in stack order, once each, skipping LoRAs at weight 0.

    The service never edits prompts (the proto leaves that to clients); this is for them.
    """
    words: dict[str, None] = {}
    for lora in stack:
        if lora.weight != 0:
            words.update(dict.fromkeys(lora.trigger_words))
    return list(words)


def _default_type_limits() -> dict[LoraType, int]:
    return {LoraType.STYLE: 1, LoraType.DETAIL: 2, LoraType.CHARACTER: 2}


class StackingRules(BaseModel):
    """What a LoRA stack may hold (LoraStackingRules in diffusion.proto); defaults as the issue says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_loras: int = Field(5, ge=0, description="Most LoRAs in one stack.")
    max_per_type: dict[LoraType, int] = Field(
        default_factory=_default_type_limits,
        description="Most LoRAs of a type in one stack; 0 forbids the type; unlisted types: max_loras only.",
    )
    max_weight_sum: float = Field(3.5, gt=0, description="Largest sum of |weight| over a stack.")

    @field_validator("max_per_type")
    @classmethod
    def _limits_are_counts(cls, limits: dict[LoraType, int]) -> dict[LoraType, int]:
        if LoraType.UNSPECIFIED in limits:
            raise ValueError("untyped LoRAs are limited by max_loras only")
        if any(count < 0 for count in limits.values()):
            raise ValueError("a per-type limit is 0 or more")
        return limits


@dataclass(frozen=True)
class _Inspection:
    """What the library knows of a file's content; cached per (inode, mtime, size)."""

    guess: ArchitectureGuess
    tensor_count: int
    rank: int | None
    sha256: str


def _sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


# ---------------------------------------------------------------------------------------------------
# Download URLs
# ---------------------------------------------------------------------------------------------------

_ACCEPTED_URLS = (
    "https://huggingface.co/<owner>/<repo>/resolve/<revision>/<path>.safetensors, "
    "https://civitai.com/models/<model_id>?modelVersionId=<version_id> or "
    "https://civitai.com/api/download/models/<version_id>"
)


@dataclass(frozen=True)
class DownloadSource:
    """Where InstallLora downloads from."""

    url: str
    host: Literal["huggingface", "civitai"]
    # The name to fall back on when the response names no file (Content-Disposition).
    file_name: str


def parse_download_url(url: str) -> DownloadSource:
    """Accept the URLs InstallLora documents, in the form that downloads the file.

    Hugging Face `blob` links (the file's web page) become `resolve` links, and a CivitAI model page
    with `?modelVersionId=<id>` becomes `https://civitai.com/api/download/models/<id>`. The query of
    an `api/download` link (type, format, size, fp) is kept; a Hugging Face query is dropped.

    Raises:
        InvalidArgument: on `url`, showing the accepted forms. A URL carrying `token=` is refused
            without being echoed: the service downloads with its own token.
    """
    if len(url) > _MAX_TEXT_CHARS:
        raise InvalidArgument("url", f"{len(url)} characters; at most {_MAX_TEXT_CHARS}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument("url", f"{_quote(url)} is not a URL ({exc})") from exc
    query = parse_qs(parts.query)
    if any(key.lower() == "token" for key in query):
        raise InvalidArgument("url", "must not carry a token: the service uses its own, from its environment")
    if parts.scheme != "https" or parts.username or parts.password or port not in (None, 443):
        raise InvalidArgument("url", f"{_quote(url)} is not a supported download: use {_ACCEPTED_URLS}")
    host = (parts.hostname or "").removeprefix("www.")
    if host == "huggingface.co":
        segments = parts.path.split("/")[1:]
        if (
            len(segments) >= 5
            and segments[2] in ("resolve", "blob")
            and all(segments)
            and segments[-1].endswith(SUFFIX)
        ):
            path = "/".join([*segments[:2], "resolve", *segments[3:]])
            return DownloadSource(f"https://huggingface.co/{path}", "huggingface", unquote(segments[-1]))
    if host == "civitai.com":
        download = re.fullmatch(r"/api/download/models/([0-9]+)/?", parts.path)
        if download:
            suffix = f"?{parts.query}" if parts.query else ""
            return DownloadSource(
                f"https://civitai.com/api/download/models/{download[1]}{suffix}", "civitai", download[1]
            )
        if re.fullmatch(r"/models/[0-9]+(?:/[^/]*)?/?", parts.path):
            version = query.get("modelVersionId", [""])[0]
            if not re.fullmatch(r"[0-9]+", version):
                raise InvalidArgument(
                    "url",
                    f"{_quote(url)} names a CivitAI model, not a version of it: "
                    "add ?modelVersionId=<version_id> (the link of the version's page has it)",
                )
            return DownloadSource(f"https://civitai.com/api/download/models/{version}", "civitai", version)
    raise InvalidArgument("url", f"{_quote(url)} is not a supported download: use {_ACCEPTED_URLS}")


class _TransientDownloadError(Exception):
    """A failure worth retrying: a transport error, HTTP 429 or 5xx, a body cut short."""


def _served_file_name(response: httpx.Response) -> str | None:
    value = response.headers.get("content-disposition")
    if not value:
        return None
    message = Message()
    message["content-disposition"] = value
    return message.get_filename()


# ---------------------------------------------------------------------------------------------------
# The library
# ---------------------------------------------------------------------------------------------------


class LoraLibrary:
    """The LoRA folder of one models folder: inspect, upload, install, list, edit, delete, stack.

    Thread-safe: the servicer calls it from worker threads. Changes to files and library.json happen
    under a thread lock plus an flock on `<folder>/.library.lock`, so replicas sharing the folder do
    not lose each other's edits; library.json is re-read on every call, never served from memory.

    Args:
        folder: The LoRA folder (created if missing).
        rules: Stacking rules `validate_stack` enforces.
        max_bytes: Largest LoRA file accepted, by upload or install.
        sdxl_cross_attention_dim: The loaded UNet's `cross_attention_dim`: LoRAs of this
            cross-attention width are SDXL (2048 real, 96 tiny).
        hf_token: Hugging Face token, sent as `Authorization: Bearer` to huggingface.co only.
        civitai_token: CivitAI API key, sent as `Authorization: Bearer` to civitai.com only (CivitAI
            also takes `?token=`; a header keeps it out of URLs and logs). httpx drops the header on
            the redirect to either host's CDN, so neither token leaves its host. Never logged.
        http_client: Client for installs (tests pass one over `httpx.MockTransport`); default: a
            fresh client per install with a 30 s timeout. Redirects are followed either way.
        download_attempts: Tries per install when the host fails transiently (transport errors,
            HTTP 429 / 5xx); each try starts over.
        download_backoff_s: Exponential backoff between tries: 1x, 2x, 4x... this, at most 30 s.
    """

    def __init__(
        self,
        folder: Path,
        rules: StackingRules,
        max_bytes: int,
        *,
        sdxl_cross_attention_dim: int = 2048,
        hf_token: str | None = None,
        civitai_token: str | None = None,
        http_client: httpx.Client | None = None,
        download_attempts: int = 3,
        download_backoff_s: float = 1.0,
    ) -> None:
        self._folder = Path(folder).resolve()
        self._folder.mkdir(parents=True, exist_ok=True)
        self._rules = rules
        self._max_bytes = max_bytes
        self._sdxl_cross_attention_dim = sdxl_cross_attention_dim
        self._tokens = {"huggingface": hf_token, "civitai": civitai_token}
        self._http_client = http_client
        self._download_attempts = download_attempts
        self._download_backoff_s = download_backoff_s
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int, int], _Inspection | str]] = {}
        self._skipped: set[tuple[str, object]] = set()

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def rules(self) -> StackingRules:
        return self._rules

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    # -- reading -------------------------------------------------------------------------------------

    def path_of(self, name: str, field: str = "name") -> Path:
        """The file of LoRA `name` (which need not exist). InvalidArgument on `field` for a bad name."""
        check_name(name, field)
        path = self._folder / f"{name}{SUFFIX}"
        if not path.resolve().is_relative_to(self._folder):
            raise InvalidArgument(field, f"{_quote(name)} leads outside the LoRA folder")
        return path

    def list(self, architecture: BaseArchitecture | None = None) -> list[LoraInfo]:
        """Every LoRA, sorted by name; only those of `architecture` when given.

        Files are inspected once per (inode, mtime, size), so listing is cheap after the first time
        (hashing a file placed in the folder by hand costs a read of it). Files whose name is not a
        LoRA name, or that are not readable safetensors, are left out with a warning in the log.

        Raises:
            FailedPrecondition: library.json cannot be read.
        """
        entries = self._read_entries()
        infos = []
        for path in sorted(self._folder.glob(f"*{SUFFIX}")):
            name = path.name[: -len(SUFFIX)]
            try:
                self.path_of(name)
                info = self._info(name, path, entries)
            except FileNotFoundError:
                continue  # deleted while listing
            except (InvalidArgument, _UnreadableLora) as exc:
                self._warn_once(name, path, str(exc))
                continue
            if architecture is None or info.architecture is architecture:
                infos.append(info)
        return infos

    def get(self, name: str) -> LoraInfo:
        """One LoRA.

        Raises:
            InvalidArgument: `name` breaks the name rule.
            NotFound: no such LoRA.
            FailedPrecondition: its file is not readable safetensors; library.json is broken.
        """
        path = self.path_of(name)
        try:
            return self._info(name, path, self._read_entries())
        except FileNotFoundError:
            raise NotFound(f"no LoRA named {name!r} in the library") from None

    def validate_stack(self, stack: Sequence[tuple[str, float]], field: str = "loras") -> list[ResolvedLora]:
        """Check a LoRA stack against the library and the stacking rules; resolve it for the engine.

        Args:
            stack: (name, weight) pairs in application order (LoraRef in common.proto).
            field: The request field holding the stack; entries are named `<field>[i].name` /
                `<field>[i].weight`.

        Raises:
            InvalidArgument: more than `max_loras` (on `field`); a bad or repeated name
                (`[i].name`); a weight outside the LoRA's library range (`[i].weight`); over a
                per-type limit or the weight sum (on `field`). Messages name the rule.
            NotFound: a name not in the library ("<field>[i].name: no LoRA named ...").
            FailedPrecondition: a LoRA that is not SDXL, or not readable.
        """
        rules = self._rules
        # 1. The count.
        if len(stack) > rules.max_loras:
            raise InvalidArgument(
                field,
                f"{len(stack)} LoRAs; the stacking rules allow at most {rules.max_loras} LoRAs (max_loras)",
            )
        # 2. Each entry: a known SDXL LoRA, once, within its library weight range.
        entries = self._read_entries()
        resolved: list[ResolvedLora] = []
        seen: dict[str, int] = {}
        for i, (name, weight) in enumerate(stack):
            item = f"{field}[{i}]"
            path = self.path_of(name, f"{item}.name")
            if name in seen:
                raise InvalidArgument(
                    f"{item}.name", f"{name!r} is already {field}[{seen[name]}]; a LoRA may appear once"
                )
            seen[name] = i
            try:
                info = self._info(name, path, entries)
            except FileNotFoundError:
                raise NotFound(f"{item}.name: no LoRA named {name!r} in the library") from None
            if not info.compatible:
                guess = ArchitectureGuess(info.architecture, info.architecture_reason)
                raise FailedPrecondition(f"{item}: {_incompatible(name, guess)}")
            low, high = info.metadata.min_weight, info.metadata.max_weight
            if not (math.isfinite(weight) and low - _WEIGHT_TOLERANCE <= weight <= high + _WEIGHT_TOLERANCE):
                raise InvalidArgument(
                    f"{item}.weight", f"{weight:g} is outside {name!r}'s library range {low:g}..{high:g}"
                )
            resolved.append(
                ResolvedLora(
                    name=name,
                    path=path,
                    weight=weight,
                    sha256=info.sha256,
                    architecture=info.architecture,
                    type=info.metadata.type,
                    trigger_words=info.metadata.trigger_words,
                )
            )
        # 3. Per-type limits.
        for lora_type, limit in rules.max_per_type.items():
            names = [lora.name for lora in resolved if lora.type is lora_type]
            if len(names) > limit:
                raise InvalidArgument(
                    field,
                    f"{len(names)} {lora_type} LoRAs ({', '.join(names)}); the stacking rules allow at most "
                    f"{limit} {lora_type} LoRA{'' if limit == 1 else 's'} (max_per_type.{lora_type})",
                )
        # 4. The weight sum.
        total = math.fsum(abs(lora.weight) for lora in resolved)
        if total > rules.max_weight_sum + _WEIGHT_TOLERANCE:
            raise InvalidArgument(
                field,
                f"the sum of |weight| is {total:g}; the stacking rules allow at most "
                f"{rules.max_weight_sum:g} (max_weight_sum)",
            )
        return resolved

    # -- changing ------------------------------------------------------------------------------------

    def begin_upload(
        self,
        name: str,
        total_bytes: int,
        *,
        sha256: str | None = None,
        metadata: LoraMetadata | None = None,
        overwrite: bool = False,
    ) -> Upload:
        """Start an upload (UploadLoraParams); feed it with `Upload.write`, finish with `commit`.

        Args:
            name: Name to store it under.
            total_bytes: Exact size of the file; 1..max_bytes.
            sha256: Digest the file must have (hex); None or "" for no check.
            metadata: Library entry to record; None keeps the existing entry, if any.
            overwrite: Replace a LoRA of the same name.

        Raises:
            InvalidArgument: `params.name`, `params.total_bytes` (0), `params.sha256`,
                `params.metadata.<key>`.
            ResourceExhausted: `total_bytes` over `max_bytes`.
            AlreadyExists: the name is taken and `overwrite` is false.
        """
        path = self.path_of(name, "params.name")
        if total_bytes > self._max_bytes:
            raise ResourceExhausted(
                f"params.total_bytes: {total_bytes} bytes is over the LoRA size cap of {self._max_bytes} bytes"
            )
        if total_bytes < 1:
            raise InvalidArgument(
                "params.total_bytes", f"{total_bytes}: a LoRA is 1..{self._max_bytes} bytes"
            )
        expected = _check_sha256(sha256, "params.sha256")
        if metadata is not None:
            metadata.check("params.metadata")
        self._check_free(name, path, overwrite)
        partial = self._folder / f".{name}.{secrets.token_hex(8)}.partial"
        return Upload(self, name, path, partial, total_bytes, expected, metadata, overwrite)

    def install(
        self,
        url: str,
        *,
        name: str | None = None,
        sha256: str | None = None,
        metadata: LoraMetadata | None = None,
        overwrite: bool = False,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> LoraInfo:
        """Download a LoRA from Hugging Face or CivitAI into the library (InstallLoraRequest).

        The file streams to a `.partial` file (size cap enforced from Content-Length before the body
        and again while it streams), is checked like an upload, then renamed into place.

        Args:
            url: A URL `parse_download_url` accepts.
            name: Name to store it under. None or "": the served file name (Content-Disposition, else
                the URL's), without `.safetensors`, other characters turned into "_".
            sha256: Digest the file must have (hex); None or "" for no check.
            metadata: Library entry to record. Its empty `source_url` becomes `url`; None keeps
                the existing entry (or the defaults) with `source_url` = `url`.
            overwrite: Replace a LoRA of the same name.
            progress: Called with (bytes so far, size the host announced or None) a few times a
                second and once at the end; starts again from 0 when a try is retried. It may
                raise (e.g. Cancelled) to abort: the partial file is removed and the error propagates.

        Raises:
            InvalidArgument: `url` (unsupported, or the file is not safetensors), `name`,
                `sha256` (malformed or mismatch), `metadata.<key>`.
            NotFound: the host says the file does not exist (HTTP 404 / 410).
            Unavailable: the host cannot be reached or keeps failing after `download_attempts`
                tries, or refuses the download (401 / 403 and other 4xx; the message says whether
                the service has a token for that host, never the token).
            ResourceExhausted: the file is over `max_bytes`.
            AlreadyExists: the name is taken and `overwrite` is false.
            FailedPrecondition: the LoRA is not SDXL.
        """
        # 1. Check what can be checked before downloading.
        source = parse_download_url(url)
        if name:
            self._check_free(name, self.path_of(name), overwrite)
        expected = _check_sha256(sha256, "sha256")
        if metadata is not None:
            metadata.check("metadata")

        # 2. Download, choosing the name once the response's headers are in.
        chosen: list[tuple[str, Path]] = []

        def choose_name(served: str | None) -> None:
            target = name or _name_from_file_name(served or source.file_name)
            path = self.path_of(target)
            self._check_free(target, path, overwrite)
            chosen[:] = [(target, path)]

        partial = self._folder / f".install.{secrets.token_hex(8)}.partial"
        try:
            digest = self._download(source, partial, progress, choose_name)
            (target, path) = chosen[0]
            if expected is not None and digest != expected:
                raise InvalidArgument("sha256", f"the downloaded file's SHA-256 is {digest}, not {expected}")

            # 3. Check the content and move it into place with its library entry.
            def entry(old: LoraMetadata) -> LoraMetadata:
                new = metadata if metadata is not None else old
                return new if metadata is not None and new.source_url else replace(new, source_url=url)

            info = self._commit(partial, target, path, "url", overwrite, digest, entry)
        finally:
            partial.unlink(missing_ok=True)
        log.info("installed LoRA %s from %s (%d bytes)", target, source.url, info.size_bytes)
        return info

    def update_metadata(self, name: str, metadata: LoraMetadata) -> LoraInfo:
        """Replace a LoRA's library entry as a whole (UpdateLoraRequest).

        Raises:
            InvalidArgument: `name`, `metadata.<key>`.
            NotFound: no such LoRA.
        """
        path = self.path_of(name)
        metadata.check("metadata")
        with self._locked():
            entries = self._read_entries()
            if not path.is_file():
                raise NotFound(f"no LoRA named {name!r} in the library")
            entries[name] = metadata.to_json()
            self._write_entries(entries)
        return self.get(name)

    def delete(self, name: str) -> None:
        """Delete a LoRA's file and its library entry. An engine that has it loaded keeps running.

        Raises:
            InvalidArgument: `name`.
            NotFound: no such LoRA.
        """
        path = self.path_of(name)
        with self._locked():
            entries = self._read_entries()
            try:
                path.unlink()
            except FileNotFoundError:
                raise NotFound(f"no LoRA named {name!r} in the library") from None
            if entries.pop(name, None) is not None:
                self._write_entries(entries)
        with self._cache_lock:
            self._cache.pop(name, None)
        log.info("deleted LoRA %s", name)

    def cleanup_partials(self, older_than_s: float = 3600.0) -> int:
        """Remove `.partial` files left by crashed uploads and installs; returns how many.

        Only files untouched for `older_than_s` go: replicas share the folder, and another replica's
        transfer in progress keeps its partial file fresh. Call at start-up.
        """
        removed = 0
        cutoff = time.time() - older_than_s
        for partial in self._folder.glob(".*.partial"):
            with contextlib.suppress(FileNotFoundError):
                if partial.stat().st_mtime <= cutoff:
                    partial.unlink()
                    removed += 1
        if removed:
            log.info("removed %d stale partial file(s) from %s", removed, self._folder)
        return removed

    # -- internals -----------------------------------------------------------------------------------

    def _check_free(self, name: str, path: Path, overwrite: bool) -> None:
        if not overwrite and path.exists():
            raise AlreadyExists(f"a LoRA named {name!r} exists; set overwrite to replace it")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock, (self._folder / ".library.lock").open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes
            yield

    @property
    def _library_path(self) -> Path:
        return self._folder / LIBRARY_FILE

    def _read_entries(self) -> dict[str, Any]:
        try:
            text = self._library_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FailedPrecondition(
                f"{self._library_path} is not valid JSON ({exc}); fix or remove it"
            ) from exc
        if not isinstance(document, dict) or not isinstance(document.get("loras", {}), dict):
            raise FailedPrecondition(f'{self._library_path} is not {{"loras": {{"<name>": {{...}}}}}}')
        return document.get("loras", {})

    def _write_entries(self, entries: dict[str, Any]) -> None:
        document = {"version": 1, "loras": dict(sorted(entries.items()))}
        tmp = self._folder / f".{LIBRARY_FILE}.{secrets.token_hex(8)}.partial"
        try:
            with tmp.open("x", encoding="utf-8") as file:
                json.dump(document, file, indent=2, ensure_ascii=False)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self._library_path)
        finally:
            tmp.unlink(missing_ok=True)

    def _metadata(self, entries: dict[str, Any], name: str) -> LoraMetadata:
        if name not in entries:
            return LoraMetadata()
        try:
            return LoraMetadata.from_json(entries[name])
        except (InvalidArgument, TypeError, ValueError) as exc:
            raise FailedPrecondition(
                f"{self._library_path}: the entry of LoRA {name!r} is invalid ({exc}); fix it"
            ) from exc

    def _inspect(self, header: SafetensorsHeader, sha256: str, field: str) -> _Inspection:
        if not header.tensors:
            raise InvalidArgument(field, "the safetensors file holds no tensors")
        return _Inspection(
            guess=detect_architecture(header, self._sdxl_cross_attention_dim),
            tensor_count=len(header.tensors),
            rank=_rank(header),
            sha256=sha256,
        )

    def _info(self, name: str, path: Path, entries: dict[str, Any]) -> LoraInfo:
        """Raises FileNotFoundError, _UnreadableLora, FailedPrecondition (library entry)."""
        stat = path.stat()
        if not S_ISREG(stat.st_mode):
            raise FileNotFoundError(path)  # a folder named like a LoRA is not one
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._cache_lock:
            cached = self._cache.get(name)
        if cached is not None and cached[0] == key:
            inspection = cached[1]
        else:
            try:
                header = read_safetensors_header(path, field="data")
                inspection = self._inspect(header, _sha256_file(path), "data")
            except InvalidArgument as exc:
                inspection = exc.message
            with self._cache_lock:
                self._cache[name] = (key, inspection)
        if isinstance(inspection, str):
            raise _UnreadableLora(f"LoRA {name!r} cannot be read: {inspection}")
        return LoraInfo(
            name=name,
            path=path,
            architecture=inspection.guess.architecture,
            architecture_reason=inspection.guess.reason,
            size_bytes=stat.st_size,
            sha256=inspection.sha256,
            tensor_count=inspection.tensor_count,
            rank=inspection.rank,
            metadata=self._metadata(entries, name),
            modified_time=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
        )

    def _warn_once(self, name: str, path: Path, reason: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            key = (name, path.stat().st_mtime_ns)
            if key not in self._skipped:
                self._skipped.add(key)
                log.warning("LoRA folder: leaving out %s: %s", path.name, reason)

    def _commit(
        self,
        partial: Path,
        name: str,
        path: Path,
        field: str,
        overwrite: bool,
        sha256: str,
        entry: Callable[[LoraMetadata], LoraMetadata] | None,
    ) -> LoraInfo:
        """Check a complete partial file and move it into place; `entry` maps the old library entry
        to the new one (None: leave library.json alone)."""
        # 1. The content: safetensors, of the loaded base architecture.
        inspection = self._inspect(read_safetensors_header(partial, field=field), sha256, field)
        if inspection.guess.architecture is not BaseArchitecture.SDXL:
            raise FailedPrecondition(_incompatible(name, inspection.guess))
        # 2. Into place, unless the name was taken meanwhile, with its library entry.
        with self._locked():
            self._check_free(name, path, overwrite)
            entries = self._read_entries()
            new_entry = entry(self._metadata(entries, name)) if entry is not None else None
            os.replace(partial, path)
            stat = path.stat()
            with self._cache_lock:
                self._cache[name] = ((stat.st_ino, stat.st_mtime_ns, stat.st_size), inspection)
            if new_entry is not None:
                entries[name] = new_entry.to_json()
                self._write_entries(entries)
        return self._info(name, path, entries)

    def _download(
        self,
        source: DownloadSource,
        partial: Path,
        progress: Callable[[int, int | None], None] | None,
        choose_name: Callable[[str | None], None],
    ) -> str:
        """Download `source` into `partial` with retries; returns the file's SHA-256."""
        headers = {"User-Agent": _USER_AGENT}
        token = self._tokens[source.host]
        if token:
            headers["Authorization"] = f"Bearer {token}"
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._download_attempts),
            wait=tenacity.wait_exponential(multiplier=self._download_backoff_s, max=30),
            retry=tenacity.retry_if_exception_type(_TransientDownloadError),
            before_sleep=lambda state: log.warning(
                "LoRA download try %d failed, retrying: %s", state.attempt_number, state.outcome.exception()
            ),
            reraise=True,
        )
        with contextlib.ExitStack() as stack:
            client = self._http_client
            if client is None:
                client = stack.enter_context(httpx.Client(timeout=_HTTP_TIMEOUT))
            try:
                return retrying(
                    self._download_once, client, source, headers, bool(token), partial, progress, choose_name
                )
            except _TransientDownloadError as exc:
                raise Unavailable(f"{exc} (gave up after {self._download_attempts} tries)") from exc
            except httpx.RequestError as exc:  # too many redirects, an undecodable body, ...
                raise Unavailable(f"cannot download {source.url}: {type(exc).__name__}: {exc}") from exc

    def _download_once(
        self,
        client: httpx.Client,
        source: DownloadSource,
        headers: dict[str, str],
        has_token: bool,
        partial: Path,
        progress: Callable[[int, int | None], None] | None,
        choose_name: Callable[[str | None], None],
    ) -> str:
        host = "huggingface.co" if source.host == "huggingface" else "civitai.com"
        try:
            with client.stream("GET", source.url, headers=headers, follow_redirects=True) as response:
                # 1. The status.
                status = response.status_code
                if status == 429 or status >= 500:
                    raise _TransientDownloadError(f"{host} answered HTTP {status} for {source.url}")
                if status in (404, 410):
                    raise NotFound(f"url: {host} has no file at {source.url} (HTTP {status})")
                if status in (401, 403):
                    token = "Hugging Face token" if source.host == "huggingface" else "CivitAI API key"
                    why = (
                        f"the service's {token} was refused or has no access to this file"
                        if has_token
                        else f"it needs a {token} and the service has none configured"
                    )
                    raise Unavailable(f"{host} refused the download of {source.url} (HTTP {status}): {why}")
                if not response.is_success:
                    raise Unavailable(f"{host} refused the download of {source.url} (HTTP {status})")
                # 2. The announced size, and the name, before any of the body.
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                if total is not None and total > self._max_bytes:
                    raise ResourceExhausted(
                        f"{source.url} is {total} bytes, over the LoRA size cap of {self._max_bytes} bytes"
                    )
                choose_name(_served_file_name(response))
                # 3. The body.
                digest = hashlib.sha256()
                done = 0
                reported = time.monotonic()
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes(chunk_size=1 << 20):
                        done += len(chunk)
                        if done > self._max_bytes:
                            raise ResourceExhausted(
                                f"{source.url} is over the LoRA size cap of {self._max_bytes} bytes"
                            )
                        file.write(chunk)
                        digest.update(chunk)
                        if progress is not None and time.monotonic() - reported >= _PROGRESS_INTERVAL_S:
                            progress(done, total)
                            reported = time.monotonic()
                    file.flush()
                    os.fsync(file.fileno())
                if total is not None and "content-encoding" not in response.headers and done != total:
                    raise _TransientDownloadError(
                        f"the download of {source.url} stopped at {done} of {total} bytes"
                    )
                if progress is not None:
                    progress(done, total)
                return digest.hexdigest()
        except httpx.TransportError as exc:
            raise _TransientDownloadError(
                f"cannot download {source.url}: {type(exc).__name__}: {exc}"
            ) from exc


class _UnreadableLora(FailedPrecondition):
    """A LoRA file in the folder that is not readable safetensors (placed there by hand)."""


class Upload:
    """One upload in progress, from `LoraLibrary.begin_upload`: `write` the bytes in order, then
    `commit`, or `abort`. As a context manager it aborts unless committed. Not thread-safe itself:
    one stream feeds it. Any error in `write` or `commit` removes the partial file."""

    def __init__(
        self,
        library: LoraLibrary,
        name: str,
        path: Path,
        partial: Path,
        total_bytes: int,
        sha256: str | None,
        metadata: LoraMetadata | None,
        overwrite: bool,
    ) -> None:
        self._library = library
        self._name = name
        self._path = path
        self._partial = partial
        self._total_bytes = total_bytes
        self._sha256 = sha256
        self._metadata = metadata
        self._overwrite = overwrite
        self._digest = hashlib.sha256()
        self._received = 0
        self._file = partial.open("xb")

    @property
    def received(self) -> int:
        """Bytes written so far."""
        return self._received

    def write(self, chunk: bytes) -> None:
        """Append the next bytes.

        Raises:
            ResourceExhausted: the bytes so far exceed the library's `max_bytes`.
            InvalidArgument: on `data`, more bytes than `params.total_bytes`.
        """
        try:
            received = self._received + len(chunk)
            if received > self._library.max_bytes:
                raise ResourceExhausted(
                    f"data: the upload is over the LoRA size cap of {self._library.max_bytes} bytes"
                )
            if received > self._total_bytes:
                raise InvalidArgument("data", f"more bytes than params.total_bytes = {self._total_bytes}")
            self._file.write(chunk)
            self._digest.update(chunk)
            self._received = received
        except BaseException:
            self.abort()
            raise

    def commit(self) -> LoraInfo:
        """Check the file and put it into the library.

        Raises:
            InvalidArgument: `params.total_bytes` (fewer bytes arrived), `params.sha256` (mismatch),
                `data` (not safetensors).
            FailedPrecondition: not an SDXL LoRA ("an SD1.5 LoRA cannot be applied to SDXL").
            AlreadyExists: the name was taken meanwhile and `overwrite` is false.
        """
        try:
            if self._received != self._total_bytes:
                raise InvalidArgument(
                    "params.total_bytes", f"says {self._total_bytes} bytes but {self._received} arrived"
                )
            digest = self._digest.hexdigest()
            if self._sha256 is not None and digest != self._sha256:
                raise InvalidArgument(
                    "params.sha256", f"the uploaded file's SHA-256 is {digest}, not {self._sha256}"
                )
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            metadata = self._metadata
            info = self._library._commit(
                self._partial,
                self._name,
                self._path,
                "data",
                self._overwrite,
                digest,
                None if metadata is None else lambda _old: metadata,
            )
        finally:
            self.abort()
        log.info("uploaded LoRA %s (%d bytes)", self._name, info.size_bytes)
        return info

    def abort(self) -> None:
        """Drop the upload and its partial file (nothing happens after `commit`)."""
        self._file.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()
