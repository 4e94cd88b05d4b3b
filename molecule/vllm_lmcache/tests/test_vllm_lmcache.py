"""Verify the vllm and lmcache roles on the Molecule node (testinfra).

The serving stack here is the real LMCache wheel plus STAND-IN wheels for torch (Gaudi build),
habana-torch-plugin, vllm and vllm-gaudi (tests/standins/wheels); the stand-in `vllm serve`
answers /health, /v1/models and /standin/info so the unit and its environment are real.
"""

import json
import os
import re

import pytest
import yaml

VENV = "/opt/vllm/venv"
# The scenario installs the default row of the stack matrix (stand-ins built at its versions).
with open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "meta", "gaudi_stack.yml")) as _fh:
    _MATRIX = yaml.safe_load(_fh)
ROW = [r for r in _MATRIX["rows"] if r["id"] == _MATRIX["default"]][0]
PINS = {
    "torch": "%s+hpu.%s" % (ROW["pytorch"], ROW["gaudi_release"]),
    "habana-torch-plugin": ROW["gaudi_release"],
    "vllm": ROW["vllm_version"] + "+empty",
    "vllm-gaudi": ROW["vllm_gaudi_version"],
    "lmcache": ROW["lmcache_version"],
}
INSTANCES = {"alpha": 18101, "beta": 18102}


def info(host, name):
    out = host.check_output(
        "python3 -c \"import urllib.request,sys;"
        "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:%d/standin/info').read().decode())\""
        % INSTANCES[name]
    )
    return json.loads(out)


def test_service_account(host):
    user = host.user("vllm")
    assert user.exists
    assert user.group == "vllm"
    assert user.shell in ("/usr/sbin/nologin", "/sbin/nologin")
    assert user.uid < 1000


def test_virtualenv_owned_by_root_and_usable_by_service(host):
    venv = host.file(VENV)
    assert venv.is_directory
    assert venv.user == "root"
    assert venv.mode == 0o755
    host.run_expect([0], "runuser -u vllm -- %s/bin/python -c 'import vllm, vllm_gaudi, torch'" % VENV)


@pytest.mark.parametrize("dist,version", sorted(PINS.items()))
def test_packages_at_pinned_versions(host, dist, version):
    got = host.check_output(
        "%s/bin/python -c \"import importlib.metadata as m; print(m.version('%s'))\"" % (VENV, dist)
    )
    assert got == version


def test_template_unit(host):
    unit = host.file("/etc/systemd/system/vllm@.service")
    assert unit.mode == 0o644 and unit.user == "root"
    text = unit.content_string
    for line in (
        "User=vllm",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "DevicePolicy=closed",
        "DeviceAllow=/dev/accel/accel* rw",
        "DeviceAllow=/dev/accel/accel_controlD* rw",
        "DeviceAllow=/dev/hl* rw",
        "Restart=on-failure",
        "ReadWritePaths=-/mnt/kv_storage/lmcache",
        "EnvironmentFile=/etc/vllm/%i.env",
        "CapabilityBoundingSet=",
    ):
        assert line in text.splitlines(), line
    assert "ExecStart=/opt/vllm/venv/bin/vllm serve ${SERVE_MODEL}" in text


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_environment_file(host, name):
    env = host.file("/etc/vllm/%s.env" % name)
    assert env.mode == 0o600 and env.user == "root" and env.group == "root"
    text = env.content_string
    assert "LMCACHE_CONFIG_FILE=/etc/lmcache/%s.yaml" % name in text
    assert 'PT_HPU_LAZY_MODE="0"' in text
    assert 'PT_HPU_ENABLE_LAZY_COLLECTIVES="true"' in text
    assert "PROMETHEUS_MULTIPROC_DIR=/run/vllm/%s" % name in text
    assert 'HF_TOKEN="hf_standin_not_a_real_token"' in text
    assert 'VLLM_SKIP_WARMUP="true"' in text
    assert "SERVE_PORT=%d" % INSTANCES[name] in text
    # PYTHONHASHSEED=0 only where the cache is shared (beta: Mode B, kv_producer).
    assert ("PYTHONHASHSEED=0" in text) == (name == "beta")


def test_kv_transfer_config_rendering(host):
    alpha = host.file("/etc/vllm/alpha.env").content_string
    beta = host.file("/etc/vllm/beta.env").content_string
    # JSON quotes are backslash-escaped because systemd word-splits $SERVE_KV_TRANSFER_ARGS.
    assert (
        """SERVE_KV_TRANSFER_ARGS='--kv-transfer-config """
        r"""{\"kv_connector\":\"LMCacheConnectorV1\",\"kv_role\":\"kv_both\"}'"""
    ) in alpha
    assert (
        r'\"kv_connector_extra_config\":{\"discard_partial_chunks\":false,\"lmcache_rpc_port\":\"producer1\"}' in beta
    )
    assert r'\"kv_role\":\"kv_producer\"' in beta


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_systemd_analyze_verify_clean(host, name):
    res = host.run("systemd-analyze verify vllm@%s.service" % name)
    assert res.rc == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_service_running_and_healthy(host, name):
    svc = host.service("vllm@%s.service" % name)
    assert svc.is_running and svc.is_enabled
    data = info(host, name)
    assert data["standin"] is True
    assert data["port"] == INSTANCES[name]
    uid = int(host.check_output("id -u vllm"))
    assert data["uid"] == uid
    assert data["hf_token_set"] is True
    assert data["env"]["LMCACHE_CONFIG_FILE"] == "/etc/lmcache/%s.yaml" % name


