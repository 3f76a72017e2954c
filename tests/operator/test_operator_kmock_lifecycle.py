"""The live webhook injects each pod with the mesh config's defaultConfig in force when the pod is created
(Istio's injector reads the mesh config it watches): terminationDrainDuration and holdApplicationUntilProxyStarts
set on the MeshConfig reach the next pod."""

from __future__ import annotations

import base64
import json
import ssl
from typing import Any

import aiohttp
import jsonpatch
import kmock
from test_operator_kmock import admission_review, mesh, until

from tracemesh_operator.control_plane import ControlPlane

__all__ = ["mesh"]  # the fixture, shared with test_operator_kmock
MESHCONFIG_PATH = "/apis/tracemesh.io/v1alpha1/namespaces/istio-system/meshconfigs/default"


async def test_a_meshconfig_default_config_change_reaches_the_next_injected_pod(
        mesh: tuple[kmock.KubernetesEmulator, ControlPlane]) -> None:
    emulator, control_plane = mesh
    assert control_plane.memo.ca_pem is not None and control_plane.webhook_port is not None
    context = ssl.create_default_context(cadata=control_plane.memo.ca_pem.decode())
    url = f"https://127.0.0.1:{control_plane.webhook_port}/inject"

    async def injected_pod(session: aiohttp.ClientSession) -> dict[str, Any]:
        review = admission_review("default", {"app": "reviews"})
        review["request"]["object"]["metadata"]["annotations"] = {"sidecar.istio.io/nativeSidecar": "false"}
        async with session.post(url, json=review, ssl=context) as reply:
            answer = (await reply.json())["response"]
        pod: dict[str, Any] = jsonpatch.apply_patch(review["request"]["object"],
                                                    json.loads(base64.b64decode(answer["patch"])))
        return pod

    def proxy_config(pod: dict[str, Any]) -> dict[str, Any]:
        proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
        return dict(json.loads(next(e["value"] for e in proxy["env"] if e["name"] == "PROXY_CONFIG")))

    await until(lambda: bool(control_plane.memo.get("namespaces") and control_plane.memo.namespaces.get("default")))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        before = await injected_pod(session)
        assert [c["name"] for c in before["spec"]["containers"]][-1] == "istio-proxy"  # not held: last
        assert "terminationDrainDuration" not in proxy_config(before)
        async with emulator.patch(MESHCONFIG_PATH, json={"spec": {"defaultConfig": {
                "terminationDrainDuration": "12s", "holdApplicationUntilProxyStarts": True}}}):
            pass
        await until(lambda: "terminationDrainDuration" in (control_plane.memo.meshconfigs.get(
            "istio-system/default") and next(iter(control_plane.memo.meshconfigs["istio-system/default"]))
            .get("spec", {}).get("defaultConfig", {})))
        after = await injected_pod(session)
    assert proxy_config(after)["terminationDrainDuration"] == "12s"
    assert after["spec"]["containers"][0]["name"] == "istio-proxy"  # held: first, with its postStart wait
