"""Long-lived streams to the three services, each reopened when it breaks; the only part of the
core that speaks protobuf. Each link turns its service's messages into the core's own types
(``conversation.messages``) and reports a local failure as those types too."""

from conversation.links.llm import LlmLink
from conversation.links.stt import SttLink
from conversation.links.tts import TtsLink

__all__ = ["LlmLink", "SttLink", "TtsLink"]
