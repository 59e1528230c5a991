import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tilesmith.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Scheduler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULER_UNSPECIFIED: _ClassVar[Scheduler]
    SCHEDULER_DPMPP_2M_SDE_KARRAS: _ClassVar[Scheduler]
    SCHEDULER_DPMPP_2M_KARRAS: _ClassVar[Scheduler]
    SCHEDULER_DPMPP_2M: _ClassVar[Scheduler]
    SCHEDULER_DPMPP_SDE_KARRAS: _ClassVar[Scheduler]
    SCHEDULER_EULER: _ClassVar[Scheduler]
    SCHEDULER_EULER_ANCESTRAL: _ClassVar[Scheduler]
    SCHEDULER_DDIM: _ClassVar[Scheduler]
    SCHEDULER_UNIPC: _ClassVar[Scheduler]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_CHECKPOINT: _ClassVar[ModelKind]
    MODEL_KIND_VAE: _ClassVar[ModelKind]
    MODEL_KIND_CONTROLNET: _ClassVar[ModelKind]
    MODEL_KIND_IP_ADAPTER: _ClassVar[ModelKind]
    MODEL_KIND_IMAGE_ENCODER: _ClassVar[ModelKind]
    MODEL_KIND_UPSCALER: _ClassVar[ModelKind]

class LoraType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LORA_TYPE_UNSPECIFIED: _ClassVar[LoraType]
    LORA_TYPE_STYLE: _ClassVar[LoraType]
    LORA_TYPE_DETAIL: _ClassVar[LoraType]
    LORA_TYPE_CHARACTER: _ClassVar[LoraType]
SCHEDULER_UNSPECIFIED: Scheduler
SCHEDULER_DPMPP_2M_SDE_KARRAS: Scheduler
SCHEDULER_DPMPP_2M_KARRAS: Scheduler
SCHEDULER_DPMPP_2M: Scheduler
SCHEDULER_DPMPP_SDE_KARRAS: Scheduler
SCHEDULER_EULER: Scheduler
SCHEDULER_EULER_ANCESTRAL: Scheduler
SCHEDULER_DDIM: Scheduler
SCHEDULER_UNIPC: Scheduler
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_CHECKPOINT: ModelKind
MODEL_KIND_VAE: ModelKind
MODEL_KIND_CONTROLNET: ModelKind
MODEL_KIND_IP_ADAPTER: ModelKind
MODEL_KIND_IMAGE_ENCODER: ModelKind
MODEL_KIND_UPSCALER: ModelKind
LORA_TYPE_UNSPECIFIED: LoraType
LORA_TYPE_STYLE: LoraType
LORA_TYPE_DETAIL: LoraType
LORA_TYPE_CHARACTER: LoraType

class ControlNetSettings(_message.Message):
    __slots__ = ("enabled", "scale", "guidance_start", "guidance_end")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_START_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_END_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    scale: float
    guidance_start: float
    guidance_end: float
    def __init__(self, enabled: _Optional[bool] = ..., scale: _Optional[float] = ..., guidance_start: _Optional[float] = ..., guidance_end: _Optional[float] = ...) -> None: ...

class IpAdapterParams(_message.Message):
    __slots__ = ("image", "scale")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    scale: float
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., scale: _Optional[float] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("steps", "cfg_scale", "scheduler", "loras", "ip_adapter")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CFG_SCALE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    IP_ADAPTER_FIELD_NUMBER: _ClassVar[int]
    steps: int
    cfg_scale: float
    scheduler: Scheduler
    loras: _containers.RepeatedCompositeFieldContainer[_common_pb2.LoraRef]
    ip_adapter: IpAdapterParams
    def __init__(self, steps: _Optional[int] = ..., cfg_scale: _Optional[float] = ..., scheduler: _Optional[_Union[Scheduler, str]] = ..., loras: _Optional[_Iterable[_Union[_common_pb2.LoraRef, _Mapping]]] = ..., ip_adapter: _Optional[_Union[IpAdapterParams, _Mapping]] = ...) -> None: ...

class QueuePosition(_message.Message):
    __slots__ = ("ahead",)
    AHEAD_FIELD_NUMBER: _ClassVar[int]
    ahead: int
    def __init__(self, ahead: _Optional[int] = ...) -> None: ...

class DenoiseProgress(_message.Message):
    __slots__ = ("step", "total_steps")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ...) -> None: ...

class GenerationStats(_message.Message):
    __slots__ = ("model", "queue_seconds", "inference_seconds")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    queue_seconds: float
    inference_seconds: float
    def __init__(self, model: _Optional[str] = ..., queue_seconds: _Optional[float] = ..., inference_seconds: _Optional[float] = ...) -> None: ...

