# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the kv_storage option filters."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gaudi.vllm_lmcache.plugins.filter import kv_storage_opts as f

PROC_MOUNTS = (
    "overlay / overlay rw,relatime,lowerdir=/a,upperdir=/b 0 0\n"
    "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
    "127.0.0.1:/srv/kvcache /mnt/kvcache nfs4 rw,nosuid,nodev,noatime,vers=4.2,rsize=1048576,wsize=1048576,"
    "namlen=255,hard,proto=tcp,nconnect=8,port=0,timeo=600,retrans=2,sec=sys,clientaddr=127.0.0.1,"
    "lookupcache=pos,local_lock=none,addr=127.0.0.1 0 0\n"
    "10.0.0.1:/vast /mnt/with\\040space nfs rw,vers=3,rsize=524288,wsize=524288,hard,proto=tcp,port=2049 0 0\n"
)


def test_canonical_order_is_independent_of_input_order():
    a = {
        '_netdev': True,
        'hard': True,
        'nconnect': 8,
        'vers': '4.2',
        'rsize': 1048576,
        'wsize': 1048576,
        'lookupcache': 'pos',
        'noatime': True,
        'nosuid': True,
        'nodev': True,
    }
    b = dict(reversed(list(a.items())))
    expected = 'vers=4.2,nconnect=8,rsize=1048576,wsize=1048576,hard,lookupcache=pos,noatime,nosuid,nodev,_netdev'
    assert f.canonical_opts(a) == expected
    assert f.canonical_opts(b) == expected


def test_false_and_none_drop_unknown_options_sort_after_known():
    opts = {'zeta': 'x', 'alpha': True, 'soft': False, 'timeo': None, 'hard': True, 'vers': 3}
    assert f.canonical_opts(opts) == 'vers=3,hard,alpha,zeta=x'


def test_list_merges_left_to_right_and_later_false_removes():
    base = {'vers': '4.2', 'nconnect': 16, 'noatime': True}
    extra = {'nconnect': 4, 'noatime': False, 'proto': 'rdma', 'port': 20049}
    assert f.canonical_opts([base, None, extra]) == 'vers=4.2,proto=rdma,port=20049,nconnect=4'


def test_vast_options_order():
    opts = {
        'spread_writes': True,
        'remoteports': '172.16.0.1-172.16.0.8',
        'vers': '3',
        'localports': 'eth0~eth1',
        'spread_reads': True,
        'nconnect': 32,
    }
    assert f.canonical_opts(opts) == (
        'vers=3,nconnect=32,remoteports=172.16.0.1-172.16.0.8,localports=eth0~eth1,spread_reads,spread_writes'
    )


def test_empty_gives_defaults():
    assert f.canonical_opts({}) == 'defaults'
    assert f.canonical_opts({'hard': False}) == 'defaults'


@pytest.mark.parametrize('bad', [{'a,b': True}, {'rsize': '1,2'}, {'x': 'a b'}, 42])
def test_invalid_input_raises(bad):
    with pytest.raises(AnsibleFilterError):
        f.canonical_opts(bad)


def test_parse_roundtrip():
    text = 'vers=4.2,nconnect=8,hard,lookupcache=pos'
    parsed = f.parse_opts(text)
    assert parsed == {'vers': '4.2', 'nconnect': '8', 'hard': True, 'lookupcache': 'pos'}
    assert f.canonical_opts(parsed) == text
    assert f.parse_opts('defaults') == {}


def test_proc_mount_exact_nfs4():
    m = f.proc_mount(PROC_MOUNTS, '/mnt/kvcache/')
    assert m['src'] == '127.0.0.1:/srv/kvcache'
    assert m['fstype'] == 'nfs4'
    assert (m['vers'], m['proto'], m['nconnect'], m['rsize'], m['wsize']) == ('4.2', 'tcp', 8, 1048576, 1048576)
    assert m['options']['lookupcache'] == 'pos'


def test_proc_mount_nconnect_defaults_to_one_and_unescapes_path():
    m = f.proc_mount(PROC_MOUNTS, '/mnt/with space')
    assert m['nconnect'] == 1
    assert m['rsize'] == 524288
    assert m['port'] == 2049


def test_proc_mount_missing_and_prefix():
    assert f.proc_mount(PROC_MOUNTS, '/srv/kvcache') == {}
    holder = f.proc_mount(PROC_MOUNTS, '/srv/kvcache', exact=False)
    assert holder['path'] == '/' and holder['fstype'] == 'overlay'
    inner = f.proc_mount(PROC_MOUNTS, '/mnt/kvcache/cluster/model', exact=False)
    assert inner['path'] == '/mnt/kvcache'
    # a sibling with a common string prefix is not a parent
    assert f.proc_mount(PROC_MOUNTS, '/mnt/kvcache2', exact=False)['path'] == '/'


def test_opts_diff():
    want = {'vers': '4.2', 'nconnect': 8, 'rsize': 1048576, 'hard': True}
    have = f.proc_mount(PROC_MOUNTS, '/mnt/kvcache')['options']
    assert f.opts_diff(want, have, ['vers', 'nconnect', 'rsize', 'hard']) == []
    assert f.opts_diff(dict(want, nconnect=4), have, ['vers', 'nconnect']) == ['nconnect']
    # vers=4 is satisfied by a negotiated 4.2, vers=4.1 is not
    assert f.opts_diff({'vers': '4'}, have, ['vers']) == []
    assert f.opts_diff({'vers': '4.1'}, have, ['vers']) == ['vers']
    assert f.opts_diff('hard,vers=3', 'vers=3,soft') == ['hard', 'soft']


def test_opts_diff_ignore_unset_skips_kernel_defaults():
    live = f.proc_mount(PROC_MOUNTS, '/mnt/kvcache')['opts']
    desired = 'vers=4.2,nconnect=8,hard'
    # proto=tcp is listed by the kernel but not requested: not drift
    assert f.opts_diff(desired, live, ['vers', 'proto']) == ['proto']
    assert f.opts_diff(desired, live, ['vers', 'proto'], ignore_unset=True) == []
    assert f.opts_diff('vers=4.2,proto=rdma', live, ['vers', 'proto'], ignore_unset=True) == ['proto']
    assert f.opts_diff('vers=3', live, ['vers', 'proto'], ignore_unset=True) == ['vers']


def test_filter_module_exports():
    names = set(f.FilterModule().filters())
    assert names == {'kv_storage_opts', 'kv_storage_parse_opts', 'kv_storage_proc_mount', 'kv_storage_opts_diff'}
