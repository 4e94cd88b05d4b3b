"""Verify the hpu_patch scenario: a real LMCache 0.3.9 wheel in a virtualenv, patched by the role.

The last test reverts through the module and checks every file of the installed
package against the sha256 in the wheel's RECORD (byte-exact revert), then re-applies.
"""

import json
import os

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("gaudi_nodes")

VENV = "/opt/lmcache-venv"
PY = VENV + "/bin/python"
SITE_CMD = PY + " -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'"
MODULE = "gaudi.vllm_lmcache.lmcache_hpu_patch"


def site(host):
    return host.check_output(SITE_CMD).strip()


def module(host, check, **args):
    arg = " ".join("%s=%s" % kv for kv in sorted(dict(python=PY, **args).items()))
    return host.ansible(MODULE, arg, check=check, become=True)


RECORD_CHECK = r'''
import base64, csv, glob, hashlib, json, os, sys
site = sys.argv[1]
record = glob.glob(os.path.join(site, "lmcache-*.dist-info", "RECORD"))[0]
bad, n = [], 0
for row in csv.reader(open(record)):
    path, digest = row[0], row[1]
    if not path.startswith("lmcache/") or not digest.startswith("sha256="):
        continue
    n += 1
    data = open(os.path.join(site, path), "rb").read()
    got = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    if got != digest[len("sha256="):]:
        bad.append(path)
extra = [p for p in glob.glob(os.path.join(site, "lmcache", "**", "*"), recursive=True)
         if os.path.isfile(p) and "__pycache__" not in p]
print(json.dumps({"checked": n, "mismatch": sorted(bad), "files": len(extra)}))
'''


def record_check(host):
    host.run("cat > /tmp/record_check.py <<'EOF'\n%s\nEOF" % RECORD_CHECK)
    return json.loads(host.check_output("%s /tmp/record_check.py %s" % (PY, site(host))))


def test_lmcache_is_patched(host):
    r = module(host, check=True)
    assert r["changed"] is False
    assert r["classification"] == "patched" and r["lmcache_version"] == "0.3.9"


def test_patched_adapter_and_connector_present(host):
    sp = site(host)
    adapter = host.file(sp + "/lmcache/integration/vllm/vllm_v1_adapter.py")
    assert adapter.contains("gaudi.vllm_lmcache hpu_patch")
    assert not adapter.contains(r"slot_mapping\.cuda()")
    conn = host.file(sp + "/lmcache/v1/gaudi_hpu_connector.py")
    assert conn.is_file and conn.contains("class VLLMPagedMemHPUConnectorV2")
    assert host.file(sp + "/lmcache/integration/vllm/vllm_v1_adapter.py.hpu_patch.orig").is_file
    # the patched files compile with the virtualenv's interpreter
    host.check_output("%s -m py_compile %s %s" % (PY, adapter.path, conn.path))


def test_record_hashes_differ_only_in_the_recorded_files_while_patched(host):
    state = json.loads(host.file(site(host) + "/lmcache/gaudi_hpu_patch.json").content_string)
    assert state["shape"] == "adapter_cuda"
    assert "lmcache/integration/vllm/vllm_v1_adapter.py" in state["files"]
    assert len(state["files"]) > 1  # the adapter and the files with torch.cuda.is_available()
    r = record_check(host)
    assert r["mismatch"] == sorted(state["files"])


def test_revert_is_byte_exact_then_reapply(host):
    r = module(host, check=False, state="absent")
    assert r["changed"] is True and r["classification"] == "patchable"
    rec = record_check(host)
    assert rec["checked"] > 100 and rec["mismatch"] == []
    assert rec["files"] == rec["checked"]  # the connector, the state file and the backups are gone
    assert module(host, check=False, state="absent")["changed"] is False
    assert module(host, check=False)["changed"] is True
    assert module(host, check=True)["classification"] == "patched"