class Img2ImgTile(_message.Message):
    __slots__ = ("index", "image", "control_image", "prompt", "negative_prompt", "seed")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    index: int
    image: _common_pb2.Image
    control_image: _common_pb2.Image
    prompt: str
    negative_prompt: str
    seed: int
    def __init__(self, index: _Optional[int] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., control_image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

class Img2ImgRequest(_message.Message):
    __slots__ = ("tiles", "strength", "sampling", "controlnet", "generation_size")
    TILES_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CONTROLNET_FIELD_NUMBER: _ClassVar[int]
    GENERATION_SIZE_FIELD_NUMBER: _ClassVar[int]
    tiles: _containers.RepeatedCompositeFieldContainer[Img2ImgTile]
    strength: float
    sampling: SamplingParams
    controlnet: ControlNetSettings
    generation_size: int
    def __init__(self, tiles: _Optional[_Iterable[_Union[Img2ImgTile, _Mapping]]] = ..., strength: _Optional[float] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., controlnet: _Optional[_Union[ControlNetSettings, _Mapping]] = ..., generation_size: _Optional[int] = ...) -> None: ...

class Img2ImgTileResult(_message.Message):
    __slots__ = ("index", "image", "seed")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    index: int
    image: _common_pb2.Image
    seed: int
    def __init__(self, index: _Optional[int] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., seed: _Optional[int] = ...) -> None: ...

class Img2ImgResponse(_message.Message):
    __slots__ = ("queued", "progress", "tile", "stats")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TILE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    queued: QueuePosition
    progress: DenoiseProgress
    tile: Img2ImgTileResult
    stats: GenerationStats
    def __init__(self, queued: _Optional[_Union[QueuePosition, _Mapping]] = ..., progress: _Optional[_Union[DenoiseProgress, _Mapping]] = ..., tile: _Optional[_Union[Img2ImgTileResult, _Mapping]] = ..., stats: _Optional[_Union[GenerationStats, _Mapping]] = ...) -> None: ...

class Txt2ImgRequest(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "size", "seed", "sampling", "output_encoding")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    size: _common_pb2.Size
    seed: int
    sampling: SamplingParams
    output_encoding: _common_pb2.ImageEncoding
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., seed: _Optional[int] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., output_encoding: _Optional[_Union[_common_pb2.ImageEncoding, str]] = ...) -> None: ...

