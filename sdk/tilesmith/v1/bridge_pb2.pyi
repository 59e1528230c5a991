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

class ProviderKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVIDER_KIND_UNSPECIFIED: _ClassVar[ProviderKind]
    PROVIDER_KIND_FAL: _ClassVar[ProviderKind]
    PROVIDER_KIND_OPENAI_COMPATIBLE: _ClassVar[ProviderKind]
    PROVIDER_KIND_REPLICATE: _ClassVar[ProviderKind]
    PROVIDER_KIND_OPENROUTER: _ClassVar[ProviderKind]
    PROVIDER_KIND_INTERNAL: _ClassVar[ProviderKind]

class ProviderCapability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVIDER_CAPABILITY_UNSPECIFIED: _ClassVar[ProviderCapability]
    PROVIDER_CAPABILITY_ANALYZE_IMAGE: _ClassVar[ProviderCapability]
    PROVIDER_CAPABILITY_TEXT_TO_IMAGE: _ClassVar[ProviderCapability]
    PROVIDER_CAPABILITY_DEPTH_TO_IMAGE: _ClassVar[ProviderCapability]
    PROVIDER_CAPABILITY_IMAGE_EDIT: _ClassVar[ProviderCapability]
    PROVIDER_CAPABILITY_IMAGE_TO_IMAGE: _ClassVar[ProviderCapability]

class CircuitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIRCUIT_STATE_UNSPECIFIED: _ClassVar[CircuitState]
    CIRCUIT_STATE_CLOSED: _ClassVar[CircuitState]
    CIRCUIT_STATE_OPEN: _ClassVar[CircuitState]
    CIRCUIT_STATE_HALF_OPEN: _ClassVar[CircuitState]

class AttemptOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_OUTCOME_UNSPECIFIED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SUCCEEDED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_FAILED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SKIPPED_UNAVAILABLE: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SKIPPED_CIRCUIT_OPEN: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SKIPPED_UNSUPPORTED: _ClassVar[AttemptOutcome]

class HostedGenerationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOSTED_GENERATION_MODE_UNSPECIFIED: _ClassVar[HostedGenerationMode]
    HOSTED_GENERATION_MODE_TEXT_TO_IMAGE: _ClassVar[HostedGenerationMode]
    HOSTED_GENERATION_MODE_DEPTH: _ClassVar[HostedGenerationMode]
    HOSTED_GENERATION_MODE_EDIT: _ClassVar[HostedGenerationMode]

class HostedState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOSTED_STATE_UNSPECIFIED: _ClassVar[HostedState]
    HOSTED_STATE_QUEUED: _ClassVar[HostedState]
    HOSTED_STATE_RUNNING: _ClassVar[HostedState]
    HOSTED_STATE_FETCHING: _ClassVar[HostedState]
PROVIDER_KIND_UNSPECIFIED: ProviderKind
PROVIDER_KIND_FAL: ProviderKind
PROVIDER_KIND_OPENAI_COMPATIBLE: ProviderKind
PROVIDER_KIND_REPLICATE: ProviderKind
PROVIDER_KIND_OPENROUTER: ProviderKind
PROVIDER_KIND_INTERNAL: ProviderKind
PROVIDER_CAPABILITY_UNSPECIFIED: ProviderCapability
PROVIDER_CAPABILITY_ANALYZE_IMAGE: ProviderCapability
PROVIDER_CAPABILITY_TEXT_TO_IMAGE: ProviderCapability
PROVIDER_CAPABILITY_DEPTH_TO_IMAGE: ProviderCapability
PROVIDER_CAPABILITY_IMAGE_EDIT: ProviderCapability
PROVIDER_CAPABILITY_IMAGE_TO_IMAGE: ProviderCapability
CIRCUIT_STATE_UNSPECIFIED: CircuitState
CIRCUIT_STATE_CLOSED: CircuitState
CIRCUIT_STATE_OPEN: CircuitState
CIRCUIT_STATE_HALF_OPEN: CircuitState
ATTEMPT_OUTCOME_UNSPECIFIED: AttemptOutcome
ATTEMPT_OUTCOME_SUCCEEDED: AttemptOutcome
ATTEMPT_OUTCOME_FAILED: AttemptOutcome
ATTEMPT_OUTCOME_SKIPPED_UNAVAILABLE: AttemptOutcome
ATTEMPT_OUTCOME_SKIPPED_CIRCUIT_OPEN: AttemptOutcome
ATTEMPT_OUTCOME_SKIPPED_UNSUPPORTED: AttemptOutcome
HOSTED_GENERATION_MODE_UNSPECIFIED: HostedGenerationMode
HOSTED_GENERATION_MODE_TEXT_TO_IMAGE: HostedGenerationMode
HOSTED_GENERATION_MODE_DEPTH: HostedGenerationMode
HOSTED_GENERATION_MODE_EDIT: HostedGenerationMode
HOSTED_STATE_UNSPECIFIED: HostedState
HOSTED_STATE_QUEUED: HostedState
HOSTED_STATE_RUNNING: HostedState
HOSTED_STATE_FETCHING: HostedState

