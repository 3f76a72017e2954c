"""`tracemesh install`'s pure core: istioctl's --set paths, IstioOperator -> MeshConfig, what is not honoured,
and --dry-run (which needs no cluster)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from tracemesh_cli.install_manifests import read_manifests
from tracemesh_cli.istio_operator import read_istio_operator
from tracemesh_cli.main import main
from tracemesh_cli.set_flags import apply_set_flag, parse_value
from tracemesh_sidecar.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TRACING = ROOT / "samples" / "tracing.yaml"
MANIFESTS = read_manifests(ROOT / "manifests")


def tracing_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(TRACING.read_text())
    return loaded


# -- --set, as operator/pkg/values/map.go ------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("9411", 9411), ("-3", -3), ("0.5", 0.5), ("1e2", 100.0), ("true", True), ("F", False), ("TRUE", True),
    ("zipkin", "zipkin"), ("a\\,b", "a,b"), ("", ""), ("1_000", "1_000"),
])
def test_set_values_are_typed_as_istioctl_types_them(text: str, value: Any) -> None:
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_set_paths_index_append_and_select_list_entries() -> None:
    document: dict[str, Any] = {"spec": {"meshConfig": {"extensionProviders": [{"name": "zipkin"}]}}}
    apply_set_flag(document, "meshConfig.extensionProviders[0].zipkin.port=9411")
    apply_set_flag(document, "meshConfig.extensionProviders[1].name=jaeger")  # past the end: appended
    apply_set_flag(document, "meshConfig.extensionProviders[name:jaeger].opentelemetry.port=4317")
    apply_set_flag(document, "meshConfig.defaultProviders.tracing[0]=zipkin")
    apply_set_flag(document, "meshConfig.defaultConfig.proxyMetadata.ISTIO_META_X=1.0")  # always a string
    apply_set_flag(document, "values.global.my\\.dotted=x")
    mesh = document["spec"]["meshConfig"]
    assert mesh["extensionProviders"] == [{"name": "zipkin", "zipkin": {"port": 9411}},
                                          {"name": "jaeger", "opentelemetry": {"port": 4317}}]
    assert mesh["defaultProviders"] == {"tracing": ["zipkin"]}
    assert mesh["defaultConfig"]["proxyMetadata"]["ISTIO_META_X"] == "1.0"
    assert document["spec"]["values"]["global"]["my.dotted"] == "x"


@pytest.mark.parametrize(("flag", "words"), [
    ("meshConfig.enableTracing", "path=value"),
    ("meshConfig.extensionProviders[name:nope].port=1", "no list entry has name: nope"),
    ("meshConfig.enableTracing.x=1", "not a mapping"),
    ("meshConfig.extensionProviders[0=1", "not closed"),
])
def test_bad_set_flags_are_refused_naming_the_flag(flag: str, words: str) -> None:
    document: dict[str, Any] = {"spec": {"meshConfig": {"enableTracing": True, "extensionProviders": []}}}
    with pytest.raises(ConfigError) as raised:
        apply_set_flag(document, flag)
    assert raised.value.field == f"--set {flag}" and words in str(raised.value)


# -- IstioOperator -> MeshConfig ---------------------------------------------------------------------


def test_the_zipkin_tasks_tracing_yaml_becomes_the_meshconfig_with_nothing_left_out() -> None:
    plan = read_istio_operator([("tracing.yaml", tracing_yaml())], [], MANIFESTS.default_meshconfig)
    assert plan.meshconfig["apiVersion"] == "tracemesh.io/v1alpha1" and plan.meshconfig["kind"] == "MeshConfig"
    assert (plan.meshconfig["metadata"]["namespace"], plan.meshconfig["metadata"]["name"]) == ("istio-system",
                                                                                              "default")
    assert plan.meshconfig["spec"] == tracing_yaml()["spec"]["meshConfig"]
    assert plan.not_honoured == ()


def test_without_a_meshconfig_tracemeshs_default_is_installed() -> None:
    plan = read_istio_operator([], [], MANIFESTS.default_meshconfig)
    assert plan.meshconfig == MANIFESTS.default_meshconfig


def test_files_overlay_in_order_then_set_flags_apply() -> None:
    later = {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
             "spec": {"meshConfig": {"enableTracing": False}}}
    plan = read_istio_operator([("tracing.yaml", tracing_yaml()), ("off.yaml", later)],
                               ["meshConfig.defaultConfig.tracing.sampling=10"], MANIFESTS.default_meshconfig)
    spec = plan.meshconfig["spec"]
    assert spec["enableTracing"] is False and spec["defaultConfig"]["tracing"] == {"sampling": 10}
    assert spec["extensionProviders"][0]["name"] == "zipkin"


def test_everything_tracemesh_cannot_honour_is_listed() -> None:
    document = tracing_yaml()
    document["spec"].update({
        "profile": "demo", "hub": "docker.io/istio", "tag": "1.24.0", "revision": "canary",
        "components": {"pilot": {"enabled": True}, "ingressGateways": [{"name": "istio-ingressgateway"}],
                       "base": {"enabled": True, "k8s": {"replicaCount": 2}}},
        "values": {"global": {"proxy": {"tracer": "zipkin"}}, "pilot": {"traceSampling": 100}},
    })
    document["spec"]["meshConfig"].update({"accessLogFile": "/dev/stdout",
                                           "defaultConfig": {"tracing": {"zipkin": {"address": "z:9411"}}}})
    plan = read_istio_operator([("iop.yaml", document)], [], MANIFESTS.default_meshconfig)
    listed = {item.path for item in plan.not_honoured}
    assert listed == {
        "spec.profile: demo", "spec.hub", "spec.tag", "spec.revision", "spec.components.ingressGateways",
        "spec.components.base", "spec.values.global.proxy.tracer",
        "spec.meshConfig.accessLogFile", "spec.meshConfig.defaultConfig.tracing.zipkin.address",
    }
    # Accepted mesh settings still go into the MeshConfig, which keeps what it does not act on.
    assert plan.meshconfig["spec"]["accessLogFile"] == "/dev/stdout"


def control_plane_values(suite: str) -> dict[str, Any]:
    """Istio's tracing integration suite's ControlPlaneValues (an IstioOperator spec), as an IstioOperator."""
    path = ROOT / f"tests/fixtures/istio/tests/integration/telemetry/tracing/{suite}/control-plane-values.yaml"
    return {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
            "spec": yaml.safe_load(path.read_text())}


def test_pilot_trace_sampling_is_the_sampling_where_nothing_else_sets_one() -> None:
    """istio/istio tests/integration/telemetry/tracing/zipkin/main_test.go turns 100% sampling on this way alone:
    `values.pilot.traceSampling: 100.0` with `defaultConfig.tracing: {}` (PILOT_TRACE_SAMPLING)."""
    plan = read_istio_operator([("values.yaml", control_plane_values("zipkin"))], [], MANIFESTS.default_meshconfig)
    assert plan.meshconfig["spec"]["defaultConfig"]["tracing"] == {"sampling": 100.0}
    assert plan.not_honoured == ()
    # A meshConfig that sets the sampling itself keeps it, as Istio's precedence does.
    plan = read_istio_operator([("values.yaml", control_plane_values("zipkin"))],
                               ["meshConfig.defaultConfig.tracing.sampling=5"], MANIFESTS.default_meshconfig)
    assert plan.meshconfig["spec"]["defaultConfig"]["tracing"] == {"sampling": 5}


@pytest.mark.parametrize("profile", ["default", "minimal"])
def test_the_profiles_whose_control_plane_tracemesh_installs_are_not_listed(profile: str) -> None:
    document = tracing_yaml()
    document["spec"]["profile"] = profile
    assert read_istio_operator([("iop.yaml", document)], [], MANIFESTS.default_meshconfig).not_honoured == ()


@pytest.mark.parametrize(("document", "field"), [
    ({"apiVersion": "v1", "kind": "ConfigMap"}, "x.yaml: apiVersion/kind"),
    (["not", "a", "mapping"], "x.yaml"),
    ({"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "spec": {"meshConfig": "on"}},
     "spec.meshConfig"),
])
def test_documents_that_are_not_istio_operators_are_refused(document: Any, field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        read_istio_operator([("x.yaml", document)], [], MANIFESTS.default_meshconfig)
    assert raised.value.field == field


# -- the command, without a cluster ------------------------------------------------------------------


def test_dry_run_prints_every_object_it_would_apply(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", "-f", str(TRACING), "--dry-run", "--set", "values.global.proxy.tracer=zipkin"]) == 0
    output = capsys.readouterr()
    printed = list(yaml.safe_load_all(output.out))
    kinds = [doc["kind"] for doc in printed]
    assert kinds[:2] == ["CustomResourceDefinition", "CustomResourceDefinition"] and kinds[-1] == "MeshConfig"
    assert {"Namespace", "Deployment", "MutatingWebhookConfiguration", "ClusterRole"} <= set(kinds)
    assert printed[-1]["spec"] == tracing_yaml()["spec"]["meshConfig"]
    assert "! not honoured: spec.values.global.proxy.tracer: Helm values" in output.err


def test_bad_input_is_refused_before_any_cluster_is_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two = tmp_path / "two.yaml"
    two.write_text(TRACING.read_text() + "---\n" + TRACING.read_text())
    assert main(["install", "-f", str(two), "--dry-run"]) == 2
    assert "give one IstioOperator per -f file" in capsys.readouterr().err
    assert main(["install", "-f", str(TRACING), "--dry-run", "--readiness-timeout", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err


def test_without_a_terminal_install_asks_for_minus_y(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal: stdin at its end
    assert main(["install", "-f", str(TRACING), "--kubeconfig", str(kubeconfig)]) == 1
    assert "pass -y (--skip-confirmation)" in capsys.readouterr().err


@pytest.mark.parametrize("purge", [False, True])
def test_uninstall_dry_run_lists_the_deletions_and_keeps_crds_without_purge(
        purge: bool, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["uninstall", "--dry-run", *(["--purge"] if purge else [])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "would delete MeshConfig istio-system/default"
    assert "would delete Deployment istio-system/tracemesh-operator" in lines
    assert not any("Namespace" in line for line in lines)  # istio-system stays, as with istioctl
    crds = [line for line in lines if "CustomResourceDefinition" in line]
    purged = ["destinationrules.networking.istio.io", "gateways.networking.istio.io", "meshconfigs.tracemesh.io",
              "telemetries.telemetry.istio.io", "virtualservices.networking.istio.io"]
    assert sorted(crds) == ([f"would delete CustomResourceDefinition {name}" for name in purged] if purge else [])
