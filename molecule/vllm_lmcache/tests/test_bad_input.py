"""Bad inputs fail before any change, naming the variable (runs ansible-playbook against the
Molecule node through the docker connection)."""

import json
import os
import subprocess

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIO = os.path.dirname(HERE)
NODE = "vllm-lmcache-node1"


def scenario_vars():
    with open(os.path.join(SCENARIO, "molecule.yml")) as fh:
        return yaml.safe_load(fh)["provisioner"]["inventory"]["group_vars"]["vllm_servers"]


def instances_with(**override):
    inst = scenario_vars()["vllm_instances"]
    return [dict(inst[0], **override)] + inst[1:]


CASES = {
    "unknown_mode": ({"lmcache_mode": "gpu"}, "lmcache_mode"),
    "unknown_instance_mode": ({"vllm_instances": instances_with(lmcache_mode="gpu")}, "lmcache_mode"),
    "negative_cpu_cache": ({"lmcache_max_local_cpu_size": -1.0}, "lmcache_max_local_cpu_size"),
    "negative_disk_cache": ({"lmcache_max_local_disk_size": -5}, "lmcache_max_local_disk_size"),
    "incompatible_lmcache": ({"lmcache_version": "0.3.9"}, "lmcache_version=0.3.9"),
    "incompatible_release": ({"vllm_gaudi_release": "1.23.0"}, "vllm_gaudi_release=1.23.0"),
    "relative_venv": ({"vllm_venv": "opt/vllm/venv"}, "vllm_venv"),
    "relative_shared_path": ({"lmcache_shared_path": "kv_storage/lmcache"}, "lmcache_shared_path"),
    "unknown_lmcache_key": ({"lmcache_extra_keys": {"max_local_gpu_size": 1}}, "max_local_gpu_size"),
    "bad_kv_role": ({"vllm_instances": instances_with(kv_role="kv_sideways")}, "kv_role"),
    # Cache keys: vllm_env / env may repeat the role's value but not change it.
    "hashseed_override": (
        {"vllm_env": {"PYTHONHASHSEED": "7"}},
        "vllm_env sets PYTHONHASHSEED=7 but the role sets PYTHONHASHSEED=0",
    ),
    "chunk_size_override": (
        {"vllm_instances": instances_with(env={"LMCACHE_CHUNK_SIZE": "512"})},
        "vllm_instances[alpha].env sets LMCACHE_CHUNK_SIZE=512 but the role sets LMCACHE_CHUNK_SIZE=256",
    ),
}


def node_state():
    out = subprocess.run(
        [
            "docker",
            "exec",
            NODE,
            "sh",
            "-c",
            "systemctl show -P ExecMainStartTimestampMonotonic vllm@alpha.service vllm@beta.service;"
            " md5sum /etc/vllm/*.env /etc/lmcache/*.yaml /etc/systemd/system/vllm@.service",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_before_any_change(case, tmp_path):
    override, needle = CASES[case]
    extra = dict(scenario_vars(), **override)
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(extra))
    before = node_state()
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    res = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            NODE + ",",
            "-c",
            "community.docker.docker",
            "-e",
            "@" + str(varfile),
            os.path.join(SCENARIO, "bad_input.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert needle in out, out
    recap = [line for line in out.splitlines() if line.startswith(NODE) and "changed=" in line]
    assert recap and "changed=0" in recap[-1], out
    assert node_state() == before
