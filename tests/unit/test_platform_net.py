"""detectops.platform_net: which URL a pod uses for a service this host runs."""

from __future__ import annotations

import pytest

from detectops import platform_net
from detectops.platform_net import PlatformNetworkError, bridge_ip, pod_reachable_url


@pytest.fixture()
def bridge(monkeypatch):
    monkeypatch.setenv("DETECTOPS_BRIDGE_IP", "10.244.0.1")


@pytest.mark.parametrize(("host_url", "pod_url"), [
    ("http://127.0.0.1:5500", "http://10.244.0.1:5500"),
    ("http://localhost:5500/api/2.0/mlflow/runs/get?run_id=1", "http://10.244.0.1:5500/api/2.0/mlflow/runs/get?run_id=1"),
    ("http://127.0.0.2/x", "http://10.244.0.1/x"),
    ("https://user:pw@127.0.0.1:8443/", "https://user:pw@10.244.0.1:8443/"),
])
def test_loopback_urls_become_the_bridge_address(bridge, host_url, pod_url):
    assert pod_reachable_url(host_url) == pod_url


@pytest.mark.parametrize("url", ["http://mlflow.example.com:5000", "http://10.0.0.17:80/x", "http://127.example.com/"])
def test_other_urls_are_left_alone(bridge, url):
    assert pod_reachable_url(url) == url


def test_loopback_url_without_a_bridge_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("DETECTOPS_BRIDGE_IP", "")  # an external cluster: up.sh writes it empty
    with pytest.raises(PlatformNetworkError, match=r"scripts/infra/up\.sh"):
        pod_reachable_url("http://127.0.0.1:5500")
    with pytest.raises(PlatformNetworkError, match="no local cluster bridge"):
        platform_net.bridge_forward(5500)


def test_bridge_ip_is_read_from_the_env_file_up_sh_writes(monkeypatch, tmp_path):
    monkeypatch.delenv("DETECTOPS_BRIDGE_IP", raising=False)
    monkeypatch.setenv("DETECTOPS_INFRA_DIR", str(tmp_path))
    assert bridge_ip() is None  # no env.sh: infrastructure not up
    (tmp_path / "env.sh").write_text('export KUBECONFIG="/x"\nexport DETECTOPS_BRIDGE_IP="10.244.0.1"\n')
    assert bridge_ip() == "10.244.0.1"
    (tmp_path / "env.sh").write_text('export DETECTOPS_BRIDGE_IP=""\n')
    assert bridge_ip() is None
