"""`facegan serve`'s memory stays flat: its threads do not multiply with the requests in flight.

Every thread that runs torch gets an OpenMP team and glibc malloc arenas of its own, which keep the freed
buffers of the largest request it served. The server once ran generation on Starlette's pool of up to 40
threads: 40 mixed requests sent at once took it from 278 MiB to 825 MiB (84 threads). It now runs them on
one thread (figures: `python benchmarks/serve.py --memory-only --concurrency 40`).
"""
import asyncio
from pathlib import Path

import pytest

from .conftest import process_status

httpx = pytest.importorskip("httpx", reason="needs httpx (pip install -e '.[test]')")
if not Path("/proc/self/status").exists():
    pytest.skip("reads /proc (Linux)", allow_module_level=True)

from facegan.serve.server import limit_malloc_arenas  # noqa: E402





def test_requests_in_flight_do_not_add_threads_or_keep_memory(server):
    pid, url = server
    urls = ["/api/face.png?seed={i}", "/api/grid.png?n=64&seed={i}", "/api/morph.gif?frames=120&start={i}&scale=2"]
    with httpx.Client(base_url=url, timeout=300) as client:
        for path in urls:  # one of each first: the render thread, its OpenMP team and the codecs start here
            client.get(path.format(i=0)).raise_for_status()
    warm = process_status(pid)

    async def until_served(client, path):
        # Beyond what the render thread's queue holds, the server answers 503: come back after Retry-After.
        while (response := await client.get(path)).status_code == 503:
            await asyncio.sleep(min(2, int(response.headers["retry-after"])))
        return response

    async def all_at_once():
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            responses = await asyncio.gather(*(until_served(client, urls[i % 3].format(i=i)) for i in range(24)))
        assert all(response.status_code == 200 for response in responses)

    asyncio.run(all_at_once())
    after = process_status(pid)
    assert after["threads"] <= warm["threads"], (warm, after)  # a pool of worker threads would add up to 24
    assert after["rss_mib"] < warm["rss_mib"] + 64, (warm, after)


def test_malloc_arenas_are_left_alone_when_the_environment_sets_them(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
