"""The sharp-drop guard: a service that loses all its instances, or more than a share of
them, in one answer is not believed at once.

An empty or much smaller answer is what a restarted Consul follower has served before
(consul #3975); acting on it would empty a production upstream. The drop is held until
a second, independent read made ``confirm_after`` seconds later shows it too. Pure:
time comes in as arguments, and the agent performs the confirming read.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncer.model import Server


@dataclass(frozen=True)
class Held:
    service: str
    current: tuple[Server, ...]
    proposed: tuple[Server, ...]
    since: float
    confirm_at: float


class DropGuard:
    def __init__(self, max_drop_share: float = 0.5, confirm_after: float = 3.0) -> None:
        """``confirm_after`` <= 0 turns the guard off."""
        if not 0.0 < max_drop_share <= 1.0:
            raise ValueError("max_drop_share must be in (0, 1]")
        self.max_drop_share = max_drop_share
        self.confirm_after = confirm_after
        self.held: dict[str, Held] = {}

    def is_sharp(self, current: tuple[Server, ...], proposed: tuple[Server, ...]) -> bool:
        before = {s.key for s in current}
        if not before:
            return False
        lost = len(before - {s.key for s in proposed})
        if not proposed:
            return True
        return lost / len(before) > self.max_drop_share

    def offer(self, service: str, current: tuple[Server, ...] | None, proposed: tuple[Server, ...], now: float) -> bool:
        """True: apply ``proposed`` now. False: it is held until confirmed."""
        if self.confirm_after <= 0 or current is None or not self.is_sharp(current, proposed):
            self.held.pop(service, None)
            return True
        previous = self.held.get(service)
        since = previous.since if previous else now
        confirm_at = previous.confirm_at if previous else now + self.confirm_after
        self.held[service] = Held(service, current, proposed, since, confirm_at)
        return False

    def due(self, now: float) -> list[Held]:
        return [h for h in self.held.values() if now >= h.confirm_at]

    def confirmed(self, service: str) -> None:
        self.held.pop(service, None)

    def retry_later(self, service: str, now: float) -> None:
        held = self.held.get(service)
        if held is not None:
            self.held[service] = Held(held.service, held.current, held.proposed, held.since, now + self.confirm_after)

    def next_deadline(self) -> float | None:
        return min((h.confirm_at for h in self.held.values()), default=None)

    def forget(self, service: str) -> None:
        self.held.pop(service, None)
