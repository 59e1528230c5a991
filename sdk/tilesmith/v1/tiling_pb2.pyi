from tilesmith.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatherMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATHER_MODE_UNSPECIFIED: _ClassVar[FeatherMode]
    FEATHER_MODE_LINEAR: _ClassVar[FeatherMode]
    FEATHER_MODE_COSINE: _ClassVar[FeatherMode]

class ColorFixMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLOR_FIX_METHOD_UNSPECIFIED: _ClassVar[ColorFixMethod]
    COLOR_FIX_METHOD_WAVELET: _ClassVar[ColorFixMethod]
    COLOR_FIX_METHOD_ADAIN: _ClassVar[ColorFixMethod]
FEATHER_MODE_UNSPECIFIED: FeatherMode
FEATHER_MODE_LINEAR: FeatherMode
FEATHER_MODE_COSINE: FeatherMode
COLOR_FIX_METHOD_UNSPECIFIED: ColorFixMethod
COLOR_FIX_METHOD_WAVELET: ColorFixMethod
COLOR_FIX_METHOD_ADAIN: ColorFixMethod

class PlanGridRequest(_message.Message):
    __slots__ = ("image_size", "tile_size", "overlap", "offset")
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    image_size: _common_pb2.Size
    tile_size: _common_pb2.Size
    overlap: int
    offset: bool
    def __init__(self, image_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., tile_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., overlap: _Optional[int] = ..., offset: _Optional[bool] = ...) -> None: ...

class GridParams(_message.Message):
    __slots__ = ("tile_size", "overlap", "offset")
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    tile_size: _common_pb2.Size
    overlap: int
    offset: bool
    def __init__(self, tile_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., overlap: _Optional[int] = ..., offset: _Optional[bool] = ...) -> None: ...

class SplitRequest(_message.Message):
    __slots__ = ("params", "image")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    params: GridParams
    image: _common_pb2.ImageChunk
    def __init__(self, params: _Optional[_Union[GridParams, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ...) -> None: ...

class TileImage(_message.Message):
    __slots__ = ("tile", "image")
    TILE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    tile: _common_pb2.Tile
    image: _common_pb2.Image
    def __init__(self, tile: _Optional[_Union[_common_pb2.Tile, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ...) -> None: ...

class BlendParams(_message.Message):
    __slots__ = ("image_size", "grid", "format", "feather")
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FEATHER_FIELD_NUMBER: _ClassVar[int]
    image_size: _common_pb2.Size
    grid: GridParams
    format: _common_pb2.PixelFormat
    feather: FeatherMode
    def __init__(self, image_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., grid: _Optional[_Union[GridParams, _Mapping]] = ..., format: _Optional[_Union[_common_pb2.PixelFormat, str]] = ..., feather: _Optional[_Union[FeatherMode, str]] = ...) -> None: ...

class BlendRequest(_message.Message):
    __slots__ = ("params", "tile")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TILE_FIELD_NUMBER: _ClassVar[int]
    params: BlendParams
    tile: TileImage
    def __init__(self, params: _Optional[_Union[BlendParams, _Mapping]] = ..., tile: _Optional[_Union[TileImage, _Mapping]] = ...) -> None: ...

class BlendSeamsParams(_message.Message):
    __slots__ = ("image_size", "first_grid", "format", "feather", "band_width")
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    FIRST_GRID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FEATHER_FIELD_NUMBER: _ClassVar[int]
    BAND_WIDTH_FIELD_NUMBER: _ClassVar[int]
    image_size: _common_pb2.Size
    first_grid: GridParams
    format: _common_pb2.PixelFormat
    feather: FeatherMode
    band_width: int
    def __init__(self, image_size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ..., first_grid: _Optional[_Union[GridParams, _Mapping]] = ..., format: _Optional[_Union[_common_pb2.PixelFormat, str]] = ..., feather: _Optional[_Union[FeatherMode, str]] = ..., band_width: _Optional[int] = ...) -> None: ...

class BlendSeamsRequest(_message.Message):
    __slots__ = ("params", "base", "tile")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    TILE_FIELD_NUMBER: _ClassVar[int]
    params: BlendSeamsParams
    base: _common_pb2.ImageChunk
    tile: TileImage
    def __init__(self, params: _Optional[_Union[BlendSeamsParams, _Mapping]] = ..., base: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ..., tile: _Optional[_Union[TileImage, _Mapping]] = ...) -> None: ...

class BlendSummary(_message.Message):
    __slots__ = ("tiles", "touched_fraction")
    TILES_FIELD_NUMBER: _ClassVar[int]
    TOUCHED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    tiles: int
    touched_fraction: float
    def __init__(self, tiles: _Optional[int] = ..., touched_fraction: _Optional[float] = ...) -> None: ...

class BlendResponse(_message.Message):
    __slots__ = ("image", "summary")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageChunk
    summary: BlendSummary
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ..., summary: _Optional[_Union[BlendSummary, _Mapping]] = ...) -> None: ...

class ResizeParams(_message.Message):
    __slots__ = ("size",)
    SIZE_FIELD_NUMBER: _ClassVar[int]
    size: _common_pb2.Size
    def __init__(self, size: _Optional[_Union[_common_pb2.Size, _Mapping]] = ...) -> None: ...

class ResizeRequest(_message.Message):
    __slots__ = ("params", "image")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    params: ResizeParams
    image: _common_pb2.ImageChunk
    def __init__(self, params: _Optional[_Union[ResizeParams, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ...) -> None: ...

class ColorFixParams(_message.Message):
    __slots__ = ("method",)
    METHOD_FIELD_NUMBER: _ClassVar[int]
    method: ColorFixMethod
    def __init__(self, method: _Optional[_Union[ColorFixMethod, str]] = ...) -> None: ...

class ColorFixRequest(_message.Message):
    __slots__ = ("params", "target", "reference")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    params: ColorFixParams
    target: _common_pb2.ImageChunk
    reference: _common_pb2.ImageChunk
    def __init__(self, params: _Optional[_Union[ColorFixParams, _Mapping]] = ..., target: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ..., reference: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ...) -> None: ...

class RenderGridParams(_message.Message):
    __slots__ = ("grid", "selected", "processed", "max_side", "thumbnail_size")
    GRID_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_SIZE_FIELD_NUMBER: _ClassVar[int]
    grid: GridParams
    selected: _containers.RepeatedScalarFieldContainer[int]
    processed: _containers.RepeatedScalarFieldContainer[int]
    max_side: int
    thumbnail_size: int
    def __init__(self, grid: _Optional[_Union[GridParams, _Mapping]] = ..., selected: _Optional[_Iterable[int]] = ..., processed: _Optional[_Iterable[int]] = ..., max_side: _Optional[int] = ..., thumbnail_size: _Optional[int] = ...) -> None: ...

class RenderGridRequest(_message.Message):
    __slots__ = ("params", "image")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    params: RenderGridParams
    image: _common_pb2.ImageChunk
    def __init__(self, params: _Optional[_Union[RenderGridParams, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ...) -> None: ...

class RenderGridResponse(_message.Message):
    __slots__ = ("overview", "thumbnail")
    OVERVIEW_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    overview: _common_pb2.ImageChunk
    thumbnail: TileImage
    def __init__(self, overview: _Optional[_Union[_common_pb2.ImageChunk, _Mapping]] = ..., thumbnail: _Optional[_Union[TileImage, _Mapping]] = ...) -> None: ...
