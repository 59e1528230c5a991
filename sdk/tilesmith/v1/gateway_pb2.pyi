import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tilesmith.v1 import bridge_pb2 as _bridge_pb2
from tilesmith.v1 import common_pb2 as _common_pb2
from tilesmith.v1 import diffusion_pb2 as _diffusion_pb2
from tilesmith.v1 import tiling_pb2 as _tiling_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResolutionPreset(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOLUTION_PRESET_UNSPECIFIED: _ClassVar[ResolutionPreset]
    RESOLUTION_PRESET_2K: _ClassVar[ResolutionPreset]
    RESOLUTION_PRESET_4K: _ClassVar[ResolutionPreset]
    RESOLUTION_PRESET_8K: _ClassVar[ResolutionPreset]

class TargetFit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_FIT_UNSPECIFIED: _ClassVar[TargetFit]
    TARGET_FIT_STRETCH: _ClassVar[TargetFit]
    TARGET_FIT_COVER: _ClassVar[TargetFit]
    TARGET_FIT_CONTAIN: _ClassVar[TargetFit]

class ColorFixMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLOR_FIX_MODE_UNSPECIFIED: _ClassVar[ColorFixMode]
    COLOR_FIX_MODE_NONE: _ClassVar[ColorFixMode]
    COLOR_FIX_MODE_WAVELET: _ClassVar[ColorFixMode]
    COLOR_FIX_MODE_ADAIN: _ClassVar[ColorFixMode]

class TransformMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFORM_MODE_UNSPECIFIED: _ClassVar[TransformMode]
    TRANSFORM_MODE_MODIFY: _ClassVar[TransformMode]
    TRANSFORM_MODE_COPY: _ClassVar[TransformMode]

class JobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_KIND_UNSPECIFIED: _ClassVar[JobKind]
    JOB_KIND_UPSCALE: _ClassVar[JobKind]
    JOB_KIND_GENERATE: _ClassVar[JobKind]
    JOB_KIND_TRANSFORM: _ClassVar[JobKind]
    JOB_KIND_REFERENCE: _ClassVar[JobKind]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class JobStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STAGE_UNSPECIFIED: _ClassVar[JobStage]
    JOB_STAGE_DECODE: _ClassVar[JobStage]
    JOB_STAGE_GENERATE: _ClassVar[JobStage]
    JOB_STAGE_PREUPSCALE: _ClassVar[JobStage]
    JOB_STAGE_PLAN: _ClassVar[JobStage]
    JOB_STAGE_CAPTION: _ClassVar[JobStage]
    JOB_STAGE_REDRAW: _ClassVar[JobStage]
    JOB_STAGE_BLEND: _ClassVar[JobStage]
    JOB_STAGE_COLOR_FIX: _ClassVar[JobStage]
    JOB_STAGE_SEAM_FIX: _ClassVar[JobStage]
    JOB_STAGE_DOWNSCALE: _ClassVar[JobStage]
    JOB_STAGE_ENCODE: _ClassVar[JobStage]
    JOB_STAGE_TRANSFORM: _ClassVar[JobStage]
    JOB_STAGE_REFERENCE: _ClassVar[JobStage]
RESOLUTION_PRESET_UNSPECIFIED: ResolutionPreset
RESOLUTION_PRESET_2K: ResolutionPreset
RESOLUTION_PRESET_4K: ResolutionPreset
RESOLUTION_PRESET_8K: ResolutionPreset
TARGET_FIT_UNSPECIFIED: TargetFit
TARGET_FIT_STRETCH: TargetFit
TARGET_FIT_COVER: TargetFit
TARGET_FIT_CONTAIN: TargetFit
COLOR_FIX_MODE_UNSPECIFIED: ColorFixMode
COLOR_FIX_MODE_NONE: ColorFixMode
COLOR_FIX_MODE_WAVELET: ColorFixMode
COLOR_FIX_MODE_ADAIN: ColorFixMode
TRANSFORM_MODE_UNSPECIFIED: TransformMode
TRANSFORM_MODE_MODIFY: TransformMode
TRANSFORM_MODE_COPY: TransformMode
JOB_KIND_UNSPECIFIED: JobKind
JOB_KIND_UPSCALE: JobKind
JOB_KIND_GENERATE: JobKind
JOB_KIND_TRANSFORM: JobKind
JOB_KIND_REFERENCE: JobKind
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STAGE_UNSPECIFIED: JobStage
JOB_STAGE_DECODE: JobStage
JOB_STAGE_GENERATE: JobStage
JOB_STAGE_PREUPSCALE: JobStage
JOB_STAGE_PLAN: JobStage
JOB_STAGE_CAPTION: JobStage
JOB_STAGE_REDRAW: JobStage
JOB_STAGE_BLEND: JobStage
JOB_STAGE_COLOR_FIX: JobStage
JOB_STAGE_SEAM_FIX: JobStage
JOB_STAGE_DOWNSCALE: JobStage
JOB_STAGE_ENCODE: JobStage
JOB_STAGE_TRANSFORM: JobStage
JOB_STAGE_REFERENCE: JobStage

class UpscaleTarget(_message.Message):
    __slots__ = ("scale", "size", "preset", "fit")
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    FIT_FIELD_NUMBER: _ClassVar[int]
    scale: float
    size: _common_pb2.Size
    preset: ResolutionPreset
    fit: TargetFit
    def __init__(self, scale: _Optional[float] = ..., size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., preset: _Optional[_Union[ResolutionPreset, str]] = ..., fit: _Optional[_Union[TargetFit, str]] = ...) -> None: ...

class IpAdapterSettings(_message.Message):
    __slots__ = ("image_id", "scale")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    scale: float
    def __init__(self, image_id: _Optional[str] = ..., scale: _Optional[float] = ...) -> None: ...

class SeamFixSettings(_message.Message):
    __slots__ = ("enabled", "strength", "band_width")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    BAND_WIDTH_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    strength: float
    band_width: int
    def __init__(self, enabled: _Optional[bool] = ..., strength: _Optional[float] = ..., band_width: _Optional[int] = ...) -> None: ...

class CaptionSettings(_message.Message):
    __slots__ = ("auto_caption", "instruction", "system_prompt", "use_context", "max_new_tokens")
    AUTO_CAPTION_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    USE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    auto_caption: bool
    instruction: str
    system_prompt: str
    use_context: bool
    max_new_tokens: int
    def __init__(self, auto_caption: _Optional[bool] = ..., instruction: _Optional[str] = ..., system_prompt: _Optional[str] = ..., use_context: _Optional[bool] = ..., max_new_tokens: _Optional[int] = ...) -> None: ...

class UpscaleSettings(_message.Message):
    __slots__ = ("target", "supersampling", "tile_size", "overlap", "feather", "prompt", "negative_prompt", "strength", "steps", "cfg_scale", "seed", "scheduler", "controlnet", "ip_adapter", "loras", "seam_fix", "color_fix", "caption", "pre_upscaler", "generation_size", "batch_size", "keep_intermediates")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SUPERSAMPLING_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    FEATHER_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CFG_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    CONTROLNET_FIELD_NUMBER: _ClassVar[int]
    IP_ADAPTER_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    SEAM_FIX_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIX_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    PRE_UPSCALER_FIELD_NUMBER: _ClassVar[int]
    GENERATION_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    KEEP_INTERMEDIATES_FIELD_NUMBER: _ClassVar[int]
    target: UpscaleTarget
    supersampling: float
    tile_size: _common_pb2.Size
    overlap: int
    feather: _tiling_pb2.FeatherMode
    prompt: str
    negative_prompt: str
    strength: float
    steps: int
    cfg_scale: float
    seed: int
    scheduler: _diffusion_pb2.Scheduler
    controlnet: _diffusion_pb2.ControlNetSettings
    ip_adapter: IpAdapterSettings
    loras: _containers.RepeatedCompositeFieldContainer[_common_pb2.LoraRef]
    seam_fix: SeamFixSettings
    color_fix: ColorFixMode
    caption: CaptionSettings
    pre_upscaler: str
    generation_size: int
    batch_size: int
    keep_intermediates: bool
    def __init__(self, target: _Optional[_Union[UpscaleTarget, _Mapping]] = ..., supersampling: _Optional[float] = ..., tile_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., overlap: _Optional[int] = ..., feather: _Optional[_Union[_tiling_pb2.FeatherMode, str]] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., strength: _Optional[float] = ..., steps: _Optional[int] = ..., cfg_scale: _Optional[float] = ..., seed: _Optional[int] = ..., scheduler: _Optional[_Union[_diffusion_pb2.Scheduler, str]] = ..., controlnet: _Optional[_Union[_diffusion_pb2.ControlNetSettings, _Mapping]] = ..., ip_adapter: _Optional[_Union[IpAdapterSettings, _Mapping]] = ..., loras: _Optional[_Iterable[_Union[_common_pb2.LoraRef, _Mapping]]] = ..., seam_fix: _Optional[_Union[SeamFixSettings, _Mapping]] = ..., color_fix: _Optional[_Union[ColorFixMode, str]] = ..., caption: _Optional[_Union[CaptionSettings, _Mapping]] = ..., pre_upscaler: _Optional[str] = ..., generation_size: _Optional[int] = ..., batch_size: _Optional[int] = ..., keep_intermediates: _Optional[bool] = ...) -> None: ...

class UpscaleRegion(_message.Message):
    __slots__ = ("rect", "prompt", "padding", "feather", "strength")
    RECT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    FEATHER_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    rect: _common_pb2.Rect
    prompt: str
    padding: int
    feather: int
    strength: float
    def __init__(self, rect: _Optional[_Union[_common_pb2.Rect, _Mapping]] = ..., prompt: _Optional[str] = ..., padding: _Optional[int] = ..., feather: _Optional[int] = ..., strength: _Optional[float] = ...) -> None: ...

class UpscaleSpec(_message.Message):
    __slots__ = ("image_id", "settings", "tile_prompts", "regions", "selected_tiles")
    class TilePromptsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    TILE_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    SELECTED_TILES_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    settings: UpscaleSettings
    tile_prompts: _containers.ScalarMap[int, str]
    regions: _containers.RepeatedCompositeFieldContainer[UpscaleRegion]
    selected_tiles: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, image_id: _Optional[str] = ..., settings: _Optional[_Union[UpscaleSettings, _Mapping]] = ..., tile_prompts: _Optional[_Mapping[int, str]] = ..., regions: _Optional[_Iterable[_Union[UpscaleRegion, _Mapping]]] = ..., selected_tiles: _Optional[_Iterable[int]] = ...) -> None: ...

