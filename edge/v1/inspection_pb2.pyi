from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    UINT8: _ClassVar[DType]
    UINT16: _ClassVar[DType]
    FLOAT16: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    PNG: _ClassVar[Encoding]
    TIFF: _ClassVar[Encoding]

class ExplanationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPLANATION_KIND_UNSPECIFIED: _ClassVar[ExplanationKind]
    GRADCAM: _ClassVar[ExplanationKind]
    SENTENCE: _ClassVar[ExplanationKind]
    IG: _ClassVar[ExplanationKind]
    SHAP: _ClassVar[ExplanationKind]
    RAW_HEATMAP: _ClassVar[ExplanationKind]
    SENSORS: _ClassVar[ExplanationKind]
    GUIDED: _ClassVar[ExplanationKind]
DTYPE_UNSPECIFIED: DType
UINT8: DType
UINT16: DType
FLOAT16: DType
FLOAT32: DType
ENCODING_UNSPECIFIED: Encoding
PNG: Encoding
TIFF: Encoding
EXPLANATION_KIND_UNSPECIFIED: ExplanationKind
GRADCAM: ExplanationKind
SENTENCE: ExplanationKind
IG: ExplanationKind
SHAP: ExplanationKind
RAW_HEATMAP: ExplanationKind
SENSORS: ExplanationKind
GUIDED: ExplanationKind

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class EncodedImage(_message.Message):
    __slots__ = ("encoding", "data")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    encoding: Encoding
    data: bytes
    def __init__(self, encoding: _Optional[_Union[Encoding, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Channel(_message.Message):
    __slots__ = ("name", "tensor", "image")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    tensor: Tensor
    image: EncodedImage
    def __init__(self, name: _Optional[str] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ..., image: _Optional[_Union[EncodedImage, _Mapping]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("channels", "pixel_pitch_mm")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PIXEL_PITCH_MM_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    pixel_pitch_mm: float
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ..., pixel_pitch_mm: _Optional[float] = ...) -> None: ...

class InspectRequest(_message.Message):
    __slots__ = ("station_id", "part_id", "model", "frame", "explanations", "cycle_budget_ms", "target_class", "regression_models", "store_frame")
    STATION_ID_FIELD_NUMBER: _ClassVar[int]
    PART_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASS_FIELD_NUMBER: _ClassVar[int]
    REGRESSION_MODELS_FIELD_NUMBER: _ClassVar[int]
    STORE_FRAME_FIELD_NUMBER: _ClassVar[int]
    station_id: str
    part_id: str
    model: str
    frame: Frame
    explanations: _containers.RepeatedScalarFieldContainer[ExplanationKind]
    cycle_budget_ms: int
    target_class: str
    regression_models: _containers.RepeatedScalarFieldContainer[str]
    store_frame: bool
    def __init__(self, station_id: _Optional[str] = ..., part_id: _Optional[str] = ..., model: _Optional[str] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ..., explanations: _Optional[_Iterable[_Union[ExplanationKind, str]]] = ..., cycle_budget_ms: _Optional[int] = ..., target_class: _Optional[str] = ..., regression_models: _Optional[_Iterable[str]] = ..., store_frame: _Optional[bool] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("stage", "ms")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    ms: float
    def __init__(self, stage: _Optional[str] = ..., ms: _Optional[float] = ...) -> None: ...

class Heatmap(_message.Message):
    __slots__ = ("method", "target", "height", "width", "png", "float16")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    FLOAT16_FIELD_NUMBER: _ClassVar[int]
    method: str
    target: str
    height: int
    width: int
    png: bytes
    float16: bytes
    def __init__(self, method: _Optional[str] = ..., target: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., png: _Optional[bytes] = ..., float16: _Optional[bytes] = ...) -> None: ...

class AttributionMap(_message.Message):
    __slots__ = ("model", "model_sha256", "method", "target", "height", "width", "png", "float16", "completeness_delta", "relative_completeness_delta", "n_steps")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    FLOAT16_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_DELTA_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_COMPLETENESS_DELTA_FIELD_NUMBER: _ClassVar[int]
    N_STEPS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_sha256: str
    method: str
    target: str
    height: int
    width: int
    png: bytes
    float16: bytes
    completeness_delta: float
    relative_completeness_delta: float
    n_steps: int
    def __init__(self, model: _Optional[str] = ..., model_sha256: _Optional[str] = ..., method: _Optional[str] = ..., target: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., png: _Optional[bytes] = ..., float16: _Optional[bytes] = ..., completeness_delta: _Optional[float] = ..., relative_completeness_delta: _Optional[float] = ..., n_steps: _Optional[int] = ...) -> None: ...

class InspectResponse(_message.Message):
    __slots__ = ("inspection_id", "station_id", "part_id", "model", "model_sha256", "label", "confidence", "probabilities", "heatmap", "sentence", "attributions", "timings", "deferred", "received_unix_ms", "complete", "verdict", "error", "tiles", "deciding_tile", "review", "sensors", "skipped")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATION_ID_FIELD_NUMBER: _ClassVar[int]
    PART_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    DECIDING_TILE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    inspection_id: str
    station_id: str
    part_id: str
    model: str
    model_sha256: str
    label: str
    confidence: float
    probabilities: _containers.ScalarMap[str, float]
    heatmap: Heatmap
    sentence: str
    attributions: _containers.RepeatedCompositeFieldContainer[AttributionMap]
    timings: _containers.RepeatedCompositeFieldContainer[Timing]
    deferred: _containers.RepeatedScalarFieldContainer[ExplanationKind]
    received_unix_ms: int
    complete: bool
    verdict: str
    error: RequestError
    tiles: int
    deciding_tile: Region
    review: Review
    sensors: _containers.RepeatedCompositeFieldContainer[SensorShare]
    skipped: _containers.RepeatedScalarFieldContainer[ExplanationKind]
    def __init__(self, inspection_id: _Optional[str] = ..., station_id: _Optional[str] = ..., part_id: _Optional[str] = ..., model: _Optional[str] = ..., model_sha256: _Optional[str] = ..., label: _Optional[str] = ..., confidence: _Optional[float] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., heatmap: _Optional[_Union[Heatmap, _Mapping]] = ..., sentence: _Optional[str] = ..., attributions: _Optional[_Iterable[_Union[AttributionMap, _Mapping]]] = ..., timings: _Optional[_Iterable[_Union[Timing, _Mapping]]] = ..., deferred: _Optional[_Iterable[_Union[ExplanationKind, str]]] = ..., received_unix_ms: _Optional[int] = ..., complete: _Optional[bool] = ..., verdict: _Optional[str] = ..., error: _Optional[_Union[RequestError, _Mapping]] = ..., tiles: _Optional[int] = ..., deciding_tile: _Optional[_Union[Region, _Mapping]] = ..., review: _Optional[_Union[Review, _Mapping]] = ..., sensors: _Optional[_Iterable[_Union[SensorShare, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[ExplanationKind, str]]] = ...) -> None: ...

class SensorShare(_message.Message):
    __slots__ = ("channel", "share")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    share: float
    def __init__(self, channel: _Optional[str] = ..., share: _Optional[float] = ...) -> None: ...

class Review(_message.Message):
    __slots__ = ("flagged", "reasons")
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    flagged: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, flagged: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: int
    y0: int
    x1: int
    y1: int
    def __init__(self, x0: _Optional[int] = ..., y0: _Optional[int] = ..., x1: _Optional[int] = ..., y1: _Optional[int] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetInspectionRequest(_message.Message):
    __slots__ = ("inspection_id",)
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    inspection_id: str
    def __init__(self, inspection_id: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("station_id", "include_updates")
    STATION_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UPDATES_FIELD_NUMBER: _ClassVar[int]
    station_id: str
    include_updates: bool
    def __init__(self, station_id: _Optional[str] = ..., include_updates: _Optional[bool] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("inspection_id", "agree", "correct_class", "operator", "condition")
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    AGREE_FIELD_NUMBER: _ClassVar[int]
    CORRECT_CLASS_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    inspection_id: str
    agree: bool
    correct_class: str
    operator: str
    condition: str
    def __init__(self, inspection_id: _Optional[str] = ..., agree: _Optional[bool] = ..., correct_class: _Optional[str] = ..., operator: _Optional[str] = ..., condition: _Optional[str] = ...) -> None: ...

class VerdictAck(_message.Message):
    __slots__ = ("inspection_id", "recorded_unix_ms")
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    inspection_id: str
    recorded_unix_ms: int
    def __init__(self, inspection_id: _Optional[str] = ..., recorded_unix_ms: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "task", "sha256", "channels", "classes", "height", "width", "graphs", "audit_status", "served")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: str
    sha256: str
    channels: _containers.RepeatedScalarFieldContainer[str]
    classes: _containers.RepeatedScalarFieldContainer[str]
    height: int
    width: int
    graphs: _containers.RepeatedScalarFieldContainer[str]
    audit_status: str
    served: bool
    def __init__(self, name: _Optional[str] = ..., task: _Optional[str] = ..., sha256: _Optional[str] = ..., channels: _Optional[_Iterable[str]] = ..., classes: _Optional[_Iterable[str]] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., graphs: _Optional[_Iterable[str]] = ..., audit_status: _Optional[str] = ..., served: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