class ProviderInfo(_message.Message):
    __slots__ = ("name", "kind", "capabilities", "available", "unavailable_reason", "circuit_state", "circuit_retry_time", "consecutive_failures", "models", "base_url")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_STATE_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_RETRY_TIME_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ProviderKind
    capabilities: _containers.RepeatedScalarFieldContainer[ProviderCapability]
    available: bool
    unavailable_reason: str
    circuit_state: CircuitState
    circuit_retry_time: _timestamp_pb2.Timestamp
    consecutive_failures: int
    models: _containers.RepeatedScalarFieldContainer[str]
    base_url: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ProviderKind, str]] = ..., capabilities: _Optional[_Iterable[_Union[ProviderCapability, str]]] = ..., available: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ..., circuit_state: _Optional[_Union[CircuitState, str]] = ..., circuit_retry_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consecutive_failures: _Optional[int] = ..., models: _Optional[_Iterable[str]] = ..., base_url: _Optional[str] = ...) -> None: ...

class ProviderChain(_message.Message):
    __slots__ = ("capability", "providers")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    capability: ProviderCapability
    providers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, capability: _Optional[_Union[ProviderCapability, str]] = ..., providers: _Optional[_Iterable[str]] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProvidersResponse(_message.Message):
    __slots__ = ("providers", "default_chains")
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CHAINS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderInfo]
    default_chains: _containers.RepeatedCompositeFieldContainer[ProviderChain]
    def __init__(self, providers: _Optional[_Iterable[_Union[ProviderInfo, _Mapping]]] = ..., default_chains: _Optional[_Iterable[_Union[ProviderChain, _Mapping]]] = ...) -> None: ...

class ProviderAttempt(_message.Message):
    __slots__ = ("provider", "model", "outcome", "status_code", "http_status", "message", "duration_seconds", "retries")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    outcome: AttemptOutcome
    status_code: int
    http_status: int
    message: str
    duration_seconds: float
    retries: int
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., outcome: _Optional[_Union[AttemptOutcome, str]] = ..., status_code: _Optional[int] = ..., http_status: _Optional[int] = ..., message: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., retries: _Optional[int] = ...) -> None: ...

class AnalyzeImageParams(_message.Message):
    __slots__ = ("instruction", "model", "max_tokens", "provider_chain")
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CHAIN_FIELD_NUMBER: _ClassVar[int]
    instruction: str
    model: str
    max_tokens: int
    provider_chain: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instruction: _Optional[str] = ..., model: _Optional[str] = ..., max_tokens: _Optional[int] = ..., provider_chain: _Optional[_Iterable[str]] = ...) -> None: ...

