"""The simulated room between the JACK test devices: what is played comes back into the microphone.

``virtual_speaker`` records what PortAudio plays; the room (``edge_client.room``) turns it into
echo, and ``virtual_mic`` captures the user's queued audio plus that echo, period by period on
the JACK clock. A period is 64 ms, so the room's delay must be longer than that.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from edge_client.room import Room
from tests.audio_devices import PERIOD_FRAMES, RATE_HZ, VirtualAudio, from_port_float, to_port_float

ECHO_DB = -6.0
ECHO_DELAY_MS = 100  # more than one JACK period


class RoomAudio(VirtualAudio):
    """The virtual devices with a room in between."""

    def __init__(self, jack: Any, server: str) -> None:
        assert ECHO_DELAY_MS * RATE_HZ // 1000 > PERIOD_FRAMES
        self.room = Room(echo_db=ECHO_DB, delay_ms=ECHO_DELAY_MS)
        self._room_lock = threading.Lock()  # the two clients' process callbacks
        super().__init__(jack, server)

    def _feed(self, frames: int) -> None:
        super()._feed(frames)
        out = self._mic_port.get_array()
        # to_port_float's inverse: PortAudio's own truncation.
        near = np.trunc(out.astype(np.float64) * 32767).astype("<i2")
        with self._room_lock:
            # Until the speaker's client runs, the room hears silence from it.
            behind = self.room.mic_samples + frames - self.room.delay_samples - self.room.played_samples
            if behind > 0:
                self.room.played(bytes(2 * behind))
            mixed = self.room.mic(near.tobytes())
        out[:] = to_port_float(mixed)

    def _record(self, frames: int) -> None:
        super()._record(frames)
        played = from_port_float(self._speaker_port.get_array())
        with self._room_lock:
            self.room.played(played.astype("<i2").tobytes())
