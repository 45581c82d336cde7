"""The conversation core: endpointing, turns, held replies, barge-in and resume, and the links
to the STT, LLM and TTS services, with no sound-device, browser or protocol code in it.

A front end (the edge client's sound card or files, the gateway's Realtime door and page)
only moves audio and events in and out: it feeds 16 kHz mono 16-bit frames of 30 ms
(``foundation.audio``) to ``Conversation.feed`` (or ``listen``), plays the reply's audio that
the conversation writes to its ``Output``, and shows the events it is told of.
"""

from conversation.agent import Events, State
from conversation.core import Conversation
from conversation.player import Output
from conversation.settings import ConversationSettings
from conversation.turn import Turn

__all__ = ["Conversation", "ConversationSettings", "Events", "Output", "State", "Turn"]