def test_instances_receive_their_arguments(host):
    alpha, beta = info(host, "alpha"), info(host, "beta")
    assert alpha["model"] == "standin/tiny-model-a" and alpha["max_model_len"] == 4096
    assert alpha["kv_transfer_config"] == {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
    assert beta["tensor_parallel_size"] == 2 and beta["extra_args"] == ["--enforce-eager"]
    assert beta["kv_transfer_config"]["kv_role"] == "kv_producer"
    assert beta["env"]["PYTHONHASHSEED"] == "0" and alpha["env"]["PYTHONHASHSEED"] is None


def test_lmcache_mode_a(host):
    cfg = host.file("/etc/lmcache/alpha.yaml")
    assert cfg.mode == 0o640 and cfg.user == "root" and cfg.group == "vllm"
    text = cfg.content_string
    assert re.search(r"^chunk_size: 256$", text, re.M)
    assert re.search(r"^local_cpu: true$", text, re.M)
    assert re.search(r"^max_local_cpu_size: 2\.0$", text, re.M)
    assert re.search(r"^remote_serde: naive$", text, re.M)
    assert re.search(r"^save_decode_cache: false$", text, re.M)
    assert "remote_url" not in text
    assert info(host, "alpha")["lmcache_config"]["local_cpu"] == "true"


def test_lmcache_mode_b(host):
    text = host.file("/etc/lmcache/beta.yaml").content_string
    assert re.search(r"^remote_url: fs://localhost:0/mnt/kv_storage/lmcache$", text, re.M)
    assert re.search(r"^local_cpu: true$", text, re.M)
    assert re.search(r"^chunk_size: 128$", text, re.M)
    shared = host.file("/mnt/kv_storage/lmcache")
    assert shared.is_directory and shared.group == "vllm"
    data = info(host, "beta")
    # The service can write the shared tier despite ProtectSystem=strict (ReadWritePaths).
    assert data["shared_tier_path"] == "/mnt/kv_storage/lmcache"
    assert data["shared_tier_writable"] is True


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_exposure_score(host, name):
    out = host.check_output("systemd-analyze security --no-pager vllm@%s.service" % name)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert match, out
    score = float(match.group(1))
    print("\nsystemd-analyze security vllm@%s.service: exposure %.1f" % (name, score))
    assert score <= 3.0, out


def test_lmcache_hpu_patch_applied(host):
    """The node is in gaudi_nodes, so the lmcache role ran gaudi.vllm_lmcache.lmcache_hpu_patch
    on the real LMCache files in the virtualenv: patched for a patch row (0.3.6 to 0.4.2), left
    as released for a native row (LMCache's own HPU connector)."""
    site = host.check_output("%s/bin/python -c \"import sysconfig; print(sysconfig.get_paths()['purelib'])\"" % VENV)
    adapter = host.file(site + "/lmcache/integration/vllm/vllm_v1_adapter.py")
    if ROW["lmcache_hpu"] == "patch":
        assert "gaudi.vllm_lmcache" in adapter.content_string
        assert host.file(site + "/lmcache/v1/gaudi_hpu_connector.py").exists
    else:
        assert ROW["lmcache_hpu"] == "native"
        assert adapter.exists and "gaudi.vllm_lmcache" not in adapter.content_string
        assert not host.file(site + "/lmcache/v1/gaudi_hpu_connector.py").exists
        assert host.file(site + "/lmcache/v1/gpu_connector/hpu_connector.py").exists


def test_lmcache_is_the_nocuda_build(host):
    """The row's lmcache_install_source is sdist-nocuda: the installed LMCache is the pure wheel
    built from the PyPI sdist with NO_CUDA_EXT=1 (no compiled extension, so no lmcache.c_ops
    linked to libcudart), and no CUDA-only distribution is in the virtualenv."""
    assert ROW["lmcache_install_source"] == "sdist-nocuda"
    probe = (
        "import glob, json, os, sysconfig; from importlib import metadata as m; "
        "d = m.distribution('lmcache'); site = sysconfig.get_paths()['purelib']; "
        "print(json.dumps({'wheel': d.read_text('WHEEL'), "
        "'so': glob.glob(os.path.join(site, 'lmcache', '**', '*.so'), recursive=True), "
        "'dists': sorted(x.metadata['Name'].lower() for x in m.distributions())}))"
    )
    got = json.loads(host.check_output("%s/bin/python -c \"%s\"" % (VENV, probe)))
    assert "Root-Is-Purelib: true" in got["wheel"], got["wheel"]
    assert "Tag: py3-none-any" in got["wheel"], got["wheel"]
    assert got["so"] == []
    cuda = [d for d in got["dists"] if re.match(r"^(nvidia-|cupy-cuda|cuda-|nixl|cufile-python$|nvtx$|triton$)", d)]
    assert cuda == [], cuda
