"""The binding's own behaviour, without a guest: exception classes from the header's result
codes, the ctypes errcheck, the result dataclasses, keys passed through to the C API, and the
store handle's finalizer. Runs against the real libvmpool.so (VMPOOL_LIB) on a dir: store."""

import ctypes
import gc
import re
from pathlib import Path

import pytest

import vmpool
from vmpool import Acquired, Caps, Console, Pool, PoolStatus, RefillReport, Run, SpiceAddr, Step, Store, Vm, VmStatus

HEADER = Path(__file__).resolve().parents[3] / "include" / "vmpool.h"
VM_UUID = "6f1c2b34-0d4e-4f8a-9b6c-1234567890ab"
VM_JSON = {"uuid": VM_UUID, "alias": "a", "owner": "o", "image_uuid": VM_UUID, "vcpus": 1, "ram_mib": 256,
           "disk_gib": 1, "created_at": "t", "state": "running", "disk_path": "/d", "disk_format": "qcow2",
           "disk_size_bytes": 1 << 30, "clone_method": "qcow2-overlay", "firmware": "bios", "accel": None,
           "mac": "52:54:00:00:00:01", "vmgenid": VM_UUID, "caps": {}, "pool": "p",
           "last_exit": {"at": "t", "clean": False, "reason": "killed by signal 9 (SIGKILL)", "signal": 9, "status": None}}


def header_codes():
    if not HEADER.exists():
        pytest.skip(f"{HEADER} is not there (not run from the repository)")
    return {int(n): name for name, n in re.findall(r"VMPOOL_RESULT_(\w+) = (\d+),", HEADER.read_text())}


@pytest.fixture
def store(tmp_path):
    img = tmp_path / "image.raw"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    with Store.open(f"dir:{tmp_path}/store?clone=qcow2&max_disk_gib=100") as s:
        yield s, s.import_image(img, name="base")


def test_a_class_per_result_code_of_the_header():
    codes = header_codes()
    assert codes[0] == "OK" and len(codes) > 20
    del codes[0]
    assert sorted(vmpool.ERRORS) == sorted(codes)
    for code, name in codes.items():
        cls = vmpool.ERRORS[code]
        expected = "IoError" if name == "IO" else "".join(w.capitalize() for w in name.split("_"))
        # A real module-level class (what a type checker sees), exported, with its code.
        assert cls.__name__ == expected and getattr(vmpool, expected) is cls and expected in vmpool.__all__
        assert issubclass(cls, vmpool.VmpoolError) and (cls.code, cls.name) == (code, name)


def test_exception_attributes():
    e = vmpool.NotFound("VM x not found")
    assert (e.code, e.name, e.message, str(e)) == (10, "NOT_FOUND", "VM x not found", "VM x not found")
    assert isinstance(e, vmpool.VmpoolError) and not isinstance(e, vmpool.ArgumentError)
    assert isinstance(vmpool.InvalidJson("x"), vmpool.ArgumentError)
    assert (vmpool.Closed("closed").code, vmpool.Closed("closed").name) == (-1, "CLOSED")
    # The form the binding used before (message, code, name) still works.
    assert vmpool.InvalidArgument("m", 5, "INVALID_ARGUMENT").code == 5


def test_every_result_returning_function_has_the_errcheck():
    checked = [f for f in vars(vmpool).values()
               if isinstance(f, ctypes._CFuncPtr) and f.restype is ctypes.c_uint32]
    assert len(checked) >= 30
    assert all(f.errcheck is vmpool._errcheck for f in checked), [f.__name__ for f in checked if not f.errcheck]


def test_errcheck_raises_the_class_of_the_code_with_the_message(store):
    out = ctypes.c_void_p()
    with pytest.raises(vmpool.NullPointer) as e:
        vmpool._image_list(None, ctypes.byref(out))
    assert e.value.code == 1 and e.value.message and out.value is None
    s, _ = store
    with s._use() as h:
        with pytest.raises(vmpool.InvalidArgument, match="nope"):
            vmpool._vm_get(h, b"nope", ctypes.byref(out))
        with pytest.raises(vmpool.NotFound, match=VM_UUID):
            vmpool._vm_delete(h, VM_UUID.encode())
        assert vmpool._image_list(h, ctypes.byref(out)) == 0
    vmpool._string_free(out)


def test_vm_keys_are_passed_through_and_every_json_field_is_a_dataclass_field(store):
    s, image = store
    vm = s.create_vm(alias="a", owner="o", image=image, vcpus=1, ram_mib=256, uuid=VM_UUID, firmware="uefi",
                     accel="tcg", cpu_cap_pct=50, memory_cap_mib=600, io={"read_bps": 1 << 20}, prealloc=True)
    assert (vm.uuid, vm.firmware, vm.accel) == (VM_UUID, "uefi", "tcg")
    assert isinstance(vm.caps, Caps) and (vm.caps.cpu_pct, vm.caps.memory_mib, vm.caps.prealloc) == (50, 600, True)
    assert vm.caps.io["read_bps"] == 1 << 20
    status = s.vm_status(vm)
    assert isinstance(status, VmStatus) and status.vm == vm and status.run is None and status.serial_log
    # Nothing the library returned fell into `extra`: the dataclasses know every key.
    assert vm.extra == vm.caps.extra == status.extra == image.extra == {}
    with pytest.raises(TypeError, match="colour"):
        s.update_vm(vm, colour=1)
    assert s.update_vm(vm, vcpus=2, ram_mib=512, disk_gib=3).disk_gib == 3


