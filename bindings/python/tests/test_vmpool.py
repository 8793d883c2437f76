"""Runs against the real libvmpool.so (VMPOOL_LIB, set by `make test-python`) on a real dir:
store."""

import hashlib
import os
import threading

import pytest

import vmpool
from vmpool import Image, Store, Vm


@pytest.fixture
def env(tmp_path):
    img = tmp_path / "image.raw"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
        f.seek(0)
        f.write(b"vmpool" * 1000)
        f.seek(32 << 20)
        f.write(b"python" * 1000)
    uri = f"dir:{tmp_path}/store?clone=qcow2&max_disk_gib=100"
    with Store.open(uri) as s:
        yield s, img, uri, tmp_path


def test_version_info_recover(env):
    s, _, _, _ = env
    assert vmpool.version()
    info = s.info()
    assert info["driver"] == "dir" and info["version"] == vmpool.version()
    assert s.recover() == {"cleaned": [], "errors": [], "kept": []}


def test_import_get_list_delete(env):
    s, img, _, _ = env
    m = s.import_image(img, name="debian", version="12", os="linux", tags={"role": "desktop"})
    assert isinstance(m, Image)
    assert (m.name, m.version, m.os, m.size_bytes) == ("debian", "12", "linux", 64 << 20)
    assert m.sha256 == hashlib.sha256(img.read_bytes()).hexdigest()
    assert m.tags == {"role": "desktop"}
    assert s.images() == [m]
    assert s.image(m.uuid) == m
    s.delete_image(m)
    assert s.images() == []


