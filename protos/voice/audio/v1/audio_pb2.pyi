from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_LINEAR16: _ClassVar[AudioEncoding]

class AudioContainer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_CONTAINER_UNSPECIFIED: _ClassVar[AudioContainer]
    AUDIO_CONTAINER_RAW: _ClassVar[AudioContainer]
    AUDIO_CONTAINER_WAV: _ClassVar[AudioContainer]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_LINEAR16: AudioEncoding
AUDIO_CONTAINER_UNSPECIFIED: AudioContainer
AUDIO_CONTAINER_RAW: AudioContainer
AUDIO_CONTAINER_WAV: AudioContainer