def test_pool_keys_are_passed_through_and_pools_are_dataclasses(store):
    s, image = store
    p = s.create_pool(name="p", image=image, vcpus=1, ram_mib=256, max_vms=3, disk_gib=2, spares=0,
                      max_per_owner=2, warmth="paused", on_release="reset", on_logout="refresh",
                      ready_marker="ready", ready_delay_s=1, ready_timeout_s=30, accel="tcg", home_gib=1,
                      idle_suspend_after_s=600, max_session_s=3600)
    assert p.home_gib == 1 and p.on_logout == "refresh"
    assert (p.idle_suspend_after_s, p.max_session_s) == (600, 3600)
    assert s.logout("nobody") == {"kept": [], "refreshed": []}
    with pytest.raises(vmpool.InvalidArgument):
        s.logout("../x")
    assert isinstance(p, Pool) and isinstance(p.status, PoolStatus) and p.template is None
    assert (p.disk_gib, p.max_per_owner, p.warmth, p.on_release, p.ready_marker, p.ready_delay_s,
            p.ready_timeout_s, p.accel) == (2, 2, "paused", "reset", "ready", 1, 30, "tcg")
    assert p.extra == p.status.extra == {}
    assert s.pool("p") == p and s.pools() == [p]
    # None clears the clearable keys; image= and image_uuid= are both the image.
    q = s.update_pool("p", disk_gib=None, ready_marker=None, accel=None, image_uuid=image.uuid, spares=1,
                      home_gib=None, max_session_s=None)
    assert (q.disk_gib, q.ready_marker, q.accel, q.spares, q.home_gib) == (None, None, None, 1, None)
    assert q.max_session_s is None
    with pytest.raises(vmpool.InvalidArgument, match="max_session_s"):
        s.update_pool("p", max_session_s=0)
    assert s.update_pool("p", image=image).image_uuid == image.uuid
    with pytest.raises(TypeError, match="name"):
        s.update_pool("p", name="q")
    with pytest.raises(TypeError, match="colour"):
        s.create_pool(name="x", image=image, vcpus=1, ram_mib=256, max_vms=2, colour=1)
    s.delete_pool("p")


def test_home_volumes_through_the_library(store):
    s, _ = store
    h = s.create_home("alice", 256 << 20)
    assert isinstance(h, vmpool.Home) and (h.owner, h.size_bytes, h.attached_to) == ("alice", 256 << 20, None)
    assert s.home("alice") == h and s.homes() == [h]
    with pytest.raises(vmpool.AlreadyExists):
        s.create_home("alice", 256 << 20)
    assert s.resize_home("alice", 512 << 20).size_bytes == 512 << 20
    with pytest.raises(vmpool.InvalidArgument, match="only grow"):
        s.resize_home("alice", 256 << 20)
    with pytest.raises(vmpool.InvalidArgument):
        s.create_home("bob", 1 << 20)
    with pytest.raises(vmpool.InvalidArgument):
        s.create_home("../x", 256 << 20)
    s.delete_home("alice")
    assert s.homes() == []
    with pytest.raises(vmpool.NotFound):
        s.home("alice")


def test_records_read_like_the_dicts_they_replace(store):
    s, image = store
    p = s.create_pool(name="p", image=image, vcpus=1, ram_mib=256, max_vms=2)
    assert p["warmth"] == p.warmth and p["status"]["total"] == 0 and p["disk_gib"] is None
    assert "status" in p and "colour" not in p and "extra" not in p and p.get("colour", 7) == 7
    with pytest.raises(KeyError):
        p["colour"]
    with pytest.raises(TypeError):
        iter(p)  # not a sequence of p[0], p[1], ...
    # Keys of a newer library are kept, and readable the same way.
    v = Vm.from_json({**VM_JSON, "colour": "red"})
    assert v.extra == {"colour": "red"} and v["colour"] == "red" and "colour" in v


def test_nested_results_are_dataclasses():
    console = {"kind": "unix", "path": "/run/x/spice", "host": None, "port": None, "uri": "spice+unix:///run/x/spice",
               "password": "p" * 32, "expires_at": "2026-01-01T00:00:00Z", "expires_at_unix": 1767225600, "vv": "[virt-viewer]"}
    a = Acquired.from_json({"vm": VM_JSON, "path": "spare", "was": "waiting", "steps": [{"step": "claim", "ms": 1.5}],
                            "total_ms": 2.25, "console": console})
    assert isinstance(a.vm, Vm) and isinstance(a.console, Console) and isinstance(a.steps[0], Step)
    assert a["vm"].state == "running" and a["console"]["password"] == "p" * 32 and a.steps[0]["ms"] == 1.5
    assert a.vm.last_exit.signal == 9 and a.vm.last_exit["clean"] is False and a.extra == {}
    st = VmStatus.from_json({"vm": VM_JSON, "run": {"supervisor_pid": 1, "qemu_pid": 2, "qemu_start": 3, "started_at": "t",
                                               "accel": "tcg", "spice": {"kind": "tcp", "host": "127.0.0.1", "port": 5900}},
                             "uptime_s": 4, "serial_log": "/s"})
    assert isinstance(st.run, Run) and isinstance(st.run.spice, SpiceAddr)
    assert st["run"]["qemu_pid"] == 2 and (st.run.spice.host, st.run.spice.port, st.run.spice.path) == ("127.0.0.1", 5900, None)
    r = RefillReport.from_json({"created": 1, "warmed": 0, "removed": 0, "template_built": True, "spares": 1, "errors": []})
    assert r["template_built"] and r.spares == 1


def test_the_handle_is_freed_by_close_or_by_the_finalizer(tmp_path):
    uri = f"dir:{tmp_path}/s"
    s = Store.open(uri)
    assert s._free.alive
    s.close()
    assert not s._free.alive and s.closed
    t = Store.open(uri)
    free = t._free
    del t
    gc.collect()
    assert not free.alive
