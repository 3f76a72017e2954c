"""The harness's pure parts (no root needed): kube-proxy's rules, cluster DNS, pods from images."""

from __future__ import annotations

from netns_cluster import Service, ServicePort, hosts_file, selects, service_nat_rules
from netns_pods import container_argv, container_env, container_user, local_argv, read_image


def service(name: str, namespace: str, ip: str, endpoints: list[str]) -> Service:
    return Service(name=name, namespace=namespace, cluster_ip=ip, ports=(ServicePort(9080, 9081),),
                   selector={"app": name}, endpoints=endpoints)


def test_service_rules_spread_over_endpoints_like_kube_proxy() -> None:
    rules = service_nat_rules([service("reviews", "default", "10.213.1.5", ["10.213.0.7", "10.213.0.8", "10.213.0.9"])])
    lines = rules.splitlines()
    assert "-A TMESH-SERVICES -d 10.213.1.5/32 -p tcp -m tcp --dport 9080 -j TMESH-SVC-0-9080" in lines
    # 1/3, then 1/2 of the rest, then the last one: each endpoint gets a third.
    assert "-A TMESH-SVC-0-9080 -m statistic --mode random --probability 0.33333 -j TMESH-SEP-0-9080-0" in lines
    assert "-A TMESH-SVC-0-9080 -m statistic --mode random --probability 0.50000 -j TMESH-SEP-0-9080-1" in lines
    assert "-A TMESH-SVC-0-9080 -j TMESH-SEP-0-9080-2" in lines
    assert "-A TMESH-SEP-0-9080-2 -p tcp -m tcp -j DNAT --to-destination 10.213.0.9:9081" in lines
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert "MASQUERADE" not in rules  # callees must see the caller's pod IP


def test_hosts_file_answers_like_cluster_dns_for_the_pods_namespace() -> None:
    services = [service("reviews", "default", "10.213.1.5", []), service("zipkin", "istio-system", "10.213.1.6", [])]
    in_default = hosts_file("default", services).splitlines()
    assert "10.213.1.5 reviews reviews.default reviews.default.svc reviews.default.svc.cluster.local" in in_default
    assert "10.213.1.6 zipkin.istio-system zipkin.istio-system.svc zipkin.istio-system.svc.cluster.local" in in_default
    assert "10.213.1.6 zipkin zipkin.istio-system" in hosts_file("istio-system", services)


def test_selectors_match_like_kubernetes() -> None:
    assert selects({"app": "reviews"}, {"app": "reviews", "version": "v2"})
    assert not selects({"app": "reviews", "version": "v1"}, {"app": "reviews", "version": "v2"})
    assert not selects({}, {"app": "reviews"})  # a selector-less Service has no endpoints


def test_images_run_their_dockerfile_entrypoint_as_its_user() -> None:
    bookinfo = read_image("tracemesh/bookinfo-reviews")
    assert bookinfo.entrypoint == ("python", "-m", "tracemesh_bookinfo") and bookinfo.user[0] != 0
    assert ("BOOKINFO_SERVICE", "reviews") in bookinfo.env  # the build arg, as `make images` passes it
    container = {"name": "reviews", "image": "tracemesh/bookinfo-reviews:0.1.0",
                 "securityContext": {"runAsNonRoot": True}}
    pod = {"metadata": {"name": "reviews-v1-x", "namespace": "default"}, "spec": {}, "status": {"podIP": "10.0.0.9"}}
    assert container_argv(container)[1:] == ["-m", "tracemesh_bookinfo"]
    assert container_env(container, pod)["BOOKINFO_SERVICE"] == "reviews"
    assert "PYTHONPATH" not in container_env(container, pod)  # the image's paths mean nothing here
    assert container_user(container, pod) == bookinfo.user
    proxy = {"name": "istio-proxy", "image": "tracemesh/proxy:0.1.0", "command": ["tracemesh"],
             "args": ["proxy", "--bootstrap-env"], "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}
    assert container_argv(proxy) == [*local_argv(["tracemesh"]), "proxy", "--bootstrap-env"]
    assert container_user(proxy, pod) == (1337, 1337)


def test_the_downward_api_is_resolved_from_the_pod() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"serviceAccountName": "sa"},
           "status": {"podIP": "10.213.0.4"}}
    container = {"env": [{"name": "A", "value": "1"},
                         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}]}
    env = container_env(container, pod)
    assert (env["A"], env["IP"], env["SA"], env["HOSTNAME"]) == ("1", "10.213.0.4", "sa", "p")
