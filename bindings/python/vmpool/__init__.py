"""Python binding of libvmpool (the C ABI in include/vmpool.h), through ctypes.

    from vmpool import Store
    with Store.open("dir:/var/lib/vmpool") as store:
        image = store.import_image("debian.qcow2", name="debian", version="12")
        vm = store.create_vm(alias="desk", owner="alice", image=image, vcpus=2, ram_mib=2048, disk_gib=20)
        print([v.alias for v in store.vms(owner="alice")])

Failures raise a subclass of :class:`VmpoolError` named after the library's result code.
ctypes releases the GIL during every call, so other threads run while an import or a create
waits. A :class:`Store` may be shared by threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar, Union

__all__ = [
    "Store", "Image", "Vm", "VmpoolError", "version", "library_candidates",
    "NullPointer", "InvalidUtf8", "StringTooLong", "InvalidJson", "InvalidArgument",
    "NotFound", "AlreadyExists", "InUse", "NotAStore", "Busy", "Cancelled", "InvalidState",
    "AlreadyRunning", "Timeout", "PoolExhausted", "Hypervisor",
    "ChecksumMismatch", "CorruptImage", "UnsupportedFormat", "Unsupported", "IoError",
    "NoSpace", "PermissionDenied", "Backend", "Panic", "Internal", "ArgumentError", "Closed",
]


def library_candidates() -> List[str]:
    """Where libvmpool is looked for, in order: $VMPOOL_LIB, this package's directory, the
    system's library paths."""
    here = Path(__file__).resolve().parent
    out = []
    if os.environ.get("VMPOOL_LIB"):
        out.append(os.environ["VMPOOL_LIB"])
    out += [str(here / "libvmpool.so"), str(here / "libvmpool.so.0"), "libvmpool.so.0", "libvmpool.so"]
    found = ctypes.util.find_library("vmpool")
    if found:
        out.append(found)
    return out


def _load() -> ctypes.CDLL:
    tried = []
    for cand in library_candidates():
        try:
            return ctypes.CDLL(cand)
        except OSError as e:
            tried.append(f"{cand} ({e})")
    raise OSError("libvmpool not found; tried: " + "; ".join(tried) + ". Set VMPOOL_LIB to the path of libvmpool.so.")


_lib = _load()
_c = ctypes
PROGRESS_CB = _c.CFUNCTYPE(_c.c_int, _c.c_void_p, _c.c_uint64, _c.c_uint64)
REFILL_CB = _c.CFUNCTYPE(_c.c_int, _c.c_void_p, _c.c_uint32, _c.c_uint32, _c.c_uint32)


def _fn(name: str, args: list, res: Any = _c.c_uint32) -> Any:
    # vmpool_result is a uint32_t.
    f = getattr(_lib, name)
    f.argtypes = args
    f.restype = res
    return f