def test_progress_and_cancel(env):
    s, img, _, _ = env
    seen = []
    s.import_image(img, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (64 << 20, 64 << 20)
    calls = []
    with pytest.raises(vmpool.Cancelled):
        s.import_image(img, progress=lambda d, t: len(calls) < 2 and not calls.append(1) or len(calls) < 2)
    # An exception in the callback cancels the import and comes back out.
    with pytest.raises(ZeroDivisionError):
        s.import_image(img, progress=lambda d, t: 1 / 0)
    assert len(s.images()) == 1


def test_vm_lifecycle(env):
    s, img, _, _ = env
    image = s.import_image(img)
    a = s.create_vm(alias="desk", owner="alice", image=image, vcpus=2, ram_mib=2048, disk_gib=20)
    b = s.create_vm(alias="srv", owner="bob", image=image.uuid, vcpus=1, ram_mib=512)
    assert isinstance(a, Vm) and a.state == "stopped" and a.disk_gib == 20 and b.disk_gib == 1
    assert s.vm(a.uuid) == a
    assert [v.uuid for v in s.vms(owner="alice")] == [a.uuid]
    assert len(s.vms()) == 2
    with pytest.raises(vmpool.InUse) as e:
        s.delete_image(image)
    assert a.uuid in str(e.value) and e.value.code == 12 and e.value.name == "IN_USE"
    s.delete_vm(a)
    s.delete_vm(b.uuid)
    assert s.vms() == []
    s.delete_image(image)


def test_fixed_uuid_and_duplicates(env):
    s, img, _, _ = env
    image = s.import_image(img)
    u = "6f1c2b34-0d4e-4f8a-9b6c-1234567890ab"
    assert s.create_vm(uuid=u, alias="x", owner="o", image=image, vcpus=1, ram_mib=256).uuid == u
    with pytest.raises(vmpool.AlreadyExists):
        s.create_vm(uuid=u, alias="y", owner="o", image=image, vcpus=1, ram_mib=256)
    with pytest.raises(vmpool.AlreadyExists):
        s.import_image(img, uuid=image.uuid)


@pytest.mark.parametrize("exc,call", [
    (vmpool.NotFound, lambda s, i, d: s.vm("00000000-0000-4000-8000-000000000000")),
    (vmpool.InvalidArgument, lambda s, i, d: s.vm("nope")),
    (vmpool.InvalidJson, lambda s, i, d: s.import_image(i, tags="not an object")),
    (vmpool.ChecksumMismatch, lambda s, i, d: s.import_image(i, sha256="0" * 64)),
    (vmpool.CorruptImage, lambda s, i, d: s.import_image(i, size_bytes=1234)),
    (vmpool.InvalidUtf8, lambda s, i, d: s.vm(b"\xff\xfe")),
    (vmpool.StringTooLong, lambda s, i, d: s.vm("a" * 5000)),
    (vmpool.Unsupported, lambda s, i, d: Store.open("zfs:nosuchpool/x")),
    (vmpool.NotAStore, lambda s, i, d: Store.open(f"dir:{d}")),
    (vmpool.InvalidArgument, lambda s, i, d: Store.open("nfs:/x")),
    (vmpool.NotFound, lambda s, i, d: s.import_image(d / "missing.raw")),
    (vmpool.InvalidArgument, lambda s, i, d: s.create_vm(alias="a/b", owner="o", image=s.import_image(i), vcpus=1, ram_mib=256)),
    (vmpool.InvalidArgument, lambda s, i, d: s.create_vm(alias="a", owner="o", image=s.import_image(i), vcpus=1, ram_mib=256, disk_gib=101)),
    (vmpool.InvalidArgument, lambda s, i, d: s.create_vm(alias="a", owner="o", image=s.import_image(i), vcpus=1, ram_mib=256, user={"login": "root"})),
    (vmpool.InvalidArgument, lambda s, i, d: s.create_vm(alias="a", owner="o", image=s.import_image(i), vcpus=1, ram_mib=256, user={"login": "al", "full_name": "n" * 10240})),
    (vmpool.InvalidJson, lambda s, i, d: s.create_vm(alias="a", owner="o", image=s.import_image(i), vcpus=1, ram_mib=256, user={"login": "al", "shell": "/bin/sh"})),
])
def test_error_mapping(env, exc, call):
    s, img, _, tmp = env
    with pytest.raises(exc) as e:
        call(s, img, tmp)
    assert isinstance(e.value, vmpool.VmpoolError)
    assert e.value.code == exc.code and str(e.value)
    assert s.vms() == []


def test_unsupported_format(env):
    s, _, _, tmp = env
    p = tmp / "x.vmdk"
    p.write_bytes(b"KDMV\x01junk")
    with pytest.raises(vmpool.UnsupportedFormat):
        s.import_image(p)


def test_every_result_code_has_a_class():
    for code in range(65):
        name = vmpool._result_name(code).decode()
        if name in ("UNKNOWN", "OK"):
            continue
        cls = vmpool.ERRORS[code]
        expected = "IoError" if name == "IO" else "".join(w.capitalize() for w in name.split("_"))
        assert cls.__name__ == expected, (code, name)
        assert issubclass(cls, vmpool.ArgumentError) == (code < 10)


def test_unknown_keyword_and_closed_store(env):
    s, img, uri, _ = env
    with pytest.raises(TypeError):
        s.import_image(img, colour="red")
    t = Store.open(uri)
    t.close()
    assert t.closed
    with pytest.raises(vmpool.VmpoolError):
        t.images()


def test_threads_share_a_store(env):
    s, img, _, _ = env
    image = s.import_image(img)
    made, errors = [], []

    def worker(t):
        try:
            for i in range(4):
                made.append(s.create_vm(alias=f"t{t}-{i}", owner=f"th{t}", image=image, vcpus=1, ram_mib=256).uuid)
            s.vm(f"00000000-0000-4000-8000-00000000000{t}")
        except vmpool.NotFound as e:
            errors.append((t, str(e)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(made)) == 32 and len(s.vms()) == 32
    # Each thread got its own message (the last error is per thread).
    assert all(f"00000000-0000-4000-8000-00000000000{t}" in m for t, m in errors) and len(errors) == 8


def test_library_lookup_names_every_place(monkeypatch):
    monkeypatch.setenv("VMPOOL_LIB", "/nonexistent/libvmpool.so")
    c = vmpool.library_candidates()
    assert c[0] == "/nonexistent/libvmpool.so" and any("libvmpool.so.0" in x for x in c)


def test_close_during_a_call_in_flight(env):
    """Closing while another thread is inside a call: the call finishes with its real result
    (the handle is released after it), and later calls raise Closed."""
    s, img, uri, _ = env
    started, go_on, result = threading.Event(), threading.Event(), {}

    def progress(done, total):
        if not started.is_set():
            started.set()
            go_on.wait(10)
        return True

    def worker():
        result["image"] = s.import_image(img, name="racing", progress=progress)

    t = threading.Thread(target=worker)
    t.start()
    assert started.wait(10)
    s.close()  # must not block on, nor free under, the import
    assert s.closed
    go_on.set()
    t.join(30)
    assert result["image"].name == "racing"
    with pytest.raises(vmpool.Closed):
        s.images()
    with Store.open(uri) as again:
        assert [m.uuid for m in again.images()] == [result["image"].uuid]


@pytest.mark.parametrize("call", [
    lambda s, img: s.vms(owner="alice\0x"),
    lambda s, img: s.import_image(str(img) + "\0/../x"),
    lambda s, img: s.vm("00000000-0000-4000-8000-000000000000\0"),
    lambda s, img: Store.open("dir:/tmp/x\0y"),
])
def test_strings_with_nul_are_refused_not_cut(env, call):
    s, img, _, _ = env
    with pytest.raises(vmpool.InvalidArgument, match="NUL"):
        call(s, img)
    assert s.images() == []


def test_run_a_vm(tmp_path):
    """A real VM from the bootable test image (make test-python sets VMPOOL_TEST_IMAGE)."""
    image_path = os.environ.get("VMPOOL_TEST_IMAGE")
    if not image_path:
        pytest.skip("VMPOOL_TEST_IMAGE is not set (make test-python sets it)")
    import time
    with Store.open(f"dir:{tmp_path}/run?accel=tcg") as s:
        image = s.import_image(image_path, name="guest")
        vm = s.create_vm(alias="py", owner="python", image=image, vcpus=1, ram_mib=256)
        with pytest.raises(vmpool.InvalidState):
            s.console(vm)
        assert s.start_vm(vm, accel="tcg").state == "running"
        with pytest.raises(vmpool.AlreadyRunning):
            s.start_vm(vm)
        ticket = s.console(vm, ttl=60)
        assert len(ticket["password"]) == 32 and f"password={ticket['password']}" in ticket["vv"]
        with pytest.raises(vmpool.InvalidArgument):
            s.console(vm, ttl=0)
        assert s.pause_vm(vm).state == "paused"
        assert s.resume_vm(vm).state == "running"
        deadline = time.time() + 120
        while "VMPOOL-TEST-GUEST: ready" not in s.vm_log(vm) and time.time() < deadline:
            time.sleep(0.2)
        assert "VMPOOL-TEST-GUEST: boot_count=1" in s.vm_log(vm)
        slept = s.suspend_vm(vm, reason="idle")
        assert slept.state == "suspended" and slept.suspended["reason"] == "idle"
        assert slept.suspended["bytes"] > 0 and s.vm_status(vm)["run"] is None
        with pytest.raises(vmpool.InvalidArgument):
            s.suspend_vm(vm, reason="a\0b")
        woken = s.resume_vm(vm)
        assert woken.state == "running" and woken.suspended is None and woken.autoboot
        # A host's reboot: stop suspends it, start wakes it (it belongs to no pool).
        down = s.host_stop()
        assert down["suspended"] == [vm.uuid] and down["errors"] == []
        assert s.vm(vm).suspended["reason"] == "host stop"
        up = s.host_start()
        assert up["woken"] == [vm.uuid] and up["errors"] == [] and s.vm(vm).state == "running"
        png = tmp_path / "screen.png"
        s.screenshot(vm, png)
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert s.vm_status(vm)["run"]["qemu_pid"] > 0
        used = s.vm_stats(vm)
        assert isinstance(used, vmpool.VmStats) and used.state == "running" and used.cpu_time_us > 0
        assert used.memory.rss_bytes > 0 and used.memory.pss_bytes <= used.memory.rss_bytes
        # Its QEMU was started by the wake: the counters began there (the guest's cache holds its files).
        assert "disk0" in [d.id for d in used.disks] and used.uptime_s is not None
        stopped = s.stop_vm(vm, timeout=60)
        assert stopped.state == "stopped" and stopped.last_exit["clean"]
        assert s.update_vm(vm, vcpus=2).vcpus == 2
        idle = s.vm_stats(vm)
        assert idle.state == "stopped" and idle.cpu_time_us is None and idle.memory is None and idle.disks == []
        with pytest.raises(vmpool.InvalidArgument):
            s.vm_stats("not-a-uuid")
        s.delete_vm(vm)


def test_pool(tmp_path):
    """A pool of memory-template clones: spares, the redirect, the maximum, release."""
    image_path = os.environ.get("VMPOOL_TEST_IMAGE")
    if not image_path:
        pytest.skip("VMPOOL_TEST_IMAGE is not set (make test-python sets it)")
    with vmpool.Store.open(f"dir:{tmp_path}/pool?accel=tcg&template_dir={tmp_path}/tpl") as s:
        image = s.import_image(image_path, name="guest")
        p = s.create_pool(name="py", image=image, vcpus=1, ram_mib=256, max_vms=2, spares=1,
                          warmth="template", ready_marker="VMPOOL-TEST-GUEST: tick=2")
        assert p["warmth"] == "template" and p["status"]["total"] == 0
        with pytest.raises(TypeError):
            s.create_pool(name="x", image=image, vcpus=1, ram_mib=256, max_vms=2, colour=1)
        seen = []
        r = s.refill("py", progress=lambda ready, target, working: seen.append((ready, target)))
        assert r["template_built"] and r["spares"] == 1 and seen
        a = s.acquire("py", owner="alice", console_ttl=60)
        assert (a["path"], a["was"], a["vm"].state) == ("spare", "waiting", "running")
        assert a["vm"].pool == "py" and len(a["console"]["password"]) == 32
        assert s.acquire("py", owner="alice")["vm"].uuid == a["vm"].uuid
        b = s.acquire("py", owner="bob")
        assert b["path"] == "created"
        with pytest.raises(vmpool.PoolExhausted):
            s.acquire("py", owner="carol")
        with pytest.raises(vmpool.InUse):
            s.delete_pool("py")
        assert s.update_pool("py", max_vms=3)["max_vms"] == 3
        s.release(a["vm"])
        s.release(b["vm"])
        with pytest.raises(vmpool.NotFound):
            s.vm(a["vm"].uuid)
        s.delete_pool("py")
        assert s.pools() == []
