"""Which membership events each device was already sent, for lazy-loading.

Spec (client-server-api "Lazy-loading room members"): with
``lazy_load_members`` and without ``include_redundant_members``, an
incremental sync need not send a member event again that it sent to this
device before. As Synapse does, this is a bounded in-memory record per
device (``(room ID, user ID) -> event ID``), forgotten after a while of
disuse and cleared when the device starts a new sync sequence (no
``since``, or ``full_state``): forgetting only ever makes the server send a
redundant member, which the spec allows, so several sync API instances
each keep their own. The whole record holds at most ``MAX_TOTAL_MEMBERS``
entries (the least recently syncing devices are forgotten first), so its
memory stays bounded however many devices sync.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# Devices remembered (least recently syncing forgotten first), and members
# remembered per device.
MAX_DEVICES = 10_000
MAX_MEMBERS_PER_DEVICE = 2_000
# Members remembered in all (each entry ~0.3 KB with its three IDs: ~15 MB).
MAX_TOTAL_MEMBERS = 50_000
# A device that has not synced for this long starts over.
EXPIRY_SECONDS = 30 * 60

MemberKey = tuple[str, str]


class DeviceMembers:
    """The member events one device was sent: ``(room_id, user_id) -> event_id``."""

    def __init__(self, capacity: int, owner: LazyLoadedMembers | None = None) -> None:
        self._capacity = capacity
        self._sent: OrderedDict[MemberKey, str] = OrderedDict()
        self.last_used = 0.0
        # Counts the entries of all its devices; None once this record is
        # forgotten (a sync still building with it may go on using it).
        self._owner = owner

    def was_sent(self, room_id: str, user_id: str, event_id: str) -> bool:
        return self._sent.get((room_id, user_id)) == event_id

    def remember(self, room_id: str, user_id: str, event_id: str) -> None:
        key = (room_id, user_id)
        added = key not in self._sent
        self._sent[key] = event_id
        self._sent.move_to_end(key)
        if added and self._owner is not None:
            self._owner.grew(self)
        self.drop_oldest(len(self._sent) - self._capacity)

    def drop_oldest(self, count: int) -> int:
        """Forgets the ``count`` least recently sent entries (the owner's
        total moves with them); answers how many went."""
        dropped = 0
        while dropped < count and self._sent:
            self._sent.popitem(last=False)
            dropped += 1
        if self._owner is not None:
            self._owner.total -= dropped
        return dropped

    def detach(self) -> None:
        """No longer counted in its owner's total (forgotten by it)."""
        if self._owner is not None:
            self._owner.total -= len(self._sent)
            self._owner = None

    def __len__(self) -> int:
        return len(self._sent)


class LazyLoadedMembers:
    def __init__(self, *, max_devices: int = MAX_DEVICES, members_per_device: int = MAX_MEMBERS_PER_DEVICE,
                 max_total_members: int = MAX_TOTAL_MEMBERS, expiry_seconds: float = EXPIRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_devices = max_devices
        self._members_per_device = members_per_device
        self._max_total = max_total_members
        # Entries held by all the devices' records.
        self.total = 0
        self._expiry = expiry_seconds
        self._clock = clock
        self._devices: OrderedDict[tuple[str, str], DeviceMembers] = OrderedDict()

    def for_device(self, user_id: str, device_id: str, *, new_sequence: bool) -> DeviceMembers:
        """The device's record; an empty one when the device starts a new
        sync sequence or was not seen for a while."""
        key = (user_id, device_id)
        now = self._clock()
        found = self._devices.get(key)
        if found is None or new_sequence or now - found.last_used > self._expiry:
            if found is not None:
                found.detach()
            found = DeviceMembers(self._members_per_device, self)
            self._devices[key] = found
        self._devices.move_to_end(key)
        found.last_used = now
        while len(self._devices) > self._max_devices:
            self._devices.popitem(last=False)[1].detach()
        return found

    def grew(self, device: DeviceMembers) -> None:
        """``device`` remembered one more member: past the total, the least
        recently syncing other devices are forgotten, and when it is the
        only one left, its own oldest entries."""
        self.total += 1
        while self.total > self._max_total:
            key, oldest = next(iter(self._devices.items()))
            if oldest is not device:
                del self._devices[key]
                oldest.detach()
            elif len(self._devices) > 1:
                self._devices.move_to_end(key)  # in use: the others go first
            else:
                device.drop_oldest(self.total - self._max_total)

    def __len__(self) -> int:
        """Devices remembered."""
        return len(self._devices)