class AnalyzeImageRequest(_message.Message):
    __slots__ = ("params", "image")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    params: AnalyzeImageParams
    image: _common_pb2.ImageChunk
    def __init__(self, params: _Optional[_Union[AnalyzeImageParams, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ...) -> None: ...

class AnalyzeImageResponse(_message.Message):
    __slots__ = ("description", "suggested_prompt", "provider", "model", "attempts")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    description: str
    suggested_prompt: str
    provider: str
    model: str
    attempts: _containers.RepeatedCompositeFieldContainer[ProviderAttempt]
    def __init__(self, description: _Optional[str] = ..., suggested_prompt: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., attempts: _Optional[_Iterable[_Union[ProviderAttempt, _Mapping]]] = ...) -> None: ...

class RemoteLora(_message.Message):
    __slots__ = ("url", "weight", "trigger_words")
    URL_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    url: str
    weight: float
    trigger_words: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, url: _Optional[str] = ..., weight: _Optional[float] = ..., trigger_words: _Optional[_Iterable[str]] = ...) -> None: ...

class PhysicalAttributes(_message.Message):
    __slots__ = ("hair_color", "hair_style", "eye_color", "skin_tone", "body_type", "age", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HAIR_COLOR_FIELD_NUMBER: _ClassVar[int]
    HAIR_STYLE_FIELD_NUMBER: _ClassVar[int]
    EYE_COLOR_FIELD_NUMBER: _ClassVar[int]
    SKIN_TONE_FIELD_NUMBER: _ClassVar[int]
    BODY_TYPE_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    hair_color: str
    hair_style: str
    eye_color: str
    skin_tone: str
    body_type: str
    age: str
    extra: _containers.ScalarMap[str, str]
    def __init__(self, hair_color: _Optional[str] = ..., hair_style: _Optional[str] = ..., eye_color: _Optional[str] = ..., skin_tone: _Optional[str] = ..., body_type: _Optional[str] = ..., age: _Optional[str] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GenerateParams(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "mode", "model", "size", "seed", "steps", "guidance_scale", "loras", "attributes", "output_encoding", "provider_chain")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CHAIN_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    mode: HostedGenerationMode
    model: str
    size: _common_pb2.Size
    seed: int
    steps: int
    guidance_scale: float
    loras: _containers.RepeatedCompositeFieldContainer[RemoteLora]
    attributes: PhysicalAttributes
    output_encoding: _common_pb2.ImageEncoding
    provider_chain: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., mode: _Optional[_Union[HostedGenerationMode, str]] = ..., model: _Optional[str] = ..., size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., loras: _Optional[_Iterable[_Union[RemoteLora, _Mapping]]] = ..., attributes: _Optional[_Union[PhysicalAttributes, _Mapping]] = ..., output_encoding: _Optional[_Union[_common_pb2.ImageEncoding, str]] = ..., provider_chain: _Optional[_Iterable[str]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("params", "reference")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    params: GenerateParams
    reference: _common_pb2.ImageChunk
    def __init__(self, params: _Optional[_Union[GenerateParams, _Mapping]] = ..., reference: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ...) -> None: ...

class HostedImg2ImgParams(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "strength", "model", "seed", "steps", "guidance_scale", "output_encoding", "provider_chain")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CHAIN_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    strength: float
    model: str
    seed: int
    steps: int
    guidance_scale: float
    output_encoding: _common_pb2.ImageEncoding
    provider_chain: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., strength: _Optional[float] = ..., model: _Optional[str] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., output_encoding: _Optional[_Union[_common_pb2.ImageEncoding, str]] = ..., provider_chain: _Optional[_Iterable[str]] = ...) -> None: ...

class BridgeImg2ImgRequest(_message.Message):
    __slots__ = ("params", "image")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    params: HostedImg2ImgParams
    image: _common_pb2.ImageChunk
    def __init__(self, params: _Optional[_Union[HostedImg2ImgParams, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ...) -> None: ...

class HostedStatus(_message.Message):
    __slots__ = ("provider", "state", "queue_position")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    provider: str
    state: HostedState
    queue_position: int
    def __init__(self, provider: _Optional[str] = ..., state: _Optional[_Union[HostedState, str]] = ..., queue_position: _Optional[int] = ...) -> None: ...

class HostedImageResult(_message.Message):
    __slots__ = ("provider", "model", "seed", "prompt", "size", "unused_fields", "attempts")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    UNUSED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    seed: int
    prompt: str
    size: _common_pb2.Size
    unused_fields: _containers.RepeatedScalarFieldContainer[str]
    attempts: _containers.RepeatedCompositeFieldContainer[ProviderAttempt]
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., seed: _Optional[int] = ..., prompt: _Optional[str] = ..., size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., unused_fields: _Optional[_Iterable[str]] = ..., attempts: _Optional[_Iterable[_Union[ProviderAttempt, _Mapping]]] = ...) -> None: ...

class HostedImageResponse(_message.Message):
    __slots__ = ("attempt", "status", "image", "result")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    attempt: ProviderAttempt
    status: HostedStatus
    image: _common_pb2.ImageChunk
    result: HostedImageResult
    def __init__(self, attempt: _Optional[_Union[ProviderAttempt, _Mapping]] = ..., status: _Optional[_Union[HostedStatus, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ..., result: _Optional[_Union[HostedImageResult, _Mapping]] = ...) -> None: ...
