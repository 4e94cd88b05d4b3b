"""The observability role, run with ansible-playbook against localhost into a temporary
directory (packages and services left alone), with an inventory of serving nodes: the scrape
targets it derives from vllm_instances, promtool's verdict on every file it writes (the real
binary from Debian's prometheus package: these tests fail, never skip, without it), the rules'
behaviour on synthetic series (promtool test rules), idempotence, check mode, input checks and
Grafana provisioning."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
PROMTOOL = "/usr/bin/promtool"
ROLE = os.path.join(ROOT, "roles", "observability")

PLAYBOOK = """---
- name: Observability role
  hosts: monitoring
  gather_facts: false
  roles:
    - role: gaudi.vllm_lmcache.observability
"""

INVENTORY = {
    "all": {
        "children": {
            "monitoring": {"hosts": {"localhost": {"ansible_connection": "local"}}},
            "gaudi_nodes": {
                "hosts": {
                    "gaudi-01": {
                        "ansible_host": "192.0.2.11",
                        "vllm_instances": [
                            {"name": "llama8b", "model": "org/a", "port": 8000},
                            {"name": "plain", "model": "org/b", "port": 8001, "kv_role": "none"},
                        ],
                    },
                    "gaudi-02": {
                        "ansible_host": "192.0.2.12",
                        "vllm_instances": [{"name": "llama8b", "model": "org/a", "port": 8000, "host": "198.51.100.2"}],
                    },
                    "gaudi-03": {
                        "observability_address": "gaudi-03.example.net",
                        "vllm_lmcache_enabled": False,
                        "vllm_instances": [{"name": "llama8b", "model": "org/a", "port": 8000}],
                    },
                }
            },
            "prefill_nodes": {
                "hosts": {
                    "prefill-01": {
                        "ansible_host": "2001:db8::1",
                        "vllm_instances": [
                            {"name": "prefill", "model": "org/a", "port": 8100, "kv_role": "kv_producer"}
                        ],
                    },
                    # In both groups: one set of targets.
                    "gaudi-01": {},
                }
            },
            "other": {"hosts": {"bastion": {"ansible_host": "192.0.2.99"}}},
        }
    }
}


def require_promtool():
    assert os.access(PROMTOOL, os.X_OK), (
        "%s is missing: install Debian's prometheus package (scripts/host-deps.sh does)" % PROMTOOL
    )


def base_vars(tmp_path, **extra):
    data = {
        "observability_manage_packages": False,
        "observability_manage_service": False,
        "observability_prometheus_config_dir": str(tmp_path / "etc" / "prometheus"),
        "observability_prometheus_defaults_file": str(tmp_path / "etc" / "default" / "prometheus"),
        "observability_grafana_dir": str(tmp_path / "etc" / "grafana"),
        "observability_grafana_dashboards_dir": str(tmp_path / "var" / "dashboards"),
        "observability_grafana_service": "",
    }
    data.update(extra)
    return data


def play(tmp_path, variables, *args, inventory=None):
    require_promtool()
    (tmp_path / "etc" / "prometheus").mkdir(parents=True, exist_ok=True)
    (tmp_path / "etc" / "default").mkdir(parents=True, exist_ok=True)
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK)
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(inventory or INVENTORY))
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(variables))
    env = dict(
        os.environ,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    env.pop("ANSIBLE_CONFIG", None)
    res = subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", str(inv), "-e", "@" + str(varfile), str(book)] + list(args),
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        check=False,
    )
    return res.returncode, res.stdout + res.stderr


def promtool(*args, cwd=None):
    require_promtool()
    res = subprocess.run([PROMTOOL] + list(args), capture_output=True, text=True, cwd=cwd, check=False)
    return res.returncode, res.stdout + res.stderr


def rendered(tmp_path):
    conf = tmp_path / "etc" / "prometheus" / "prometheus.yml"
    return yaml.safe_load(conf.read_text())


def rules_dir(tmp_path):
    return tmp_path / "etc" / "prometheus" / "rules.d" / "gaudi_vllm_lmcache"


def job(config, name):
    jobs = [j for j in config["scrape_configs"] if j["job_name"] == name]
    assert len(jobs) == 1, config
    return jobs[0]


def flat(static_configs):
    return sorted((t, tuple(sorted(c.get("labels", {}).items()))) for c in static_configs or [] for t in c["targets"])


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("observability")
    variables = base_vars(tmp_path, observability_grafana_provision=True)
    rc, out = play(tmp_path, variables)
    assert rc == 0, out
    return tmp_path, variables, out


def test_targets_derived_from_the_inventory(default_run):
    tmp_path, _variables, _out = default_run
    config = rendered(tmp_path)
    vllm = job(config, "vllm")
    assert vllm["metrics_path"] == "/metrics" and vllm["scheme"] == "http"
    assert flat(vllm["static_configs"]) == sorted(
        [
            ("192.0.2.11:8000", (("lmcache_enabled", "true"), ("node", "gaudi-01"), ("vllm_instance", "llama8b"))),
            ("192.0.2.11:8001", (("lmcache_enabled", "false"), ("node", "gaudi-01"), ("vllm_instance", "plain"))),
            # An instance listening on a specific address is scraped there.
            ("198.51.100.2:8000", (("lmcache_enabled", "true"), ("node", "gaudi-02"), ("vllm_instance", "llama8b"))),
            (
                "gaudi-03.example.net:8000",
                (("lmcache_enabled", "false"), ("node", "gaudi-03"), ("vllm_instance", "llama8b")),
            ),
            ("[2001:db8::1]:8100", (("lmcache_enabled", "true"), ("node", "prefill-01"), ("vllm_instance", "prefill"))),
        ]
    )
    node = job(config, "node")
    assert flat(node["static_configs"]) == sorted(
        [
            ("192.0.2.11:9100", (("node", "gaudi-01"),)),
            ("192.0.2.12:9100", (("node", "gaudi-02"),)),
            ("gaudi-03.example.net:9100", (("node", "gaudi-03"),)),
            ("[2001:db8::1]:9100", (("node", "prefill-01"),)),
        ]
    )
    assert job(config, "prometheus")["static_configs"] == [{"targets": ["localhost:9090"]}]
    rules = rules_dir(tmp_path)
    assert config["rule_files"] == [str(rules / "lmcache_recording.rules.yml"), str(rules / "lmcache_alerts.rules.yml")]
    assert (tmp_path / "etc" / "default" / "prometheus").read_text() == 'ARGS="--storage.tsdb.retention.time=15d"\n'


def test_promtool_accepts_the_rendered_files(default_run):
    tmp_path, _variables, _out = default_run
    rc, out = promtool("check", "config", str(tmp_path / "etc" / "prometheus" / "prometheus.yml"))
    assert rc == 0, out
    assert "SUCCESS: 2 rule files found" in out, out
    rc, out = promtool("check", "rules", *sorted(str(p) for p in rules_dir(tmp_path).iterdir()))
    assert rc == 0, out


def test_rules_on_synthetic_series(default_run, tmp_path):
    run_dir, _variables, _out = default_run
    for name in os.listdir(rules_dir(run_dir)):
        shutil.copy(rules_dir(run_dir) / name, tmp_path / name)
    shutil.copy(os.path.join(HERE, "rules_test.yml"), tmp_path / "rules_test.yml")
    rc, out = promtool("test", "rules", "rules_test.yml", cwd=str(tmp_path))
    assert rc == 0, out
    assert "SUCCESS" in out, out


def test_the_rules_test_can_fail(default_run, tmp_path):
    """A wrong expectation makes promtool (and so this suite) fail: the rule tests are live."""
    run_dir, _variables, _out = default_run
    for name in os.listdir(rules_dir(run_dir)):
        shutil.copy(rules_dir(run_dir) / name, tmp_path / name)
    text = open(os.path.join(HERE, "rules_test.yml")).read().replace("value: 0.125", "value: 0.5", 1)
    (tmp_path / "rules_test.yml").write_text(text)
    rc, out = promtool("test", "rules", "rules_test.yml", cwd=str(tmp_path))
    assert rc != 0 and "node:lmcache_hit_rate:ratio_rate5m" in out, out


def test_threshold_variable_reaches_the_alert(tmp_path):
    """With a 0.9 threshold, gaudi-02's 80 % hit rate fires too."""
    rc, out = play(
        tmp_path,
        base_vars(
            tmp_path,
            observability_alert_hit_rate_threshold=0.9,
            observability_alert_hit_rate_for="5m",
            observability_alert_labels={"severity": "page", "team": "infra"},
        ),
    )
    assert rc == 0, out
    test_dir = tmp_path / "t"
    test_dir.mkdir()
    for name in os.listdir(rules_dir(tmp_path)):
        shutil.copy(rules_dir(tmp_path) / name, test_dir / name)
    source = yaml.safe_load(open(os.path.join(HERE, "rules_test.yml")))
    series = source["tests"][0]["input_series"]
    case = {
        "rule_files": source["rule_files"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"alertname": "LMCacheHitRateLow", "eval_time": "4m", "exp_alerts": []},
                    {
                        "alertname": "LMCacheHitRateLow",
                        "eval_time": "10m",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "page", "team": "infra", "node": n},
                                "exp_annotations": {
                                    "summary": "LMCache hit rate on %s is under 0.9" % n,
                                    "description": "%s of the looked-up prompt tokens were found in LMCache over 5m, for 5m."
                                    % p,
                                },
                            }
                            for n, p in (("gaudi-01", "12.5%"), ("gaudi-02", "80%"))
                        ],
                    },
                ],
            }
        ],
    }
    (test_dir / "t.yml").write_text(yaml.safe_dump(case))
    rc, out = promtool("test", "rules", "t.yml", cwd=str(test_dir))
    assert rc == 0, out