_P, _S, _OUT = _c.c_void_p, _c.c_char_p, _c.POINTER(_c.c_void_p)
_version = _fn("vmpool_version", [], _S)
_last_error = _fn("vmpool_last_error", [], _S)
_result_name = _fn("vmpool_result_name", [_c.c_uint32], _S)
_string_free = _fn("vmpool_string_free", [_P], None)
_store_open = _fn("vmpool_store_open", [_S, _OUT])
_store_free = _fn("vmpool_store_free", [_P], None)
_store_info = _fn("vmpool_store_info", [_P, _OUT])
_store_recover = _fn("vmpool_store_recover", [_P, _OUT])
_image_import = _fn("vmpool_image_import_with_progress", [_P, _S, _S, PROGRESS_CB, _P, _OUT])
_image_list = _fn("vmpool_image_list", [_P, _OUT])
_image_get = _fn("vmpool_image_get", [_P, _S, _OUT])
_image_delete = _fn("vmpool_image_delete", [_P, _S])
_vm_create = _fn("vmpool_vm_create", [_P, _S, _OUT])
_vm_get = _fn("vmpool_vm_get", [_P, _S, _OUT])
_vm_list = _fn("vmpool_vm_list", [_P, _S, _OUT])
_vm_delete = _fn("vmpool_vm_delete", [_P, _S])
_vm_start = _fn("vmpool_vm_start", [_P, _S, _S, _OUT])
_vm_stop = _fn("vmpool_vm_stop", [_P, _S, _c.c_uint32, _OUT])
_vm_kill = _fn("vmpool_vm_kill", [_P, _S, _OUT])
_vm_reboot = _fn("vmpool_vm_reboot", [_P, _S, _OUT])
_vm_pause = _fn("vmpool_vm_pause", [_P, _S, _OUT])
_vm_resume = _fn("vmpool_vm_resume", [_P, _S, _OUT])
_vm_status = _fn("vmpool_vm_status", [_P, _S, _OUT])
_vm_update = _fn("vmpool_vm_update", [_P, _S, _S, _OUT])
_vm_log = _fn("vmpool_vm_log", [_P, _S, _c.c_uint64, _OUT])
_vm_console = _fn("vmpool_vm_console", [_P, _S, _c.c_uint32, _OUT])
_vm_screenshot = _fn("vmpool_vm_screenshot", [_P, _S, _S])
_pool_create = _fn("vmpool_pool_create", [_P, _S, _OUT])
_pool_list = _fn("vmpool_pool_list", [_P, _OUT])
_pool_get = _fn("vmpool_pool_get", [_P, _S, _OUT])
_pool_update = _fn("vmpool_pool_update", [_P, _S, _S, _OUT])
_pool_delete = _fn("vmpool_pool_delete", [_P, _S])
_pool_acquire = _fn("vmpool_pool_acquire", [_P, _S, _S, _S, _OUT])
_pool_release = _fn("vmpool_pool_release", [_P, _S])
_pool_refill = _fn("vmpool_pool_refill", [_P, _S, _S, REFILL_CB, _P, _OUT])


def version() -> str:
    return _version().decode()


class VmpoolError(Exception):
    """Base of every error the library reports: ``code`` is the vmpool_result number,
    ``name`` its symbolic name (``"NOT_FOUND"``)."""

    code: int = -1

    def __init__(self, message: str, code: Optional[int] = None, name: Optional[str] = None):
        super().__init__(message)
        self.code = code if code is not None else type(self).code
        self.name = name or ""


class ArgumentError(VmpoolError):
    """Errors of the caller's arguments."""


class Closed(VmpoolError):
    """The :class:`Store` was closed; no library code (the binding refuses the call)."""


def _cls(name: str, code: int, base: Type[VmpoolError] = VmpoolError) -> Type[VmpoolError]:
    return type(name, (base,), {"code": code, "__doc__": f"vmpool result {code}"})


NullPointer = _cls("NullPointer", 1, ArgumentError)
InvalidUtf8 = _cls("InvalidUtf8", 2, ArgumentError)
StringTooLong = _cls("StringTooLong", 3, ArgumentError)
InvalidJson = _cls("InvalidJson", 4, ArgumentError)
InvalidArgument = _cls("InvalidArgument", 5, ArgumentError)
NotFound = _cls("NotFound", 10)
AlreadyExists = _cls("AlreadyExists", 11)
InUse = _cls("InUse", 12)
NotAStore = _cls("NotAStore", 13)
Busy = _cls("Busy", 14)
Cancelled = _cls("Cancelled", 15)
InvalidState = _cls("InvalidState", 16)
AlreadyRunning = _cls("AlreadyRunning", 17)
Timeout = _cls("Timeout", 18)
PoolExhausted = _cls("PoolExhausted", 19)
ChecksumMismatch = _cls("ChecksumMismatch", 20)
CorruptImage = _cls("CorruptImage", 21)
UnsupportedFormat = _cls("UnsupportedFormat", 22)
Unsupported = _cls("Unsupported", 30)
IoError = _cls("IoError", 31)
NoSpace = _cls("NoSpace", 32)
PermissionDenied = _cls("PermissionDenied", 33)
Backend = _cls("Backend", 34)
Hypervisor = _cls("Hypervisor", 35)
Panic = _cls("Panic", 40)
Internal = _cls("Internal", 41)

