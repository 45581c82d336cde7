from voice.audio.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SynthesisConfig(_message.Message):
    __slots__ = ("voice", "sample_rate_hz", "speaking_rate", "encoding", "speaker")
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SPEAKING_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    voice: str
    sample_rate_hz: int
    speaking_rate: float
    encoding: _audio_pb2.AudioEncoding
    speaker: str
    def __init__(self, voice: _Optional[str] = ..., sample_rate_hz: _Optional[int] = ..., speaking_rate: _Optional[float] = ..., encoding: _Optional[_Union[_audio_pb2.AudioEncoding, str]] = ..., speaker: _Optional[str] = ...) -> None: ...

class Flush(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamingSynthesizeRequest(_message.Message):
    __slots__ = ("config", "text", "flush", "cancel", "turn_id", "traceparent")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    config: SynthesisConfig
    text: str
    flush: Flush
    cancel: Cancel
    turn_id: int
    traceparent: str
    def __init__(self, config: _Optional[_Union[SynthesisConfig, _Mapping]] = ..., text: _Optional[str] = ..., flush: _Optional[_Union[Flush, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., turn_id: _Optional[int] = ..., traceparent: _Optional[str] = ...) -> None: ...

class SynthesizedAudio(_message.Message):
    __slots__ = ("audio_content", "sequence_number", "text", "sample_rate_hz", "turn_id")
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    audio_content: bytes
    sequence_number: int
    text: str
    sample_rate_hz: int
    turn_id: int
    def __init__(self, audio_content: _Optional[bytes] = ..., sequence_number: _Optional[int] = ..., text: _Optional[str] = ..., sample_rate_hz: _Optional[int] = ..., turn_id: _Optional[int] = ...) -> None: ...

class SynthesisDone(_message.Message):
    __slots__ = ("audio_ms", "chunks", "cancelled", "turn_id")
    AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    audio_ms: int
    chunks: int
    cancelled: bool
    turn_id: int
    def __init__(self, audio_ms: _Optional[int] = ..., chunks: _Optional[int] = ..., cancelled: _Optional[bool] = ..., turn_id: _Optional[int] = ...) -> None: ...

class StreamingSynthesizeResponse(_message.Message):
    __slots__ = ("audio", "done")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    audio: SynthesizedAudio
    done: SynthesisDone
    def __init__(self, audio: _Optional[_Union[SynthesizedAudio, _Mapping]] = ..., done: _Optional[_Union[SynthesisDone, _Mapping]] = ...) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("config", "text", "container")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    config: SynthesisConfig
    text: str
    container: _audio_pb2.AudioContainer
    def __init__(self, config: _Optional[_Union[SynthesisConfig, _Mapping]] = ..., text: _Optional[str] = ..., container: _Optional[_Union[_audio_pb2.AudioContainer, str]] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("audio_content", "sample_rate_hz", "duration_ms")
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    audio_content: bytes
    sample_rate_hz: int
    duration_ms: int
    def __init__(self, audio_content: _Optional[bytes] = ..., sample_rate_hz: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class ListVoicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Voice(_message.Message):
    __slots__ = ("name", "engine", "language_codes", "native_sample_rate_hz", "speakers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODES_FIELD_NUMBER: _ClassVar[int]
    NATIVE_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    engine: str
    language_codes: _containers.RepeatedScalarFieldContainer[str]
    native_sample_rate_hz: int
    speakers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., engine: _Optional[str] = ..., language_codes: _Optional[_Iterable[str]] = ..., native_sample_rate_hz: _Optional[int] = ..., speakers: _Optional[_Iterable[str]] = ...) -> None: ...

class ListVoicesResponse(_message.Message):
    __slots__ = ("voices", "default_voice")
    VOICES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VOICE_FIELD_NUMBER: _ClassVar[int]
    voices: _containers.RepeatedCompositeFieldContainer[Voice]
    default_voice: str
    def __init__(self, voices: _Optional[_Iterable[_Union[Voice, _Mapping]]] = ..., default_voice: _Optional[str] = ...) -> None: ...