class GenerateSpec(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "base_size", "base_steps", "base_cfg_scale", "settings")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    BASE_SIZE_FIELD_NUMBER: _ClassVar[int]
    BASE_STEPS_FIELD_NUMBER: _ClassVar[int]
    BASE_CFG_SCALE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    base_size: _common_pb2.Size
    base_steps: int
    base_cfg_scale: float
    settings: UpscaleSettings
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., base_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., base_steps: _Optional[int] = ..., base_cfg_scale: _Optional[float] = ..., settings: _Optional[_Union[UpscaleSettings, _Mapping]] = ...) -> None: ...

class TransformSpec(_message.Message):
    __slots__ = ("image_id", "mode", "reference_strength", "prompt", "negative_prompt", "steps", "cfg_scale", "enhance_prompt", "seed", "scheduler", "loras", "provider_chain")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CFG_SCALE_FIELD_NUMBER: _ClassVar[int]
    ENHANCE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CHAIN_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    mode: TransformMode
    reference_strength: float
    prompt: str
    negative_prompt: str
    steps: int
    cfg_scale: float
    enhance_prompt: bool
    seed: int
    scheduler: _diffusion_pb2.Scheduler
    loras: _containers.RepeatedCompositeFieldContainer[_common_pb2.LoraRef]
    provider_chain: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image_id: _Optional[str] = ..., mode: _Optional[_Union[TransformMode, str]] = ..., reference_strength: _Optional[float] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., steps: _Optional[int] = ..., cfg_scale: _Optional[float] = ..., enhance_prompt: _Optional[bool] = ..., seed: _Optional[int] = ..., scheduler: _Optional[_Union[_diffusion_pb2.Scheduler, str]] = ..., loras: _Optional[_Iterable[_Union[_common_pb2.LoraRef, _Mapping]]] = ..., provider_chain: _Optional[_Iterable[str]] = ...) -> None: ...