ERRORS: Dict[int, Type[VmpoolError]] = {
    c.code: c
    for c in (NullPointer, InvalidUtf8, StringTooLong, InvalidJson, InvalidArgument, NotFound, AlreadyExists,
              InUse, NotAStore, Busy, Cancelled, InvalidState, AlreadyRunning, Timeout, PoolExhausted, ChecksumMismatch,
              CorruptImage, UnsupportedFormat, Unsupported, IoError, NoSpace, PermissionDenied, Backend,
              Hypervisor, Panic, Internal)
}


def _check(rc: int) -> None:
    # Same thread as the call: the library's last-error message is per thread.
    if rc != 0:
        msg = _last_error().decode(errors="replace")
        raise ERRORS.get(rc, VmpoolError)(msg, rc, _result_name(rc).decode())


def _json_out(call: Callable[[Any], int]) -> Any:
    out = _c.c_void_p()
    _check(call(_c.byref(out)))
    try:
        return json.loads(_c.string_at(out.value).decode())
    finally:
        _string_free(out)


def _arg(s: Optional[Union[str, bytes]], what: str = "argument") -> Optional[bytes]:
    """A string argument for C: ctypes would silently cut it at a NUL byte (so that
    ``owner="alice\\0x"`` meant alice), so a NUL anywhere is refused."""
    if s is None:
        return None
    b = s.encode("utf-8", errors="surrogateescape") if isinstance(s, str) else bytes(s)
    if b"\0" in b:
        raise InvalidArgument(f"{what} {s!r} contains a NUL byte", 5, "INVALID_ARGUMENT")
    return b


T = TypeVar("T", bound="_Record")


class _Record:
    @classmethod
    def from_json(cls: Type[T], d: Dict[str, Any]) -> T:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        known = {k: v for k, v in d.items() if k in names}
        obj = cls(**known)
        object.__setattr__(obj, "extra", {k: v for k, v in d.items() if k not in names})
        return obj


@dataclass(frozen=True)
class Image(_Record):
    """An image (template) manifest."""

    uuid: str
    name: str
    version: str
    os: str
    format: str
    size_bytes: int
    sha256: str
    created_at: str
    disk_format: str
    disk: str
    tags: Dict[str, Any] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Vm(_Record):
    """A VM record."""

    uuid: str
    alias: str
    owner: str
    image_uuid: str
    vcpus: int
    ram_mib: int
    disk_gib: int
    created_at: str
    state: str
    disk_path: str
    disk_format: str
    disk_size_bytes: int
    clone_method: str
    firmware: str = "bios"
    accel: Optional[str] = None
    mac: str = ""
    vmgenid: str = ""
    last_exit: Optional[Dict[str, Any]] = None
    pool: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


_POOL_KEYS = {"vcpus", "ram_mib", "disk_gib", "spares", "max_vms", "max_per_owner", "warmth", "on_release",
              "ready_marker", "ready_delay_s", "ready_timeout_s", "accel"}


