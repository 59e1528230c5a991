from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ENCODING_UNSPECIFIED: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_RAW: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_PNG: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_JPEG: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_WEBP: _ClassVar[ImageEncoding]

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    PIXEL_FORMAT_RGB8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_RGBA8: _ClassVar[PixelFormat]

class BaseArchitecture(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BASE_ARCHITECTURE_UNSPECIFIED: _ClassVar[BaseArchitecture]
    BASE_ARCHITECTURE_SD15: _ClassVar[BaseArchitecture]
    BASE_ARCHITECTURE_SD2: _ClassVar[BaseArchitecture]
    BASE_ARCHITECTURE_SDXL: _ClassVar[BaseArchitecture]
    BASE_ARCHITECTURE_FLUX: _ClassVar[BaseArchitecture]
IMAGE_ENCODING_UNSPECIFIED: ImageEncoding
IMAGE_ENCODING_RAW: ImageEncoding
IMAGE_ENCODING_PNG: ImageEncoding
IMAGE_ENCODING_JPEG: ImageEncoding
IMAGE_ENCODING_WEBP: ImageEncoding
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
PIXEL_FORMAT_RGB8: PixelFormat
PIXEL_FORMAT_RGBA8: PixelFormat
BASE_ARCHITECTURE_UNSPECIFIED: BaseArchitecture
BASE_ARCHITECTURE_SD15: BaseArchitecture
BASE_ARCHITECTURE_SD2: BaseArchitecture
BASE_ARCHITECTURE_SDXL: BaseArchitecture
BASE_ARCHITECTURE_FLUX: BaseArchitecture

class Image(_message.Message):
    __slots__ = ("encoding", "format", "width", "height", "data")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    encoding: ImageEncoding
    format: PixelFormat
    width: int
    height: int
    data: bytes
    def __init__(self, encoding: _Optional[_Union[ImageEncoding, str]] = ..., format: _Optional[_Union[PixelFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImageChunk(_message.Message):
    __slots__ = ("header", "total_bytes", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: Image
    total_bytes: int
    data: bytes
    def __init__(self, header: _Optional[_Union[Image, _Mapping]] = ..., total_bytes: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Rect(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Size(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Tile(_message.Message):
    __slots__ = ("index", "row", "col", "rect")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    COL_FIELD_NUMBER: _ClassVar[int]
    RECT_FIELD_NUMBER: _ClassVar[int]
    index: int
    row: int
    col: int
    rect: Rect
    def __init__(self, index: _Optional[int] = ..., row: _Optional[int] = ..., col: _Optional[int] = ..., rect: _Optional[_Union[Rect, _Mapping]] = ...) -> None: ...

class GridPlan(_message.Message):
    __slots__ = ("image_size", "tile_size", "overlap", "rows", "cols", "offset", "tiles")
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    image_size: Size
    tile_size: Size
    overlap: int
    rows: int
    cols: int
    offset: bool
    tiles: _containers.RepeatedCompositeFieldContainer[Tile]
    def __init__(self, image_size: _Optional[_Union[Size, _Mapping]] = ..., tile_size: _Optional[_Union[Size, _Mapping]] = ..., overlap: _Optional[int] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., offset: _Optional[bool] = ..., tiles: _Optional[_Iterable[_Union[Tile, _Mapping]]] = ...) -> None: ...

class LoraRef(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...
