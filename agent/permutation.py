"""The order probes go out in: every (address, port) once per pass, shuffled
afresh each pass, and spread so that no host sees a burst.

Design note: a pass visits the product of two random permutations, one of the
ports and one of the addresses, port-major: port 1 to every address in the
shuffled address order, then port 2, and so on.  Consecutive probes therefore
never go to the same host (when there are several), each host sees one probe
in every ``len(addresses)``, and the port sequence any host sees is uniformly
shuffled.  The order costs one list per dimension, never an object per probe,
and it falls into batches that share their address columns, which is what lets
the sender patch a whole batch with a few big-integer operations.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    """A block of the pass: ``rows`` index the port order, ``columns`` the
    address order; slot ``i`` is row ``i // len(columns)``, column ``i % ...``."""

    rows: range
    columns: range

    @property
    def size(self) -> int:
        return len(self.rows) * len(self.columns)


class PassOrder:
    """One pass over ``address_count`` addresses and ``ports``, in random order."""

    def __init__(
        self, address_count: int, ports: Sequence[int], rng: random.Random
    ) -> None:
        self.ports = list(ports)
        rng.shuffle(self.ports)
        self.addresses = list(range(address_count))
        rng.shuffle(self.addresses)

    def batches(self, max_probes: int) -> Iterator[Batch]:
        """The pass as batches of at most ``max_probes`` probes, in order."""
        width = min(len(self.addresses), max_probes)
        if width == 0:
            return
        height = max_probes // width
        for row in range(0, len(self.ports), height):
            rows = range(row, min(row + height, len(self.ports)))
            for column in range(0, len(self.addresses), width):
                yield Batch(
                    rows, range(column, min(column + width, len(self.addresses)))
                )

    def probe(self, batch: Batch, slot: int) -> tuple[int, int]:
        """The (address, port) of ``slot`` in ``batch``."""
        row, column = divmod(slot, len(batch.columns))

        return (
            self.addresses[batch.columns[column]],
            self.ports[batch.rows[row]],
        )
