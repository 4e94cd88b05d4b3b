"""Verify the habana_driver scenario (runs after converge and idempotence).

Everything vendor-specific here is a STAND-IN: the packages come from the local signed test
repository built by scripts/build-standin-habana-repo.sh, hl-smi is the stand-in shipped in
the stand-in habanalabs-firmware-tools, and the PCI devices are a fake sysfs tree.
"""

import json
import os
import re

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("gaudi_nodes")

VERSION = "1.22.0-740"
PACKAGES = [  # vendor order, then the container runtime (habana_driver_container_runtime: docker)
    "habanalabs-firmware",
    "habanalabs-dkms",
    "habanalabs-thunk",
    "habanalabs-graph",
    "habanalabs-rdma-core",
    "habanalabs-firmware-tools",
    "habanalabs-qual",
    "habanalabs-container-runtime",
]
KEYRING = "/etc/apt/keyrings/habana-artifactory.asc"
DEVICES = 4


def test_repository_entry_uses_signed_by(host):
    sources = host.file("/etc/apt/sources.list.d/habanalabs.sources")
    assert sources.exists
    assert sources.mode == 0o644
    content = sources.content_string
    assert re.search(r"^Types: deb$", content, re.M)
    assert re.search(r"^URIs: file:///srv/habana-standin-repo$", content, re.M)
    assert re.search(r"^Suites: jammy$", content, re.M)
    assert re.search(r"^Components: main$", content, re.M)
    assert re.search(r"^Signed-By: %s$" % re.escape(KEYRING), content, re.M)


def test_dedicated_keyring_and_no_apt_key(host):
    keyring = host.file(KEYRING)
    assert keyring.exists
    assert keyring.mode == 0o644
    assert keyring.content_string.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    # the key must be the one that signed the repository, and only apt's keyring file has it
    assert host.file("/srv/habana-standin-repo/habana-standin.asc").content_string == keyring.content_string
    assert not host.file("/etc/apt/trusted.gpg").exists


def apt_update_with(host, keyring):
    """apt-get update with only the habanalabs entry, Signed-By replaced, in scratch state dirs."""
    return host.run(
        "d=$(mktemp -d); chmod 755 $d; mkdir -p $d/parts $d/lists/partial; "
        "sed 's#^Signed-By: .*#Signed-By: %s#' /etc/apt/sources.list.d/habanalabs.sources > $d/parts/t.sources; "
        "apt-get update -o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=$d/parts "
        "-o Dir::State::Lists=$d/lists 2>&1; rc=$?; rm -rf $d; exit $rc" % keyring
    )


def test_apt_verifies_the_repository_signature(host):
    good = apt_update_with(host, KEYRING)
    assert good.rc == 0, good.stdout
    assert "W:" not in good.stdout and "E:" not in good.stdout, good.stdout
    # With another key apt must refuse the repository: Signed-By is what makes it trusted.
    bad = apt_update_with(host, "/usr/share/keyrings/debian-archive-keyring.gpg")
    assert "NO_PUBKEY" in bad.stdout or "not signed" in bad.stdout, bad.stdout


def test_packages_pinned_and_held(host):
    for pkg in PACKAGES:
        out = host.check_output("dpkg-query -W -f='${Version} ${db:Status-Want} ${db:Status-Status}' %s", pkg)
        assert out == "%s hold installed" % VERSION, (pkg, out)


def test_prerequisite_standins_installed(host):
    for pkg in ("standin-linux-headers", "standin-dkms"):
        assert host.package(pkg).is_installed


def test_vendor_install_order(host):
    log = host.file("/var/log/dpkg.log").content_string
    first = {}
    for pos, line in enumerate(log.splitlines()):
        fields = line.split()
        if len(fields) > 3 and fields[2] == "install":
            name = fields[3].split(":")[0]
            first.setdefault(name, pos)
    order = [p for p in sorted(first, key=first.get) if p in PACKAGES]
    assert order == PACKAGES


def test_hugepages_persisted(host):
    nproc = int(host.check_output("nproc"))
    size_kb = int(re.search(r"Hugepagesize:\s+(\d+) kB", host.file("/proc/meminfo").content_string).group(1))
    expected = 110 * 1024 * nproc * 2 // size_kb + 1
    conf = host.file("/etc/sysctl.d/90-habanalabs-hugepages.conf")
    assert conf.exists
    assert re.search(r"^vm\.nr_hugepages\s*=\s*%d$" % expected, conf.content_string, re.M), conf.content_string


def test_modules_persisted_in_version_aware_order(host):
    conf = host.file("/etc/modules-load.d/habanalabs.conf")
    assert conf.exists
    modules = [line for line in conf.content_string.splitlines() if line and not line.startswith("#")]
    assert modules == ["habanalabs_compat", "habanalabs", "habanalabs_cn", "habanalabs_en", "habanalabs_ib"]


def test_docker_runtime_registered(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["runtimes"]["habana"] == {"path": "/usr/bin/habana-container-runtime", "runtimeArgs": []}
    assert "default-runtime" not in daemon


def test_standin_hl_smi_installed(host):
    hl_smi = host.file("/usr/bin/hl-smi")
    assert hl_smi.exists and hl_smi.mode == 0o755
    assert "STAND-IN" in host.check_output("hl-smi --help")
    assert len(host.check_output("hl-smi -Q index -f csv,noheader").splitlines()) == DEVICES


def test_hl_smi_info_module(host):
    result = host.ansible("gaudi.vllm_lmcache.hl_smi_info", "", check=True)
    assert result.get("changed") is False
    summary = result["summary"]
    assert summary["count"] == DEVICES
    assert summary["family"] == "Gaudi3"
    assert summary["driver_release"] == "1.22.0"
    assert summary["firmware_version"] == "hl-gaudi3-1.22.0-fw-61.3.2-sec-9"
    devices = result["devices"]
    assert [d["bus_id"] for d in devices] == ["0000:19:00.0", "0000:1a:00.0", "0000:33:00.0", "0000:34:00.0"]
    assert all(d["memory_total_bytes"] == 131072 * 1024 * 1024 for d in devices)
    assert [d["module_id"] for d in devices] == [1, 0, 3, 2]


def test_hl_smi_info_reports_a_driver_that_is_not_loaded(host):
    host.run("touch /etc/habanalabs-standin/driver-not-loaded")
    try:
        result = host.ansible(
            "gaudi.vllm_lmcache.hl_smi_info", "driver_module_path=/nonexistent", check=True, become=False
        )
    except Exception as exc:  # testinfra raises on module failure
        result = getattr(exc, "result", None) or {"msg": str(exc)}
    finally:
        host.run("rm -f /etc/habanalabs-standin/driver-not-loaded")
    assert "driver is not loaded" in json.dumps(result)
