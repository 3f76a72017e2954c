import pytest
from test_netns_sidecars import APPS, mesh, workload  # noqa: F401
from netns_pods import exec_in_pod

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]


async def test_stress(mesh) -> None:
    a = workload(mesh, "a")
    results = []
    for _ in range(15):
        done = exec_in_pod(a.net, ["python", str(APPS), "send", "b", "9000"], uid=1000)
        results.append(done.stdout.strip() or done.stderr.strip()[-200:])
    bad = [r for r in results if not r.startswith("peer=127.0.0.1 True")]
    assert not bad, bad