class Store:
    """An open store. Use as a context manager, or call :meth:`close`; thread-safe.

    Closing never frees the library's handle under a call in flight on another thread: the
    handle is released when the last such call returns, and calls made after :meth:`close`
    raise :class:`Closed`."""

    def __init__(self, handle: int):
        self._h: Optional[int] = handle
        self._lock = threading.Lock()
        self._inflight = 0
        self._closing = False

    @classmethod
    def open(cls, uri: Optional[str] = None) -> "Store":
        """Open the store at ``uri`` (``dir:/path``, ``btrfs:/path``, ``zfs:pool/ds``, with
        ``?options``), or the default store for ``None``."""
        out = _c.c_void_p()
        _check(_store_open(_arg(uri, "uri"), _c.byref(out)))
        return cls(out.value)  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._release_if_idle()

    def _release_if_idle(self) -> None:
        # Called with the lock held.
        if self._inflight == 0 and self._h is not None:
            h, self._h = self._h, None
            _store_free(h)

    @contextlib.contextmanager
    def _use(self) -> Any:
        with self._lock:
            if self._closing or self._h is None:
                raise Closed("store is closed", -1, "CLOSED")
            self._inflight += 1
            h = self._h
        try:
            yield h
        finally:
            with self._lock:
                self._inflight -= 1
                if self._closing:
                    self._release_if_idle()

    @property
    def closed(self) -> bool:
        return self._closing

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def info(self) -> Dict[str, Any]:
        with self._use() as h:
            return _json_out(lambda out: _store_info(h, out))

    def recover(self) -> Dict[str, Any]:
        with self._use() as h:
            return _json_out(lambda out: _store_recover(h, out))

    def import_image(self, path: Union[str, os.PathLike], *, progress: Optional[Callable[[int, int], bool]] = None,
                     **manifest: Any) -> Image:
        """Import a raw or qcow2 file. Keywords: name, version, os, sha256, uuid, format,
        size_bytes, tags. ``progress(done, total)`` returning False cancels (raises
        :class:`Cancelled`)."""
        allowed = {"name", "version", "os", "sha256", "uuid", "format", "size_bytes", "tags"}
        unknown = set(manifest) - allowed
        if unknown:
            raise TypeError(f"unknown manifest keys: {', '.join(sorted(unknown))}")
        errors: List[BaseException] = []

        def cb(_userdata: Any, done: int, total: int) -> int:
            if progress is None:
                return 0
            try:
                return 0 if progress(done, total) is not False else 1
            except BaseException as e:  # never let an exception unwind through C
                errors.append(e)
                return 1

        c_cb = PROGRESS_CB(cb)
        p, m = _arg(os.fspath(path), "path"), _arg(json.dumps(manifest), "manifest")
        try:
            with self._use() as h:
                d = _json_out(lambda out: _image_import(h, p, m, c_cb, None, out))
        except Cancelled:
            if errors:
                raise errors[0]
            raise
        return Image.from_json(d)

    def images(self) -> List[Image]:
        with self._use() as h:
            return [Image.from_json(d) for d in _json_out(lambda out: _image_list(h, out))]

    def image(self, uuid: str) -> Image:
        u = _arg(uuid, "uuid")
        with self._use() as h:
            return Image.from_json(_json_out(lambda out: _image_get(h, u, out)))

    def delete_image(self, image: Union[str, Image]) -> None:
        u = _arg(image.uuid if isinstance(image, Image) else image, "uuid")
        with self._use() as h:
            _check(_image_delete(h, u))

    def create_vm(self, *, alias: str, owner: str, image: Union[str, Image], vcpus: int, ram_mib: int,
                  disk_gib: Optional[int] = None, uuid: Optional[str] = None) -> Vm:
        """Create a VM whose disk is a copy-on-write clone of ``image``."""
        payload: Dict[str, Any] = {"alias": alias, "owner": owner,
                                   "image_uuid": image.uuid if isinstance(image, Image) else image,
                                   "vcpus": vcpus, "ram_mib": ram_mib}
        if disk_gib is not None:
            payload["disk_gib"] = disk_gib
        if uuid is not None:
            payload["uuid"] = uuid
        p = _arg(json.dumps(payload), "payload")
        with self._use() as h:
            return Vm.from_json(_json_out(lambda out: _vm_create(h, p, out)))

    def vm(self, uuid: str) -> Vm:
        u = _arg(uuid, "uuid")
        with self._use() as h:
            return Vm.from_json(_json_out(lambda out: _vm_get(h, u, out)))

    def vms(self, owner: Optional[str] = None) -> List[Vm]:
        o = _arg(owner, "owner")
        with self._use() as h:
            return [Vm.from_json(d) for d in _json_out(lambda out: _vm_list(h, o, out))]

    def delete_vm(self, vm: Union[str, Vm]) -> None:
        u = _arg(vm.uuid if isinstance(vm, Vm) else vm, "uuid")
        with self._use() as h:
            _check(_vm_delete(h, u))

    def _vm(self, vm: Union[str, Vm], call: Callable[..., int], *args: Any) -> Vm:
        u = _arg(vm.uuid if isinstance(vm, Vm) else vm, "uuid")
        with self._use() as h:
            return Vm.from_json(_json_out(lambda out: call(h, u, *args, out)))

    def start_vm(self, vm: Union[str, Vm], *, accel: Optional[str] = None) -> Vm:
        """Start a VM (QEMU under its supervisor, detached from this process); ``accel``:
        ``"kvm"``, ``"tcg"`` or ``"auto"`` for this run. Raises :class:`AlreadyRunning`."""
        opts = _arg(json.dumps({"accel": accel}), "options") if accel else None
        return self._vm(vm, _vm_start, opts)

    def stop_vm(self, vm: Union[str, Vm], *, timeout: int = 60) -> Vm:
        """ACPI shutdown, then kill after ``timeout`` seconds. A VM that does not run: no error."""
        return self._vm(vm, _vm_stop, int(timeout))

    def kill_vm(self, vm: Union[str, Vm]) -> Vm:
        return self._vm(vm, _vm_kill)

    def reboot_vm(self, vm: Union[str, Vm]) -> Vm:
        return self._vm(vm, _vm_reboot)

    def pause_vm(self, vm: Union[str, Vm]) -> Vm:
        return self._vm(vm, _vm_pause)

    def resume_vm(self, vm: Union[str, Vm]) -> Vm:
        return self._vm(vm, _vm_resume)

    def update_vm(self, vm: Union[str, Vm], **changes: int) -> Vm:
        """Change a stopped VM's ``vcpus``, ``ram_mib``, ``disk_gib`` (the disk only grows)."""
        unknown = set(changes) - {"vcpus", "ram_mib", "disk_gib"}
        if unknown:
            raise TypeError(f"unknown keys: {', '.join(sorted(unknown))}")
        return self._vm(vm, _vm_update, _arg(json.dumps(changes), "update"))

    def vm_status(self, vm: Union[str, Vm]) -> Dict[str, Any]:
        """``{"vm": {...live state...}, "run": {...} or None, "uptime_s", "serial_log"}``"""
        u = _arg(vm.uuid if isinstance(vm, Vm) else vm, "uuid")
        with self._use() as h:
            return _json_out(lambda out: _vm_status(h, u, out))

    def vm_log(self, vm: Union[str, Vm], *, max_bytes: int = 65536) -> str:
        """The end of the VM's serial console log."""
        u = _arg(vm.uuid if isinstance(vm, Vm) else vm, "uuid")
        out = _c.c_void_p()
        with self._use() as h:
            _check(_vm_log(h, u, int(max_bytes), _c.byref(out)))
        try:
            return _c.string_at(out.value).decode(errors="replace")
        finally:
            _string_free(out)

    def console(self, vm: Union[str, Vm], *, ttl: int = 600) -> Dict[str, Any]:
        """A SPICE console ticket valid for ``ttl`` seconds: ``kind``, ``path`` or
        ``host``/``port``, ``uri``, ``password``, ``expires_at``, ``vv`` (remote-viewer file)."""
        u = _arg(vm.uuid if isinstance(vm, Vm) else vm, "uuid")
        with self._use() as h:
            return _json_out(lambda out: _vm_console(h, u, int(ttl), out))

    def screenshot(self, vm: Union[str, Vm], path: Union[str, os.PathLike]) -> None:
        """Save the VM's screen as a PNG file."""
        u, p = _arg(vm.uuid if isinstance(vm, Vm) else vm, "uuid"), _arg(os.fspath(path), "path")
        with self._use() as h:
            _check(_vm_screenshot(h, u, p))

    def create_pool(self, *, name: str, image: Union[str, Image], vcpus: int, ram_mib: int, max_vms: int,
                    **opts: Any) -> Dict[str, Any]:
        """Create a pool. Keywords: disk_gib, spares, max_per_owner, warmth ("disk", "paused",
        "template"), on_release ("destroy", "reset"), ready_marker, ready_delay_s,
        ready_timeout_s, accel. Spares are made by :meth:`refill`."""
        unknown = set(opts) - _POOL_KEYS
        if unknown:
            raise TypeError(f"unknown pool keys: {', '.join(sorted(unknown))}")
        payload: Dict[str, Any] = {"name": name, "image_uuid": image.uuid if isinstance(image, Image) else image,
                                   "vcpus": vcpus, "ram_mib": ram_mib, "max_vms": max_vms}
        payload.update({k: v for k, v in opts.items() if v is not None})
        p = _arg(json.dumps(payload), "payload")
        with self._use() as h:
            return _json_out(lambda out: _pool_create(h, p, out))

    def pools(self) -> List[Dict[str, Any]]:
        with self._use() as h:
            return _json_out(lambda out: _pool_list(h, out))

    def pool(self, name: str) -> Dict[str, Any]:
        n = _arg(name, "name")
        with self._use() as h:
            return _json_out(lambda out: _pool_get(h, n, out))

    def update_pool(self, name: str, **changes: Any) -> Dict[str, Any]:
        """Change a pool: any create keyword except name (``image`` an uuid or Image);
        ``disk_gib``, ``ready_marker`` and ``accel`` may be None (back to the default)."""
        if "image" in changes:
            img = changes.pop("image")
            changes["image_uuid"] = img.uuid if isinstance(img, Image) else img
        unknown = set(changes) - _POOL_KEYS - {"image_uuid"}
        if unknown:
            raise TypeError(f"unknown pool keys: {', '.join(sorted(unknown))}")
        n, c = _arg(name, "name"), _arg(json.dumps(changes), "changes")
        with self._use() as h:
            return _json_out(lambda out: _pool_update(h, n, c, out))

    def delete_pool(self, name: str) -> None:
        """Delete a pool with its spares; raises :class:`InUse` while owners hold VMs of it."""
        n = _arg(name, "name")
        with self._use() as h:
            _check(_pool_delete(h, n))

    def acquire(self, pool: str, *, owner: str, console_ttl: Optional[int] = None,
                another: bool = False) -> Dict[str, Any]:
        """A running VM of ``pool`` for ``owner``: theirs if they hold one (never a second), else
        a spare, else a new one. ``{"vm": Vm, "path", "was", "steps", "total_ms", "console"}``;
        raises :class:`PoolExhausted` at the pool's maximum."""
        opts: Dict[str, Any] = {}
        if console_ttl is not None:
            opts["console_ttl"] = int(console_ttl)
        if another:
            opts["another"] = True
        n, o = _arg(pool, "pool"), _arg(owner, "owner")
        b = _arg(json.dumps(opts), "options") if opts else None
        with self._use() as h:
            d = _json_out(lambda out: _pool_acquire(h, n, o, b, out))
        d["vm"] = Vm.from_json(d["vm"])
        return d

    def release(self, vm: Union[str, Vm]) -> None:
        """Give a VM back to its pool (destroyed, or reset to a fresh spare, per the pool)."""
        u = _arg(vm.uuid if isinstance(vm, Vm) else vm, "uuid")
        with self._use() as h:
            _check(_pool_release(h, u))

    def refill(self, pool: str, *, parallel: Optional[int] = None,
               progress: Optional[Callable[[int, int, int], bool]] = None) -> Dict[str, Any]:
        """Bring the pool's spares to its target. ``progress(ready, target, working)``
        returning False stops early."""
        errors: List[BaseException] = []

        def cb(_userdata: Any, ready: int, target: int, working: int) -> int:
            if progress is None:
                return 0
            try:
                return 0 if progress(ready, target, working) is not False else 1
            except BaseException as e:  # never let an exception unwind through C
                errors.append(e)
                return 1

        c_cb = REFILL_CB(cb)
        n = _arg(pool, "pool")
        b = _arg(json.dumps({"parallel": int(parallel)}), "options") if parallel is not None else None
        with self._use() as h:
            d = _json_out(lambda out: _pool_refill(h, n, b, c_cb, None, out))
        if errors:
            raise errors[0]
        return d
