from voice.audio.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpeechEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPEECH_EVENT_TYPE_UNSPECIFIED: _ClassVar[SpeechEventType]
    SPEECH_EVENT_TYPE_SPEECH_STARTED: _ClassVar[SpeechEventType]
    SPEECH_EVENT_TYPE_SPEECH_ENDED: _ClassVar[SpeechEventType]
    SPEECH_EVENT_TYPE_END_OF_TURN: _ClassVar[SpeechEventType]
    SPEECH_EVENT_TYPE_TURN_INCOMPLETE: _ClassVar[SpeechEventType]
SPEECH_EVENT_TYPE_UNSPECIFIED: SpeechEventType
SPEECH_EVENT_TYPE_SPEECH_STARTED: SpeechEventType
SPEECH_EVENT_TYPE_SPEECH_ENDED: SpeechEventType
SPEECH_EVENT_TYPE_END_OF_TURN: SpeechEventType
SPEECH_EVENT_TYPE_TURN_INCOMPLETE: SpeechEventType

class RecognitionConfig(_message.Message):
    __slots__ = ("encoding", "sample_rate_hz", "language_code", "interim_results", "enable_word_time_offsets", "enable_endpointing", "endpoint_silence_ms", "enable_turn_detection", "turn_silence_ms", "end_of_turn_threshold", "pause_interims")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_WORD_TIME_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_ENDPOINTING_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_TURN_DETECTION_FIELD_NUMBER: _ClassVar[int]
    TURN_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    END_OF_TURN_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PAUSE_INTERIMS_FIELD_NUMBER: _ClassVar[int]
    encoding: _audio_pb2.AudioEncoding
    sample_rate_hz: int
    language_code: str
    interim_results: bool
    enable_word_time_offsets: bool
    enable_endpointing: bool
    endpoint_silence_ms: int
    enable_turn_detection: bool
    turn_silence_ms: int
    end_of_turn_threshold: float
    pause_interims: bool
    def __init__(self, encoding: _Optional[_Union[_audio_pb2.AudioEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., language_code: _Optional[str] = ..., interim_results: _Optional[bool] = ..., enable_word_time_offsets: _Optional[bool] = ..., enable_endpointing: _Optional[bool] = ..., endpoint_silence_ms: _Optional[int] = ..., enable_turn_detection: _Optional[bool] = ..., turn_silence_ms: _Optional[int] = ..., end_of_turn_threshold: _Optional[float] = ..., pause_interims: _Optional[bool] = ...) -> None: ...

class EndOfUtterance(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamingRecognizeRequest(_message.Message):
    __slots__ = ("config", "audio_content", "end_of_utterance", "traceparent")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    END_OF_UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio_content: bytes
    end_of_utterance: EndOfUtterance
    traceparent: str
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio_content: _Optional[bytes] = ..., end_of_utterance: _Optional[_Union[EndOfUtterance, _Mapping]] = ..., traceparent: _Optional[str] = ...) -> None: ...

class WordInfo(_message.Message):
    __slots__ = ("word", "start_ms", "end_ms", "probability")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    word: str
    start_ms: int
    end_ms: int
    probability: float
    def __init__(self, word: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., probability: _Optional[float] = ...) -> None: ...

class SpeechRecognitionResult(_message.Message):
    __slots__ = ("transcript", "is_final", "stability", "start_ms", "end_ms", "words", "language_code", "utterance_index")
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    STABILITY_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    transcript: str
    is_final: bool
    stability: float
    start_ms: int
    end_ms: int
    words: _containers.RepeatedCompositeFieldContainer[WordInfo]
    language_code: str
    utterance_index: int
    def __init__(self, transcript: _Optional[str] = ..., is_final: _Optional[bool] = ..., stability: _Optional[float] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., words: _Optional[_Iterable[_Union[WordInfo, _Mapping]]] = ..., language_code: _Optional[str] = ..., utterance_index: _Optional[int] = ...) -> None: ...

class SpeechEvent(_message.Message):
    __slots__ = ("type", "offset_ms", "end_of_turn_probability", "utterance_index")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    END_OF_TURN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    type: SpeechEventType
    offset_ms: int
    end_of_turn_probability: float
    utterance_index: int
    def __init__(self, type: _Optional[_Union[SpeechEventType, str]] = ..., offset_ms: _Optional[int] = ..., end_of_turn_probability: _Optional[float] = ..., utterance_index: _Optional[int] = ...) -> None: ...

class StreamingRecognizeResponse(_message.Message):
    __slots__ = ("results", "speech_event")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_EVENT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SpeechRecognitionResult]
    speech_event: SpeechEvent
    def __init__(self, results: _Optional[_Iterable[_Union[SpeechRecognitionResult, _Mapping]]] = ..., speech_event: _Optional[_Union[SpeechEvent, _Mapping]] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("config", "audio_content")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio_content: bytes
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio_content: _Optional[bytes] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("results", "language_code")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SpeechRecognitionResult]
    language_code: str
    def __init__(self, results: _Optional[_Iterable[_Union[SpeechRecognitionResult, _Mapping]]] = ..., language_code: _Optional[str] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("model", "languages", "multilingual", "device", "compute_type", "min_sample_rate_hz", "max_sample_rate_hz", "supports_interim_results", "supports_word_time_offsets", "supports_endpointing", "max_stream_duration_s", "supports_turn_detection")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    MULTILINGUAL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_WORD_TIME_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_ENDPOINTING_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAM_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_TURN_DETECTION_FIELD_NUMBER: _ClassVar[int]
    model: str
    languages: _containers.RepeatedScalarFieldContainer[str]
    multilingual: bool
    device: str
    compute_type: str
    min_sample_rate_hz: int
    max_sample_rate_hz: int
    supports_interim_results: bool
    supports_word_time_offsets: bool
    supports_endpointing: bool
    max_stream_duration_s: int
    supports_turn_detection: bool
    def __init__(self, model: _Optional[str] = ..., languages: _Optional[_Iterable[str]] = ..., multilingual: _Optional[bool] = ..., device: _Optional[str] = ..., compute_type: _Optional[str] = ..., min_sample_rate_hz: _Optional[int] = ..., max_sample_rate_hz: _Optional[int] = ..., supports_interim_results: _Optional[bool] = ..., supports_word_time_offsets: _Optional[bool] = ..., supports_endpointing: _Optional[bool] = ..., max_stream_duration_s: _Optional[int] = ..., supports_turn_detection: _Optional[bool] = ...) -> None: ...
