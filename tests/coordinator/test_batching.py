"""Group commit: concurrent submissions share a write, each gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from coordinator.batching import Batcher


async def test_concurrent_submissions_are_written_together_in_order() -> None:
    batches: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0.01)
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(write)

    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(5)))

    assert outcomes == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2, 3, 4]]


async def test_posts_arriving_during_a_write_go_in_the_next_batch() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        await release.wait()
        return list(items)

    batcher: Batcher[int, int] = Batcher(write, max_batch=2)
    first = asyncio.gather(*(batcher.submit(i) for i in range(3)))
    await asyncio.sleep(0)
    late = asyncio.ensure_future(batcher.submit(3))
    await asyncio.sleep(0)
    release.set()

    assert await first == [0, 1, 2]
    assert await late == 3
    assert batches == [[0, 1], [2, 3]]


async def test_a_failing_item_fails_only_its_own_submitter() -> None:
    async def write(items: Sequence[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return list(items)

    batcher: Batcher[int, int] = Batcher(write)

    outcomes = await asyncio.gather(
        *(batcher.submit(i) for i in (1, 13, 2)), return_exceptions=True
    )

    assert outcomes[0] == 1
    assert outcomes[2] == 2
    assert isinstance(outcomes[1], ValueError)


async def test_close_waits_for_what_was_submitted() -> None:
    written: list[int] = []

    async def write(items: Sequence[int]) -> list[None]:
        await asyncio.sleep(0.01)
        written.extend(items)
        return [None for _ in items]

    batcher: Batcher[int, None] = Batcher(write)
    pending = asyncio.ensure_future(batcher.submit(7))
    await asyncio.sleep(0)

    await batcher.close()

    assert written == [7]
    assert pending.done()


@pytest.mark.parametrize("size", [1, 300])
async def test_large_bursts_are_split_at_the_batch_limit(size: int) -> None:
    sizes: list[int] = []

    async def write(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        return list(items)

    batcher: Batcher[int, int] = Batcher(write, max_batch=256)

    await asyncio.gather(*(batcher.submit(i) for i in range(size)))

    assert sum(sizes) == size
    assert max(sizes) <= 256


@pytest.mark.parametrize("writers", [1, 3])
async def test_one_post_after_another_is_each_written(writers: int) -> None:
    """A submitter woken by its outcome posts again before the writer that
    served it has finished: the new post still finds a writer."""

    async def write(items: Sequence[int]) -> list[int]:
        return list(items)

    batcher: Batcher[int, int] = Batcher(write, writers=writers)

    outcomes = [await asyncio.wait_for(batcher.submit(i), 5) for i in range(20)]

    assert outcomes == list(range(20))


async def test_writers_overlap_up_to_their_limit() -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def write(items: Sequence[int]) -> list[int]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return list(items)

    batcher: Batcher[int, int] = Batcher(write, max_batch=1, writers=3)
    posts = [asyncio.ensure_future(batcher.submit(i)) for i in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()

    assert await asyncio.gather(*posts) == list(range(10))
    assert most == 3