def test_second_run_changes_nothing(default_run):
    tmp_path, variables, _out = default_run
    rc, out = play(tmp_path, variables)
    assert rc == 0, out
    assert "changed=0" in out, out


def test_check_mode_writes_nothing(tmp_path):
    rc, out = play(tmp_path, base_vars(tmp_path, observability_grafana_provision=True), "--check")
    assert rc == 0, out
    assert "changed=" in out and "changed=0" not in out, out
    assert not (tmp_path / "etc" / "prometheus" / "prometheus.yml").exists()
    assert not (tmp_path / "etc" / "grafana").exists()
    assert not (tmp_path / "var").exists()


def test_grafana_provisioning(default_run):
    tmp_path, _variables, _out = default_run
    prov = tmp_path / "etc" / "grafana" / "provisioning"
    provider = yaml.safe_load((prov / "dashboards" / "gaudi_vllm_lmcache.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == str(tmp_path / "var" / "dashboards")
    datasource = yaml.safe_load((prov / "datasources" / "gaudi_vllm_lmcache.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "gaudi-vllm-lmcache-prometheus"
    assert datasource["datasources"][0]["url"] == "http://localhost:9090"
    shipped = os.path.join(ROLE, "files", "grafana", "gaudi_vllm_lmcache_cache.json")
    assert (tmp_path / "var" / "dashboards" / "gaudi_vllm_lmcache_cache.json").read_text() == open(shipped).read()


def test_grafana_auto_skips_without_grafana(tmp_path):
    rc, out = play(tmp_path, base_vars(tmp_path))
    assert rc == 0, out
    assert not (tmp_path / "etc" / "grafana").exists()
    (tmp_path / "etc" / "grafana").mkdir()
    rc, out = play(tmp_path, base_vars(tmp_path))
    assert rc == 0, out
    assert (tmp_path / "etc" / "grafana" / "provisioning" / "dashboards" / "gaudi_vllm_lmcache.yml").exists()


def test_overrides_replace_the_derived_targets(tmp_path):
    targets = [
        {"targets": ["10.0.0.5:9000"], "labels": {"node": "n5", "vllm_instance": "x", "lmcache_enabled": "true"}}
    ]
    extra = [{"job_name": "dcgm", "static_configs": [{"targets": ["10.0.0.5:9400"]}]}]
    rc, out = play(
        tmp_path,
        base_vars(
            tmp_path,
            observability_vllm_targets=targets,
            observability_node_exporter_enabled=False,
            observability_extra_scrape_configs=extra,
            observability_alertmanagers=["am.example.net:9093"],
        ),
    )
    assert rc == 0, out
    config = rendered(tmp_path)
    assert job(config, "vllm")["static_configs"] == targets
    assert job(config, "dcgm")["static_configs"] == [{"targets": ["10.0.0.5:9400"]}]
    assert [j["job_name"] for j in config["scrape_configs"]] == ["prometheus", "vllm", "dcgm"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["am.example.net:9093"]


def test_node_exporter_on_every_node(tmp_path):
    rc, out = play(tmp_path, base_vars(tmp_path, observability_node_exporter_all_nodes=True))
    assert rc == 0, out
    nodes = sorted(t for c in job(rendered(tmp_path), "node")["static_configs"] for t in c["targets"])
    assert "192.0.2.99:9100" in nodes and "localhost:9100" in nodes and len(nodes) == 6, nodes


@pytest.mark.parametrize(
    "name,value,rule",
    [
        ("observability_alert_hit_rate_threshold", 1.5, "a number from 0 to 1"),
        ("observability_alert_degraded_for", "", "a Prometheus duration"),
        ("observability_node_exporter_port", 70000, "a TCP port"),
        ("observability_prometheus_args", ["--web.listen-address=:9090 --x"], "a list of --flag"),
        ("observability_vllm_targets", [{"labels": {}}], "a list of {targets"),
    ],
)
def test_bad_input_fails_before_any_change(tmp_path, name, value, rule):
    rc, out = play(tmp_path, base_vars(tmp_path, **{name: value}))
    assert rc != 0, out
    message = "%s=%s: %s" % (name, json.dumps(value), rule)
    # ansible-core 2.16 prints the failure only as JSON (quotes escaped); 2.19 also as text.
    assert message in out or json.dumps(message)[1:-1] in out, out
    assert not (tmp_path / "etc" / "prometheus" / "prometheus.yml").exists()
    assert not (tmp_path / "etc" / "prometheus" / "rules.d").exists()


def test_bad_instance_fails_naming_the_host(tmp_path):
    inventory = json.loads(json.dumps(INVENTORY))
    inventory["all"]["children"]["gaudi_nodes"]["hosts"]["gaudi-02"]["vllm_instances"] = [
        {"name": "x", "port": "eighty"}
    ]
    rc, out = play(tmp_path, base_vars(tmp_path), inventory=inventory)
    assert rc != 0, out
    assert "hostvars['gaudi-02'].vllm_instances=" in out and "a port from 1 to 65535" in out, out
    assert not (tmp_path / "etc" / "prometheus" / "prometheus.yml").exists()


def test_promtool_validation_guards_prometheus_yml(tmp_path):
    """A config promtool rejects (a timeout longer than the interval) is never written."""
    rc, out = play(
        tmp_path, base_vars(tmp_path, observability_scrape_interval="5s", observability_scrape_timeout="30s")
    )
    assert rc != 0, out
    assert "failed to validate" in out, out
    assert not (tmp_path / "etc" / "prometheus" / "prometheus.yml").exists()