class Txt2ImgResponse(_message.Message):
    __slots__ = ("queued", "progress", "image", "stats")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    queued: QueuePosition
    progress: DenoiseProgress
    image: _common_pb2.ImageChunk
    stats: GenerationStats
    def __init__(self, queued: _Optional[_Union[QueuePosition, _Mapping]] = ..., progress: _Optional[_Union[DenoiseProgress, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ..., stats: _Optional[_Union[GenerationStats, _Mapping]] = ...) -> None: ...

class UpscaleParams(_message.Message):
    __slots__ = ("model", "tile_size", "tile_overlap", "output_encoding")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILE_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    model: str
    tile_size: int
    tile_overlap: int
    output_encoding: _common_pb2.ImageEncoding
    def __init__(self, model: _Optional[str] = ..., tile_size: _Optional[int] = ..., tile_overlap: _Optional[int] = ..., output_encoding: _Optional[_Union[_common_pb2.ImageEncoding, str]] = ...) -> None: ...

class UpscaleRequest(_message.Message):
    __slots__ = ("params", "image")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    params: UpscaleParams
    image: _common_pb2.ImageChunk
    def __init__(self, params: _Optional[_Union[UpscaleParams, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ...) -> None: ...

class UpscaleProgress(_message.Message):
    __slots__ = ("tiles_done", "tiles_total")
    TILES_DONE_FIELD_NUMBER: _ClassVar[int]
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    tiles_done: int
    tiles_total: int
    def __init__(self, tiles_done: _Optional[int] = ..., tiles_total: _Optional[int] = ...) -> None: ...

class UpscaleResponse(_message.Message):
    __slots__ = ("queued", "progress", "image", "stats")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    queued: QueuePosition
    progress: UpscaleProgress
    image: _common_pb2.ImageChunk
    stats: GenerationStats
    def __init__(self, queued: _Optional[_Union[QueuePosition, _Mapping]] = ..., progress: _Optional[_Union[UpscaleProgress, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ..., stats: _Optional[_Union[GenerationStats, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "kind", "base_architecture", "architecture", "scale", "loaded", "is_default", "source", "size_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ModelKind
    base_architecture: _common_pb2.BaseArchitecture
    architecture: str
    scale: int
    loaded: bool
    is_default: bool
    source: str
    size_bytes: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., base_architecture: _Optional[_Union[_common_pb2.BaseArchitecture, str]] = ..., architecture: _Optional[str] = ..., scale: _Optional[int] = ..., loaded: _Optional[bool] = ..., is_default: _Optional[bool] = ..., source: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("profile", "device", "dtype", "models", "max_batch_size", "queue_capacity")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    profile: str
    device: str
    dtype: str
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    max_batch_size: int
    queue_capacity: int
    def __init__(self, profile: _Optional[str] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., max_batch_size: _Optional[int] = ..., queue_capacity: _Optional[int] = ...) -> None: ...

class LoraMetadata(_message.Message):
    __slots__ = ("type", "min_weight", "max_weight", "default_weight", "trigger_words", "description", "source_url")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    type: LoraType
    min_weight: float
    max_weight: float
    default_weight: float
    trigger_words: _containers.RepeatedScalarFieldContainer[str]
    description: str
    source_url: str
    def __init__(self, type: _Optional[_Union[LoraType, str]] = ..., min_weight: _Optional[float] = ..., max_weight: _Optional[float] = ..., default_weight: _Optional[float] = ..., trigger_words: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., source_url: _Optional[str] = ...) -> None: ...

class LoraInfo(_message.Message):
    __slots__ = ("name", "base_architecture", "compatible", "size_bytes", "sha256", "metadata", "modified_time", "loaded")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_TIME_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    name: str
    base_architecture: _common_pb2.BaseArchitecture
    compatible: bool
    size_bytes: int
    sha256: str
    metadata: LoraMetadata
    modified_time: _timestamp_pb2.Timestamp
    loaded: bool
    def __init__(self, name: _Optional[str] = ..., base_architecture: _Optional[_Union[_common_pb2.BaseArchitecture, str]] = ..., compatible: _Optional[bool] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., metadata: _Optional[_Union[LoraMetadata, _Mapping]] = ..., modified_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., loaded: _Optional[bool] = ...) -> None: ...

class UploadLoraParams(_message.Message):
    __slots__ = ("name", "total_bytes", "sha256", "metadata", "overwrite")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    total_bytes: int
    sha256: str
    metadata: LoraMetadata
    overwrite: bool
    def __init__(self, name: _Optional[str] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., metadata: _Optional[_Union[LoraMetadata, _Mapping]] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class UploadLoraRequest(_message.Message):
    __slots__ = ("params", "data")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    params: UploadLoraParams
    data: bytes
    def __init__(self, params: _Optional[_Union[UploadLoraParams, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class InstallLoraRequest(_message.Message):
    __slots__ = ("url", "name", "sha256", "metadata", "overwrite")
    URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    url: str
    name: str
    sha256: str
    metadata: LoraMetadata
    overwrite: bool
    def __init__(self, url: _Optional[str] = ..., name: _Optional[str] = ..., sha256: _Optional[str] = ..., metadata: _Optional[_Union[LoraMetadata, _Mapping]] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class LoraDownloadProgress(_message.Message):
    __slots__ = ("bytes_done", "bytes_total")
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    bytes_done: int
    bytes_total: int
    def __init__(self, bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ...) -> None: ...

class InstallLoraResponse(_message.Message):
    __slots__ = ("progress", "lora")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    progress: LoraDownloadProgress
    lora: LoraInfo
    def __init__(self, progress: _Optional[_Union[LoraDownloadProgress, _Mapping]] = ..., lora: _Optional[_Union[LoraInfo, _Mapping]] = ...) -> None: ...

class ListLorasRequest(_message.Message):
    __slots__ = ("base_architecture",)
    BASE_ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    base_architecture: _common_pb2.BaseArchitecture
    def __init__(self, base_architecture: _Optional[_Union[_common_pb2.BaseArchitecture, str]] = ...) -> None: ...

class LoraTypeLimit(_message.Message):
    __slots__ = ("type", "max_count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    type: LoraType
    max_count: int
    def __init__(self, type: _Optional[_Union[LoraType, str]] = ..., max_count: _Optional[int] = ...) -> None: ...

class LoraStackingRules(_message.Message):
    __slots__ = ("max_loras", "type_limits", "max_weight_sum")
    MAX_LORAS_FIELD_NUMBER: _ClassVar[int]
    TYPE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    MAX_WEIGHT_SUM_FIELD_NUMBER: _ClassVar[int]
    max_loras: int
    type_limits: _containers.RepeatedCompositeFieldContainer[LoraTypeLimit]
    max_weight_sum: float
    def __init__(self, max_loras: _Optional[int] = ..., type_limits: _Optional[_Iterable[_Union[LoraTypeLimit, _Mapping]]] = ..., max_weight_sum: _Optional[float] = ...) -> None: ...

class ListLorasResponse(_message.Message):
    __slots__ = ("loras", "rules")
    LORAS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    loras: _containers.RepeatedCompositeFieldContainer[LoraInfo]
    rules: LoraStackingRules
    def __init__(self, loras: _Optional[_Iterable[_Union[LoraInfo, _Mapping]]] = ..., rules: _Optional[_Union[LoraStackingRules, _Mapping]] = ...) -> None: ...

class UpdateLoraRequest(_message.Message):
    __slots__ = ("name", "metadata")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    metadata: LoraMetadata
    def __init__(self, name: _Optional[str] = ..., metadata: _Optional[_Union[LoraMetadata, _Mapping]] = ...) -> None: ...

class DeleteLoraRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteLoraResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
