"""The roadmap: proposals by priority (value per hour) within an hours budget."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    id: str
    priority: float
    hours: float
    after: tuple[str, ...] = ()  # ids that must come first


def roadmap(items: list[Item], budget_hours: float,
            started: frozenset[str] = frozenset()) -> dict[str, int | None]:
    """Slot (1, 2, ...) per item, highest priority first, dependencies before dependents;
    None for what does not fit the budget (the backlog). Dependencies in `started` (open
    pull requests) are under way: they count as placed, outside the budget."""
    placed: dict[str, int | None] = {dep: 0 for dep in started}
    used = 0.0
    slot = 0
    pending = sorted(items, key=lambda i: (-i.priority, i.id))
    while pending:
        ready = [i for i in pending if all(dep in placed for dep in i.after)] or pending[:1]
        item = ready[0]
        pending.remove(item)
        if used + item.hours <= budget_hours and all(
            placed.get(dep) is not None for dep in item.after
        ):
            slot += 1
            used += item.hours
            placed[item.id] = slot
        else:
            placed[item.id] = None
    return {i.id: placed[i.id] for i in items}