class ReferenceSpec(_message.Message):
    __slots__ = ("reference_image_id", "prompt", "attributes", "loras", "mode", "model", "size", "seed", "steps", "guidance_scale", "provider_chain")
    REFERENCE_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CHAIN_FIELD_NUMBER: _ClassVar[int]
    reference_image_id: str
    prompt: str
    attributes: _bridge_pb2.PhysicalAttributes
    loras: _containers.RepeatedCompositeFieldContainer[_bridge_pb2.RemoteLora]
    mode: _bridge_pb2.HostedGenerationMode
    model: str
    size: _common_pb2.Size
    seed: int
    steps: int
    guidance_scale: float
    provider_chain: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reference_image_id: _Optional[str] = ..., prompt: _Optional[str] = ..., attributes: _Optional[_Union[_bridge_pb2.PhysicalAttributes, _Mapping]] = ..., loras: _Optional[_Iterable[_Union[_bridge_pb2.RemoteLora, _Mapping]]] = ..., mode: _Optional[_Union[_bridge_pb2.HostedGenerationMode, str]] = ..., model: _Optional[str] = ..., size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., provider_chain: _Optional[_Iterable[str]] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("upscale", "generate", "transform", "reference", "label")
    UPSCALE_FIELD_NUMBER: _ClassVar[int]
    GENERATE_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    upscale: UpscaleSpec
    generate: GenerateSpec
    transform: TransformSpec
    reference: ReferenceSpec
    label: str
    def __init__(self, upscale: _Optional[_Union[UpscaleSpec, _Mapping]] = ..., generate: _Optional[_Union[GenerateSpec, _Mapping]] = ..., transform: _Optional[_Union[TransformSpec, _Mapping]] = ..., reference: _Optional[_Union[ReferenceSpec, _Mapping]] = ..., label: _Optional[str] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("stage", "tiles_done", "tiles_total", "eta_seconds", "fraction", "queue_position")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TILES_DONE_FIELD_NUMBER: _ClassVar[int]
    TILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    stage: JobStage
    tiles_done: int
    tiles_total: int
    eta_seconds: float
    fraction: float
    queue_position: int
    def __init__(self, stage: _Optional[_Union[JobStage, str]] = ..., tiles_done: _Optional[int] = ..., tiles_total: _Optional[int] = ..., eta_seconds: _Optional[float] = ..., fraction: _Optional[float] = ..., queue_position: _Optional[int] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: JobStage
    seconds: float
    def __init__(self, stage: _Optional[_Union[JobStage, str]] = ..., seconds: _Optional[float] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("size", "has_alpha", "encoding", "size_bytes", "image_id", "intermediates", "stage_timings", "tiles_redrawn", "provider", "model", "attempts")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    HAS_ALPHA_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATES_FIELD_NUMBER: _ClassVar[int]
    STAGE_TIMINGS_FIELD_NUMBER: _ClassVar[int]
    TILES_REDRAWN_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    size: _common_pb2.Size
    has_alpha: bool
    encoding: _common_pb2.ImageEncoding
    size_bytes: int
    image_id: str
    intermediates: _containers.RepeatedScalarFieldContainer[str]
    stage_timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    tiles_redrawn: int
    provider: str
    model: str
    attempts: _containers.RepeatedCompositeFieldContainer[_bridge_pb2.ProviderAttempt]
    def __init__(self, size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., has_alpha: _Optional[bool] = ..., encoding: _Optional[_Union[_common_pb2.ImageEncoding, str]] = ..., size_bytes: _Optional[int] = ..., image_id: _Optional[str] = ..., intermediates: _Optional[_Iterable[str]] = ..., stage_timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., tiles_redrawn: _Optional[int] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., attempts: _Optional[_Iterable[_Union[_bridge_pb2.ProviderAttempt, _Mapping]]] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("code", "message", "stage", "request_id", "field", "error_class")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    stage: JobStage
    request_id: str
    field: str
    error_class: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., stage: _Optional[_Union[JobStage, str]] = ..., request_id: _Optional[str] = ..., field: _Optional[str] = ..., error_class: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "state", "spec", "created_time", "started_time", "finished_time", "progress", "seed", "result", "error", "last_seq")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    STARTED_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISHED_TIME_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: JobKind
    state: JobState
    spec: JobSpec
    created_time: _timestamp_pb2.Timestamp
    started_time: _timestamp_pb2.Timestamp
    finished_time: _timestamp_pb2.Timestamp
    progress: JobProgress
    seed: int
    result: JobResult
    error: JobError
    last_seq: int
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., seed: _Optional[int] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("spec", "idempotency_key")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    idempotency_key: str
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "kinds", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    kinds: _containers.RepeatedScalarFieldContainer[JobKind]
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., kinds: _Optional[_Iterable[_Union[JobKind, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetResultRequest(_message.Message):
    __slots__ = ("job_id", "intermediate", "encoding", "quality")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    intermediate: str
    encoding: _common_pb2.ImageEncoding
    quality: int
    def __init__(self, job_id: _Optional[str] = ..., intermediate: _Optional[str] = ..., encoding: _Optional[_Union[_common_pb2.ImageEncoding, str]] = ..., quality: _Optional[int] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_seq", "omit_previews")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    OMIT_PREVIEWS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_seq: int
    omit_previews: bool
    def __init__(self, job_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., omit_previews: _Optional[bool] = ...) -> None: ...

class JobAccepted(_message.Message):
    __slots__ = ("kind", "seed")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    kind: JobKind
    seed: int
    def __init__(self, kind: _Optional[_Union[JobKind, str]] = ..., seed: _Optional[int] = ...) -> None: ...

class JobResumed(_message.Message):
    __slots__ = ("tiles_restored",)
    TILES_RESTORED_FIELD_NUMBER: _ClassVar[int]
    tiles_restored: int
    def __init__(self, tiles_restored: _Optional[int] = ...) -> None: ...

class JobStageStarted(_message.Message):
    __slots__ = ("stage", "detail")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    stage: JobStage
    detail: str
    def __init__(self, stage: _Optional[_Union[JobStage, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class JobStageFinished(_message.Message):
    __slots__ = ("stage", "seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: JobStage
    seconds: float
    def __init__(self, stage: _Optional[_Union[JobStage, str]] = ..., seconds: _Optional[float] = ...) -> None: ...

class JobTileCaptioned(_message.Message):
    __slots__ = ("index", "caption", "cached")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    index: int
    caption: str
    cached: bool
    def __init__(self, index: _Optional[int] = ..., caption: _Optional[str] = ..., cached: _Optional[bool] = ...) -> None: ...

class JobTileDone(_message.Message):
    __slots__ = ("stage", "tile_index", "region_index", "preview", "provider", "model", "seed", "restored")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TILE_INDEX_FIELD_NUMBER: _ClassVar[int]
    REGION_INDEX_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    stage: JobStage
    tile_index: int
    region_index: int
    preview: _common_pb2.Image
    provider: str
    model: str
    seed: int
    restored: bool
    def __init__(self, stage: _Optional[_Union[JobStage, str]] = ..., tile_index: _Optional[int] = ..., region_index: _Optional[int] = ..., preview: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., seed: _Optional[int] = ..., restored: _Optional[bool] = ...) -> None: ...

class JobStepProgress(_message.Message):
    __slots__ = ("stage", "step", "total_steps", "tile_indices")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    TILE_INDICES_FIELD_NUMBER: _ClassVar[int]
    stage: JobStage
    step: int
    total_steps: int
    tile_indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, stage: _Optional[_Union[JobStage, str]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., tile_indices: _Optional[_Iterable[int]] = ...) -> None: ...

class JobHeartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobSucceeded(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: JobResult
    def __init__(self, result: _Optional[_Union[JobResult, _Mapping]] = ...) -> None: ...

class JobFailed(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: JobError
    def __init__(self, error: _Optional[_Union[JobError, _Mapping]] = ...) -> None: ...

class JobCancelled(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("seq", "time", "progress", "accepted", "resumed", "stage_started", "stage_finished", "tile_captioned", "tile_done", "provider_attempt", "step", "heartbeat", "succeeded", "failed", "cancelled")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    STAGE_STARTED_FIELD_NUMBER: _ClassVar[int]
    STAGE_FINISHED_FIELD_NUMBER: _ClassVar[int]
    TILE_CAPTIONED_FIELD_NUMBER: _ClassVar[int]
    TILE_DONE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: _timestamp_pb2.Timestamp
    progress: JobProgress
    accepted: JobAccepted
    resumed: JobResumed
    stage_started: JobStageStarted
    stage_finished: JobStageFinished
    tile_captioned: JobTileCaptioned
    tile_done: JobTileDone
    provider_attempt: _bridge_pb2.ProviderAttempt
    step: JobStepProgress
    heartbeat: JobHeartbeat
    succeeded: JobSucceeded
    failed: JobFailed
    cancelled: JobCancelled
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., accepted: _Optional[_Union[JobAccepted, _Mapping]] = ..., resumed: _Optional[_Union[JobResumed, _Mapping]] = ..., stage_started: _Optional[_Union[JobStageStarted, _Mapping]] = ..., stage_finished: _Optional[_Union[JobStageFinished, _Mapping]] = ..., tile_captioned: _Optional[_Union[JobTileCaptioned, _Mapping]] = ..., tile_done: _Optional[_Union[JobTileDone, _Mapping]] = ..., provider_attempt: _Optional[_Union[_bridge_pb2.ProviderAttempt, _Mapping]] = ..., step: _Optional[_Union[JobStepProgress, _Mapping]] = ..., heartbeat: _Optional[_Union[JobHeartbeat, _Mapping]] = ..., succeeded: _Optional[_Union[JobSucceeded, _Mapping]] = ..., failed: _Optional[_Union[JobFailed, _Mapping]] = ..., cancelled: _Optional[_Union[JobCancelled, _Mapping]] = ...) -> None: ...

class UploadImageParams(_message.Message):
    __slots__ = ("filename",)
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    filename: str
    def __init__(self, filename: _Optional[str] = ...) -> None: ...

class UploadImageRequest(_message.Message):
    __slots__ = ("params", "image")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    params: UploadImageParams
    image: _common_pb2.ImageChunk
    def __init__(self, params: _Optional[_Union[UploadImageParams, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ...) -> None: ...

class UploadImageResponse(_message.Message):
    __slots__ = ("image_id", "size", "has_alpha", "encoding", "size_bytes", "sha256")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    HAS_ALPHA_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    size: _common_pb2.Size
    has_alpha: bool
    encoding: _common_pb2.ImageEncoding
    size_bytes: int
    sha256: str
    def __init__(self, image_id: _Optional[str] = ..., size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., has_alpha: _Optional[bool] = ..., encoding: _Optional[_Union[_common_pb2.ImageEncoding, str]] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class GridLayout(_message.Message):
    __slots__ = ("input_size", "working_size", "output_size", "plan", "seam_plan")
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    WORKING_SIZE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SEAM_PLAN_FIELD_NUMBER: _ClassVar[int]
    input_size: _common_pb2.Size
    working_size: _common_pb2.Size
    output_size: _common_pb2.Size
    plan: _common_pb2.GridPlan
    seam_plan: _common_pb2.GridPlan
    def __init__(self, input_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., working_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., output_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., plan: _Optional[_Union[_common_pb2.GridPlan, _Mapping]] = ..., seam_plan: _Optional[_Union[_common_pb2.GridPlan, _Mapping]] = ...) -> None: ...

class GatewayPlanGridRequest(_message.Message):
    __slots__ = ("image_id", "settings")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    settings: UpscaleSettings
    def __init__(self, image_id: _Optional[str] = ..., settings: _Optional[_Union[UpscaleSettings, _Mapping]] = ...) -> None: ...

class GatewayRenderGridRequest(_message.Message):
    __slots__ = ("image_id", "settings", "selected", "processed", "max_side", "thumbnail_size")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_SIZE_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    settings: UpscaleSettings
    selected: _containers.RepeatedScalarFieldContainer[int]
    processed: _containers.RepeatedScalarFieldContainer[int]
    max_side: int
    thumbnail_size: int
    def __init__(self, image_id: _Optional[str] = ..., settings: _Optional[_Union[UpscaleSettings, _Mapping]] = ..., selected: _Optional[_Iterable[int]] = ..., processed: _Optional[_Iterable[int]] = ..., max_side: _Optional[int] = ..., thumbnail_size: _Optional[int] = ...) -> None: ...

class GatewayRenderGridResponse(_message.Message):
    __slots__ = ("layout", "overview", "thumbnail")
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    OVERVIEW_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    layout: GridLayout
    overview: _common_pb2.ImageChunk
    thumbnail: _tiling_pb2.TileImage
    def __init__(self, layout: _Optional[_Union[GridLayout, _Mapping]] = ..., overview: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ..., thumbnail: _Optional[_Union[_tiling_pb2.TileImage, _Mapping]] = ...) -> None: ...

class CaptionTilesRequest(_message.Message):
    __slots__ = ("image_id", "settings", "tile_indices")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    TILE_INDICES_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    settings: UpscaleSettings
    tile_indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, image_id: _Optional[str] = ..., settings: _Optional[_Union[UpscaleSettings, _Mapping]] = ..., tile_indices: _Optional[_Iterable[int]] = ...) -> None: ...

class CaptionTilesResponse(_message.Message):
    __slots__ = ("index", "caption", "cached", "model", "done", "total")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    index: int
    caption: str
    cached: bool
    model: str
    done: int
    total: int
    def __init__(self, index: _Optional[int] = ..., caption: _Optional[str] = ..., cached: _Optional[bool] = ..., model: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class GatewayAnalyzeImageRequest(_message.Message):
    __slots__ = ("image_id", "params")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    params: _bridge_pb2.AnalyzeImageParams
    def __init__(self, image_id: _Optional[str] = ..., params: _Optional[_Union[_bridge_pb2.AnalyzeImageParams, _Mapping]] = ...) -> None: ...

class Preset(_message.Message):
    __slots__ = ("name", "description", "settings", "created_time", "updated_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    settings: UpscaleSettings
    created_time: _timestamp_pb2.Timestamp
    updated_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., settings: _Optional[_Union[UpscaleSettings, _Mapping]] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SavePresetRequest(_message.Message):
    __slots__ = ("preset",)
    PRESET_FIELD_NUMBER: _ClassVar[int]
    preset: Preset
    def __init__(self, preset: _Optional[_Union[Preset, _Mapping]] = ...) -> None: ...

class GetPresetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListPresetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPresetsResponse(_message.Message):
    __slots__ = ("presets",)
    PRESETS_FIELD_NUMBER: _ClassVar[int]
    presets: _containers.RepeatedCompositeFieldContainer[Preset]
    def __init__(self, presets: _Optional[_Iterable[_Union[Preset, _Mapping]]] = ...) -> None: ...

class DeletePresetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeletePresetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
