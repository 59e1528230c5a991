from tilesmith.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CaptionContext(_message.Message):
    __slots__ = ("overview", "source_size")
    OVERVIEW_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SIZE_FIELD_NUMBER: _ClassVar[int]
    overview: _common_pb2.Image
    source_size: _common_pb2.Size
    def __init__(self, overview: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., source_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ...) -> None: ...

class CaptionItem(_message.Message):
    __slots__ = ("image", "rect")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RECT_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    rect: _common_pb2.Rect
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., rect: _Optional[_Union[_common_pb2.Rect, _Mapping]] = ...) -> None: ...

class CaptionRequest(_message.Message):
    __slots__ = ("items", "system_prompt", "instruction", "max_new_tokens", "context")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CaptionItem]
    system_prompt: str
    instruction: str
    max_new_tokens: int
    context: CaptionContext
    def __init__(self, items: _Optional[_Iterable[_Union[CaptionItem, _Mapping]]] = ..., system_prompt: _Optional[str] = ..., instruction: _Optional[str] = ..., max_new_tokens: _Optional[int] = ..., context: _Optional[_Union[CaptionContext, _Mapping]] = ...) -> None: ...

class CaptionResult(_message.Message):
    __slots__ = ("text", "cached", "generated_tokens")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    text: str
    cached: bool
    generated_tokens: int
    def __init__(self, text: _Optional[str] = ..., cached: _Optional[bool] = ..., generated_tokens: _Optional[int] = ...) -> None: ...

class CaptionResponse(_message.Message):
    __slots__ = ("captions", "model", "system_prompt", "instruction", "inference_seconds")
    CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    captions: _containers.RepeatedCompositeFieldContainer[CaptionResult]
    model: str
    system_prompt: str
    instruction: str
    inference_seconds: float
    def __init__(self, captions: _Optional[_Iterable[_Union[CaptionResult, _Mapping]]] = ..., model: _Optional[str] = ..., system_prompt: _Optional[str] = ..., instruction: _Optional[str] = ..., inference_seconds: _Optional[float] = ...) -> None: ...
