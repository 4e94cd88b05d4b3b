"""The vllm role's environment files, run with ansible-playbook against localhost into a
temporary directory: a Hugging Face token never appears in any output (normal, -v to -vvv,
--diff, --check --diff) when it is set, changed or removed; each key is written once; and a
vllm_env / env value that would change a cache key fails before anything is written."""

import os
import stat

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.vllm import vllm_testlib as lib

PLAYBOOK = lib.playbook("Environment files of the vllm role")

MARKERS = ["hf_MARKERfirst0123456789", "hf_MARKERsecond987654321"]
# The check run first (it sees the pending change), then the real run that makes it. The
# default callback prints at -vvv everything it prints at lower verbosity, and with --diff
# everything it prints without, so these cover normal, -v to -vvv, --diff and --check --diff.
MODES = [["-vvv", "--check", "--diff"], ["-vvv", "--diff"]]
INSTANCES = [
    {"name": "alpha", "model": "org/model-a", "port": 18101, "kv_role": "kv_both", "lmcache_mode": "cpu"},
    {
        "name": "beta",
        "model": "org/model-b",
        "port": 18102,
        "tensor_parallel_size": 2,
        "kv_role": "kv_producer",
        "lmcache_mode": "shared",
        "lmcache_overrides": {"chunk_size": 128},
    },
]


def base_vars(tmp_path, **extra):
    data = {
        "vllm_config_dir": str(tmp_path / "etc"),
        "vllm_install_method": "wheelhouse",
        "vllm_wheelhouse": "/srv/wheelhouse",
        "vllm_instances": INSTANCES,
        "vllm_env": {"VLLM_SKIP_WARMUP": "true", "PYTHONHASHSEED": "0"},
        "lmcache_config_dir": "/etc/lmcache",
        # The stack pins are not what this test is about.
        "vllm_allow_unsupported_combination": True,
    }
    data.update(extra)
    return lib.with_lmcache_configs(data)


def play(tmp_path, variables, *args):
    return lib.play(tmp_path, PLAYBOOK, variables, *args)


def env_file(tmp_path, name):
    return (tmp_path / "etc" / (name + ".env")).read_text()


def test_token_never_printed_on_set_change_and_removal(tmp_path):
    steps = [("set", MARKERS[0]), ("change", MARKERS[1]), ("remove", "")]
    previous = ""
    for step, token in steps:
        variables = base_vars(tmp_path, vllm_hf_token=token)
        for mode in MODES:
            rc, out = play(tmp_path, variables, *mode)
            assert rc == 0, out
            for marker in MARKERS:
                assert marker[3:] not in out, "%s %s printed %s:\n%s" % (step, mode, marker, out)
            text = env_file(tmp_path, "alpha") if os.path.exists(tmp_path / "etc" / "alpha.env") else ""
            if "--check" in mode:
                # Check mode leaves the file as the previous step wrote it, and says it would change.
                assert ('HF_TOKEN="%s"' % previous in text) == bool(previous)
                assert "changed=1" in out, out
            else:
                assert ('HF_TOKEN="%s"' % token in text) if token else "HF_TOKEN" not in text
            if "--diff" in mode:
                # The redacted diff names the key and hides its value.
                assert "HF_TOKEN (value hidden" in out, out
        previous = token
    for name in ("alpha", "beta"):
        assert stat.S_IMODE(os.stat(tmp_path / "etc" / (name + ".env")).st_mode) == 0o600


def test_redacted_diff_shows_role_values(tmp_path):
    rc, out = play(tmp_path, base_vars(tmp_path))
    assert rc == 0, out
    moved = [dict(INSTANCES[0], port=18103)] + INSTANCES[1:]
    rc, out = play(
        tmp_path,
        base_vars(tmp_path, vllm_instances=moved, vllm_env={"VLLM_SKIP_WARMUP": "false", "PYTHONHASHSEED": "0"}),
        "--diff",
    )
    assert rc == 0, out
    assert "-SERVE_PORT=18101" in out and "+SERVE_PORT=18103" in out, out
    assert "~VLLM_SKIP_WARMUP (value hidden, changed)" in out, out
    assert "-PYTHONHASHSEED" not in out


def test_each_key_written_once(tmp_path):
    rc, out = play(tmp_path, base_vars(tmp_path, vllm_hf_token=MARKERS[0]))
    assert rc == 0, out
    for name in ("alpha", "beta"):
        keys = [
            line.split("=", 1)[0] for line in env_file(tmp_path, name).splitlines() if line and not line.startswith("#")
        ]
        assert len(keys) == len(set(keys)), keys
    beta = env_file(tmp_path, "beta")
    assert "PYTHONHASHSEED=0" in beta.splitlines()
    assert 'VLLM_SKIP_WARMUP="true"' in beta
    # alpha is a Mode A kv_both instance: the role sets no seed and the vllm_env one is kept.
    assert 'PYTHONHASHSEED="0"' in env_file(tmp_path, "alpha")


@pytest.mark.parametrize(
    "where,key,value,needle",
    [
        ("vllm_env", "PYTHONHASHSEED", "42", "vllm_env sets PYTHONHASHSEED=42 but the role sets PYTHONHASHSEED=0"),
        (
            "env",
            "LMCACHE_CHUNK_SIZE",
            "512",
            "vllm_instances[beta].env sets LMCACHE_CHUNK_SIZE=512 but the role sets LMCACHE_CHUNK_SIZE=128",
        ),
        ("env", "SERVE_MODEL", "org/other", "sets SERVE_MODEL=org/other but the role sets SERVE_MODEL=org/model-b"),
        (
            "env",
            "SERVE_TENSOR_PARALLEL_SIZE",
            "4",
            "sets SERVE_TENSOR_PARALLEL_SIZE=4 but the role sets SERVE_TENSOR_PARALLEL_SIZE=2",
        ),
        (
            "vllm_env",
            "LMCACHE_REMOTE_URL",
            "fs://localhost:0/elsewhere",
            "sets LMCACHE_REMOTE_URL=fs://localhost:0/elsewhere",
        ),
    ],
)
def test_cache_key_override_fails_before_any_change(tmp_path, where, key, value, needle):
    if where == "vllm_env":
        variables = base_vars(tmp_path, vllm_env={key: value})
    else:
        variables = base_vars(tmp_path, vllm_instances=[INSTANCES[0], dict(INSTANCES[1], env={key: value})])
    rc, out = play(tmp_path, variables)
    assert rc != 0, out
    assert needle in out, out
    assert "Rule:" in out
    assert not os.listdir(tmp_path / "etc")


def test_token_in_vllm_env_conflict_is_hidden(tmp_path):
    variables = base_vars(tmp_path, vllm_hf_token=MARKERS[0], vllm_env={"HF_TOKEN": MARKERS[1]})
    rc, out = play(tmp_path, variables, "-vvv")
    assert rc != 0 and "HF_TOKEN=(hidden)" in out, out
    for marker in MARKERS:
        assert marker not in out
