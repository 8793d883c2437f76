"""Python binding of libvmpool (the C ABI in include/vmpool.h), through ctypes.

    from vmpool import Store
    with Store.open("dir:/var/lib/vmpool") as store:
        image = store.import_image("debian.qcow2", name="debian", version="12")
        vm = store.create_vm(alias="desk", owner="alice", image=image, vcpus=2, ram_mib=2048, disk_gib=20)
        print([v.alias for v in store.vms(owner="alice")])

Results are frozen dataclasses (:class:`Image`, :class:`Vm`, :class:`Pool`, :class:`VmStatus`,
...) with the fields of the library's JSON; they also answer ``obj["field"]`` as the dicts of
earlier versions did. Failures raise a subclass of :class:`VmpoolError` named after the
library's result code. ctypes releases the GIL during every call, so other threads run while
an import or a create waits. A :class:`Store` may be shared by threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import threading
import weakref
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Set, Tuple, Type, TypeVar, Union

__all__ = [
    "Store", "Image", "Vm", "Caps", "LastExit", "VmStatus", "Run", "SpiceAddr", "Console",
    "VmStats", "MemoryStats", "DiskStats",
    "Pool", "PoolStatus", "PoolTemplate", "Acquired", "Step", "RefillReport", "Home",
    "VmpoolError", "ERRORS", "version", "library_candidates",
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


def _fn(name: str, args: List[Any], res: Any) -> Any:
    f = getattr(_lib, name)
    f.argtypes = args
    f.restype = res
    return f


# The helpers that never fail; _error() below needs them.
_S = _c.c_char_p
_version = _fn("vmpool_version", [], _S)
_last_error = _fn("vmpool_last_error", [], _S)
_result_name = _fn("vmpool_result_name", [_c.c_uint32], _S)


def version() -> str:
    return str(_version().decode())


# ---------------------------------------------------------------------------------------------
# Exceptions: one class per vmpool_result code of include/vmpool.h.


class VmpoolError(Exception):
    """Base of every error the library reports: ``code`` is the vmpool_result number,
    ``name`` its symbolic name (``"NOT_FOUND"``), ``message`` the library's message (also
    ``str(e)``)."""

    code: int = -1
    name: str = ""

    def __init__(self, message: str = "", code: Optional[int] = None, name: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else type(self).code
        self.name = name if name is not None else type(self).name


class ArgumentError(VmpoolError):
    """Errors of the caller's arguments (the codes below 10)."""


class Closed(VmpoolError):
    """The :class:`Store` was closed; no library code (the binding refuses the call)."""

    name = "CLOSED"


ERRORS: Dict[int, Type[VmpoolError]] = {}
"""The exception class of each result code."""

_E = TypeVar("_E", bound=Type[VmpoolError])


def _cls(class_name: str, code: int) -> Callable[[_E], _E]:
    """Make the decorated class the exception of result ``code``. The class name is repeated
    as a string because tests/it/result_codes.rs reads these decorator lines to compare this
    table with the library's; the check here keeps the string and the class from drifting
    apart."""

    def register(cls: _E) -> _E:
        if cls.__name__ != class_name or code in ERRORS:
            raise RuntimeError(f"vmpool: bad exception table entry {class_name} = {code}")
        cls.code = code
        cls.name = _result_name(code).decode()
        ERRORS[code] = cls
        return cls

    return register


@_cls("NullPointer", 1)
class NullPointer(ArgumentError):
    """A required pointer argument was NULL."""


@_cls("InvalidUtf8", 2)
class InvalidUtf8(ArgumentError):
    """A string argument was not valid UTF-8."""


@_cls("StringTooLong", 3)
class StringTooLong(ArgumentError):
    """A string argument was longer than the library accepts."""


@_cls("InvalidJson", 4)
class InvalidJson(ArgumentError):
    """A JSON argument did not parse, had an unknown key or a value of the wrong type."""


@_cls("InvalidArgument", 5)
class InvalidArgument(ArgumentError):
    """An argument parsed but its value is refused (bad uuid, name, size, URI, ...)."""


@_cls("NotFound", 10)
class NotFound(VmpoolError):
    """The image, VM, pool or store named does not exist."""


@_cls("AlreadyExists", 11)
class AlreadyExists(VmpoolError):
    """Something with that identity already exists (or is being created right now)."""


@_cls("InUse", 12)
class InUse(VmpoolError):
    """The object is still used (an image with VMs cloned from it, a pool with owners)."""


@_cls("NotAStore", 13)
class NotAStore(VmpoolError):
    """The path or dataset exists but is not a vmpool store."""


@_cls("Busy", 14)
class Busy(VmpoolError):
    """Another operation holds what this one needs; try again."""


@_cls("Cancelled", 15)
class Cancelled(VmpoolError):
    """The progress callback asked to stop."""


@_cls("InvalidState", 16)
class InvalidState(VmpoolError):
    """The VM is not in a state that allows this; the message says which state."""


@_cls("AlreadyRunning", 17)
class AlreadyRunning(VmpoolError):
    """The VM is already running (or being started by someone else)."""


@_cls("Timeout", 18)
class Timeout(VmpoolError):
    """An operation did not finish in the time it had."""


@_cls("PoolExhausted", 19)
class PoolExhausted(VmpoolError):
    """The pool is at its maximum number of VMs, or the owner at theirs."""


@_cls("ChecksumMismatch", 20)
class ChecksumMismatch(VmpoolError):
    """The data did not match the sha256 the caller gave."""


@_cls("CorruptImage", 21)
class CorruptImage(VmpoolError):
    """The image file is truncated or structurally broken."""


@_cls("UnsupportedFormat", 22)
class UnsupportedFormat(VmpoolError):
    """The image is in a format (or uses a feature of one) that vmpool does not take."""


@_cls("Unsupported", 30)
class Unsupported(VmpoolError):
    """The store or platform cannot do this."""


@_cls("IoError", 31)
class IoError(VmpoolError):
    """An operating-system I/O error (named so as not to shadow the built-in IOError)."""


@_cls("NoSpace", 32)
class NoSpace(VmpoolError):
    """The file system or pool is full."""


@_cls("PermissionDenied", 33)
class PermissionDenied(VmpoolError):
    """The operating system refused access."""


@_cls("Backend", 34)
class Backend(VmpoolError):
    """The storage back end (libzfs, a btrfs ioctl) reported an error."""


@_cls("Hypervisor", 35)
class Hypervisor(VmpoolError):
    """QEMU could not be started or failed (the message has QEMU's own words)."""


@_cls("Panic", 40)
class Panic(VmpoolError):
    """A bug: the library panicked (contained; the message says where)."""


@_cls("Internal", 41)
class Internal(VmpoolError):
    """A bug or an impossible state that is not a panic."""


def _error(rc: int) -> VmpoolError:
    """The exception for result ``rc``, with the calling thread's last-error message."""
    msg = _last_error().decode(errors="replace")
    return ERRORS.get(rc, VmpoolError)(msg, rc, _result_name(rc).decode())


def _errcheck(rc: int, _func: Any, _args: Tuple[Any, ...]) -> int:
    # ctypes runs this right after the foreign call, on the same thread, so the last-error
    # message _error() reads (it is per thread) is this call's.
    if rc != 0:
        raise _error(rc)
    return rc


def _checked(name: str, args: List[Any]) -> Any:
    """A function returning a vmpool_result (a uint32_t): non-zero raises through _errcheck."""
    f = _fn(name, args, _c.c_uint32)
    f.errcheck = _errcheck
    return f


# ---------------------------------------------------------------------------------------------
# The C functions.

PROGRESS_CB = _c.CFUNCTYPE(_c.c_int, _c.c_void_p, _c.c_uint64, _c.c_uint64)
REFILL_CB = _c.CFUNCTYPE(_c.c_int, _c.c_void_p, _c.c_uint32, _c.c_uint32, _c.c_uint32)

_P, _OUT = _c.c_void_p, _c.POINTER(_c.c_void_p)
_string_free = _fn("vmpool_string_free", [_P], None)
_store_free = _fn("vmpool_store_free", [_P], None)
_store_open = _checked("vmpool_store_open", [_S, _OUT])
_store_info = _checked("vmpool_store_info", [_P, _OUT])
_store_recover = _checked("vmpool_store_recover", [_P, _OUT])
_host_start = _checked("vmpool_host_start", [_P, _OUT])
_host_stop = _checked("vmpool_host_stop", [_P, _OUT])
_image_import = _checked("vmpool_image_import_with_progress", [_P, _S, _S, PROGRESS_CB, _P, _OUT])
_image_list = _checked("vmpool_image_list", [_P, _OUT])
_image_get = _checked("vmpool_image_get", [_P, _S, _OUT])
_image_delete = _checked("vmpool_image_delete", [_P, _S])
_vm_create = _checked("vmpool_vm_create", [_P, _S, _OUT])
_vm_get = _checked("vmpool_vm_get", [_P, _S, _OUT])
_vm_list = _checked("vmpool_vm_list", [_P, _S, _OUT])
_vm_delete = _checked("vmpool_vm_delete", [_P, _S])
_vm_start = _checked("vmpool_vm_start", [_P, _S, _S, _OUT])
_vm_stop = _checked("vmpool_vm_stop", [_P, _S, _c.c_uint32, _OUT])
_vm_kill = _checked("vmpool_vm_kill", [_P, _S, _OUT])
_vm_reboot = _checked("vmpool_vm_reboot", [_P, _S, _OUT])
_vm_pause = _checked("vmpool_vm_pause", [_P, _S, _OUT])
_vm_suspend = _checked("vmpool_vm_suspend", [_P, _S, _S, _OUT])
_vm_resume = _checked("vmpool_vm_resume", [_P, _S, _OUT])
_vm_status = _checked("vmpool_vm_status", [_P, _S, _OUT])
_vm_stats = _checked("vmpool_vm_stats", [_P, _S, _OUT])
_vm_update = _checked("vmpool_vm_update", [_P, _S, _S, _OUT])
_vm_log = _checked("vmpool_vm_log", [_P, _S, _c.c_uint64, _OUT])
_vm_console = _checked("vmpool_vm_console", [_P, _S, _c.c_uint32, _OUT])
_vm_screenshot = _checked("vmpool_vm_screenshot", [_P, _S, _S])
_pool_create = _checked("vmpool_pool_create", [_P, _S, _OUT])
_pool_list = _checked("vmpool_pool_list", [_P, _OUT])
_pool_get = _checked("vmpool_pool_get", [_P, _S, _OUT])
_pool_update = _checked("vmpool_pool_update", [_P, _S, _S, _OUT])
_pool_delete = _checked("vmpool_pool_delete", [_P, _S])
_pool_acquire = _checked("vmpool_pool_acquire", [_P, _S, _S, _S, _OUT])
_pool_release = _checked("vmpool_pool_release", [_P, _S])
_pool_logout = _checked("vmpool_pool_logout", [_P, _S, _OUT])
_pool_refill = _checked("vmpool_pool_refill", [_P, _S, _S, REFILL_CB, _P, _OUT])
_home_create = _checked("vmpool_home_create", [_P, _S, _c.c_uint64, _OUT])
_home_get = _checked("vmpool_home_get", [_P, _S, _OUT])
_home_list = _checked("vmpool_home_list", [_P, _OUT])
_home_resize = _checked("vmpool_home_resize", [_P, _S, _c.c_uint64, _OUT])
_home_delete = _checked("vmpool_home_delete", [_P, _S])


def _text_out(call: Callable[[Any], int]) -> str:
    """Call a function whose last argument is a char ** out; the string it returned."""
    out = _c.c_void_p()
    call(_c.byref(out))  # raises on failure, before anything was written to out
    try:
        return _c.string_at(out).decode(errors="replace")
    finally:
        _string_free(out)


def _json_out(call: Callable[[Any], int]) -> Any:
    return json.loads(_text_out(call))


def _arg(s: Optional[Union[str, bytes]], what: str = "argument") -> Optional[bytes]:
    """A string argument for C: ctypes would silently cut it at a NUL byte (so that
    ``owner="alice\\0x"`` meant alice), so a NUL anywhere is refused."""
    if s is None:
        return None
    b = s.encode("utf-8", errors="surrogateescape") if isinstance(s, str) else bytes(s)
    if b"\0" in b:
        raise InvalidArgument(f"{what} {s!r} contains a NUL byte")
    return b


def _payload(d: Dict[str, Any], what: str) -> Optional[bytes]:
    return _arg(json.dumps(d), what)


# ---------------------------------------------------------------------------------------------
# Results: dataclasses with the fields of the library's JSON (src/ffi/wire).

T = TypeVar("T", bound="_Record")


class _Record:
    """Base of the result dataclasses. Keys of the JSON that the class has no field for (a
    newer library) are kept in ``extra`` rather than dropped or refused."""

    # Field name -> how to build it from its JSON value (nested records); None stays None.
    _nested: ClassVar[Dict[str, Callable[[Any], Any]]] = {}

    @classmethod
    def from_json(cls: Type[T], d: Dict[str, Any]) -> T:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        known = {k: v for k, v in d.items() if k in names and k != "extra"}
        for k, conv in cls._nested.items():
            if known.get(k) is not None:
                known[k] = conv(known[k])
        obj = cls(**known)
        object.__setattr__(obj, "extra", {k: v for k, v in d.items() if k not in names})
        return obj

    # Dict-style reads, for callers written when these results were dicts (r["spares"]).
    def _has(self, key: object) -> bool:
        return isinstance(key, str) and key != "extra" and (
            key in self.extra or key in {f.name for f in fields(self)})  # type: ignore[attr-defined,arg-type]

    def __getitem__(self, key: str) -> Any:
        if not self._has(key):
            raise KeyError(key)
        return self.extra[key] if key in self.extra else getattr(self, key)  # type: ignore[attr-defined]

    def __contains__(self, key: object) -> bool:
        return self._has(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if self._has(key) else default

    # Not iterable: with __getitem__ alone, Python would try r[0], r[1], ...
    __iter__ = None


def _list_of(conv: Callable[[Any], Any]) -> Callable[[List[Any]], List[Any]]:
    return lambda xs: [conv(x) for x in xs]


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
class Caps(_Record):
    """Resource caps a VM asked for beyond its size (``None``: what its size implies)."""

    cpu_pct: Optional[int] = None
    memory_mib: Optional[int] = None
    io: Optional[Dict[str, int]] = None
    prealloc: bool = False
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class LastExit(_Record):
    """How QEMU ended the last time it ran."""

    at: str
    clean: bool
    reason: str
    signal: Optional[int] = None
    status: Optional[int] = None
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
    last_exit: Optional[LastExit] = None
    caps: Caps = field(default_factory=Caps)
    pool: Optional[str] = None
    user: Optional[Dict[str, Any]] = None
    #: While ``state`` is ``"suspended"``: ``at``, ``reason``, ``bytes`` of its saved state.
    suspended: Optional[Dict[str, Any]] = None
    #: Marked to run: set by a start or wake, cleared by a stop or kill; ``host_start`` starts it.
    autoboot: bool = False
    #: While it runs for its owner in a pool with ``max_session_s``: when the pool ends the session (RFC 3339).
    session_ends_at: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _nested: ClassVar[Dict[str, Callable[[Any], Any]]] = {
        "last_exit": LastExit.from_json, "caps": Caps.from_json}


@dataclass(frozen=True)
class SpiceAddr(_Record):
    """Where a VM's SPICE server listens: ``kind`` ``"unix"`` with ``path``, or ``"tcp"``
    with ``host`` and ``port``."""

    kind: str
    path: Optional[str] = None
    host: Optional[str] = None
    port: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Run(_Record):
    """A VM's current run."""

    supervisor_pid: int
    qemu_pid: int
    qemu_start: int
    started_at: str
    accel: str
    spice: SpiceAddr
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _nested: ClassVar[Dict[str, Callable[[Any], Any]]] = {"spice": SpiceAddr.from_json}


@dataclass(frozen=True)
class VmStatus(_Record):
    """A VM's live state and its current run (``None`` when it does not run)."""

    vm: Vm
    serial_log: str
    run: Optional[Run] = None
    uptime_s: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _nested: ClassVar[Dict[str, Callable[[Any], Any]]] = {"vm": Vm.from_json, "run": Run.from_json}


@dataclass(frozen=True)
class MemoryStats(_Record):
    """A running VM's memory, bytes: QEMU's ``rss_bytes``, ``pss_bytes`` (shared pages
    counted once over all VMs), ``private_bytes``, and its zone's charge, peak and limit
    (``None`` where it runs outside a zone)."""

    rss_bytes: int
    pss_bytes: int
    private_bytes: int
    zone_bytes: Optional[int] = None
    zone_peak_bytes: Optional[int] = None
    zone_limit_bytes: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class DiskStats(_Record):
    """One drive's I/O counters as QEMU reports them (``id`` ``disk0`` is the VM's disk)."""

    id: str
    rd_bytes: int
    wr_bytes: int
    rd_operations: int
    wr_operations: int
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class VmStats(_Record):
    """What a VM uses now: counters (``cpu_time_us``, bytes, requests) to sample twice and
    divide, never rates. ``cpu_time_us``, ``uptime_s`` and ``memory`` are ``None`` and
    ``disks`` empty unless it runs."""

    uuid: str
    alias: str
    owner: str
    state: str
    vcpus: int
    ram_mib: int
    sampled_at: str
    pool: Optional[str] = None
    uptime_s: Optional[int] = None
    cpu_time_us: Optional[int] = None
    #: ``"zone"`` (its cgroup's count) or ``"process"`` (QEMU's): compare samples of one source only.
    cpu_source: Optional[str] = None
    memory: Optional[MemoryStats] = None
    disks: List[DiskStats] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _nested: ClassVar[Dict[str, Callable[[Any], Any]]] = {
        "memory": MemoryStats.from_json, "disks": lambda l: [DiskStats.from_json(d) for d in l]}


@dataclass(frozen=True)
class Console(_Record):
    """A SPICE console ticket: ``kind`` ``"unix"`` (``path``) or ``"tcp"`` (``host``,
    ``port``); ``vv`` is the text of a remote-viewer connection file."""

    kind: str
    uri: str
    password: str
    expires_at: str
    expires_at_unix: int
    vv: str
    path: Optional[str] = None
    host: Optional[str] = None
    port: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class PoolStatus(_Record):
    """How many VMs a pool has, and in which condition."""

    spares_ready: int
    spares_warming: int
    spares_cold: int
    owned: int
    total: int
    customization_failures: int = 0
    last_customization_failure: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class PoolTemplate(_Record):
    """A pool's memory template."""

    image_uuid: str
    made_at: str
    memory: str
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Pool(_Record):
    """A pool: its settings (as given to :meth:`Store.create_pool`) and its status."""

    name: str
    image_uuid: str
    vcpus: int
    ram_mib: int
    spares: int
    max_vms: int
    max_per_owner: int
    warmth: str
    on_release: str
    ready_delay_s: int
    ready_timeout_s: int
    created_at: str
    updated_at: str
    status: PoolStatus
    disk_gib: Optional[int] = None
    ready_marker: Optional[str] = None
    accel: Optional[str] = None
    home_gib: Optional[int] = None
    idle_suspend_after_s: Optional[int] = None
    #: The longest a desktop stays with its owner in one go, s; then ``on_logout`` ends the session.
    max_session_s: Optional[int] = None
    #: What an owner's :meth:`Store.logout` does with their desktop: ``"keep"`` or ``"refresh"``.
    on_logout: str = "keep"
    template: Optional[PoolTemplate] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _nested: ClassVar[Dict[str, Callable[[Any], Any]]] = {
        "status": PoolStatus.from_json, "template": PoolTemplate.from_json}


@dataclass(frozen=True)
class Home(_Record):
    """An owner's home volume; ``attached_to`` is the running VM that has it, if any."""

    owner: str
    uuid: str
    size_bytes: int
    disk_format: str
    disk: str
    clone_method: str
    created_at: str
    attached_to: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Step(_Record):
    """One timed step of an acquire."""

    step: str
    ms: float
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Acquired(_Record):
    """What :meth:`Store.acquire` hands out: the VM, which way it was got (``path``:
    ``"redirect"``, ``"spare"`` or ``"created"``), how ready it ``was``, the timed steps, and a
    console ticket when one was asked for."""

    vm: Vm
    path: str
    was: str
    steps: List[Step]
    total_ms: float
    console: Optional[Console] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _nested: ClassVar[Dict[str, Callable[[Any], Any]]] = {
        "vm": Vm.from_json, "steps": _list_of(Step.from_json), "console": Console.from_json}


@dataclass(frozen=True)
class RefillReport(_Record):
    """What a refill did; spares that failed are in ``errors`` (the refill still succeeded)."""

    created: int
    warmed: int
    removed: int
    template_built: bool
    spares: int
    suspended: int = 0
    sessions_ended: int = 0
    errors: List[str] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# ---------------------------------------------------------------------------------------------
# The keys each JSON input of the C API takes (src/ffi/wire), besides those that are
# parameters of their own. Checked here so that a misspelt keyword is a TypeError naming it,
# as for any Python function; the library refuses unknown keys too (InvalidJson).

_IMPORT_KEYS = {"uuid", "name", "version", "os", "sha256", "format", "size_bytes", "tags"}
_VM_UPDATE_KEYS = {"vcpus", "ram_mib", "disk_gib"}
# vmpool_pool_update takes every create key except name; image_uuid is also said as image=.
_POOL_UPDATE_KEYS = {"image_uuid", "vcpus", "ram_mib", "disk_gib", "spares", "max_vms", "max_per_owner",
                     "warmth", "on_release", "on_logout", "ready_marker", "ready_delay_s", "ready_timeout_s", "accel",
                     "home_gib", "idle_suspend_after_s", "max_session_s"}
_POOL_CREATE_KEYS = _POOL_UPDATE_KEYS - {"image_uuid", "vcpus", "ram_mib", "max_vms"}


def _refuse_unknown(given: Dict[str, Any], allowed: Set[str], what: str) -> None:
    unknown = set(given) - allowed
    if unknown:
        raise TypeError(f"unknown {what} keys: {', '.join(sorted(unknown))}")


def _uuid(x: Union[str, bytes, Image, Vm], what: str = "uuid") -> Optional[bytes]:
    """An image or VM argument: its uuid, or the record itself."""
    return _arg(x.uuid if isinstance(x, (Image, Vm)) else x, what)


class Store:
    """An open store. Use as a context manager, or call :meth:`close`; thread-safe.

    Closing never frees the library's handle under a call in flight on another thread: the
    handle is released when the last such call returns, and calls made after :meth:`close`
    raise :class:`Closed`. A store that is never closed is released when it is garbage
    collected (or at interpreter exit)."""

    def __init__(self, handle: int):
        self._h: Optional[int] = handle
        self._lock = threading.Lock()
        self._inflight = 0
        self._closing = False
        # weakref.finalize rather than __del__: it runs once, also at interpreter exit, and
        # does not keep the Store alive through reference cycles. It holds the handle, not
        # the Store.
        self._free = weakref.finalize(self, _store_free, handle)

    @classmethod
    def open(cls, uri: Optional[str] = None) -> "Store":
        """Open the store at ``uri`` (``dir:/path``, ``btrfs:/path``, ``zfs:pool/ds``), or the
        default store for ``None``. Store options follow as ``?option=value&...`` and are
        passed to the library as written: ``accel``, ``qemu``, ``spice``, ``spice_addr``,
        ``spice_ports``, ``serial_log_kib``, ``zone``, ``uid_base``, ``uid_count``,
        ``template_dir``, ``runtime_dir``, ``net`` (``isolated`` or ``user``) and each
        driver's own (``clone``, ``max_disk_gib``, ...)."""
        out = _c.c_void_p()
        _store_open(_arg(uri, "uri"), _c.byref(out))
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
            self._h = None
            self._free()

    @contextlib.contextmanager
    def _use(self) -> Any:
        with self._lock:
            if self._closing or self._h is None:
                raise Closed("store is closed")
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

    def info(self) -> Dict[str, Any]:
        """The store's ``uri``, ``driver``, ``catalog``, ``details``, ``limits``,
        ``last_recovery``, ``version``, ``capabilities`` (a dict: details and capabilities
        differ per driver)."""
        with self._use() as h:
            info: Dict[str, Any] = _json_out(lambda out: _store_info(h, out))
        return info

    def recover(self) -> Dict[str, Any]:
        """Clean up after operations whose process died: ``{"cleaned", "errors", "kept"}``."""
        with self._use() as h:
            done: Dict[str, Any] = _json_out(lambda out: _store_recover(h, out))
        return done

    def host_start(self) -> Dict[str, Any]:
        """After the host booted: recover, start the VMs marked to run, wake what
        ``host_stop`` suspended (a pool's desktop waits for its owner), refill every pool.
        ``{"recovered", "started", "woken", "asleep", "refilled", "suspended", "ended",
        "errors"}``."""
        with self._use() as h:
            done: Dict[str, Any] = _json_out(lambda out: _host_start(h, out))
        return done

    def host_stop(self) -> Dict[str, Any]:
        """Before the host shuts down: suspend every VM that runs, end the spares. The same
        keys as ``host_start``."""
        with self._use() as h:
            done: Dict[str, Any] = _json_out(lambda out: _host_stop(h, out))
        return done

    def import_image(self, path: Union[str, "os.PathLike[str]"], *, progress: Optional[Callable[[int, int], bool]] = None,
                     **manifest: Any) -> Image:
        """Import a raw or qcow2 file. Keywords: name, version, os, sha256, uuid, format,
        size_bytes, tags. ``progress(done, total)`` returning False cancels (raises
        :class:`Cancelled`)."""
        _refuse_unknown(manifest, _IMPORT_KEYS, "manifest")
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
        p, m = _arg(os.fspath(path), "path"), _payload(manifest, "manifest")
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

    def image(self, image: Union[str, Image]) -> Image:
        u = _uuid(image)
        with self._use() as h:
            return Image.from_json(_json_out(lambda out: _image_get(h, u, out)))

    def delete_image(self, image: Union[str, Image]) -> None:
        u = _uuid(image)
        with self._use() as h:
            _image_delete(h, u)

    def create_vm(self, *, alias: str, owner: str, image: Union[str, Image], vcpus: int, ram_mib: int,
                  disk_gib: Optional[int] = None, uuid: Optional[str] = None, firmware: Optional[str] = None,
                  accel: Optional[str] = None, cpu_cap_pct: Optional[int] = None,
                  memory_cap_mib: Optional[int] = None, io: Optional[Dict[str, int]] = None,
                  prealloc: Optional[bool] = None, user: Optional[Dict[str, Any]] = None) -> Vm:
        """Create a VM whose disk is a copy-on-write clone of ``image``. Optional: ``disk_gib``
        (the image's size), ``uuid``, ``firmware`` (``"bios"``, ``"uefi"``), ``accel``
        (``"auto"``, ``"kvm"``, ``"tcg"``; the store's), caps ``cpu_cap_pct``,
        ``memory_cap_mib``, ``io`` (``{"read_bps", "write_bps", "read_iops", "write_iops"}``)
        and ``prealloc``; ``user``, the person it is for (``{"login", "full_name",
        "password_hash", "ssh_keys", "locale", "keyboard", "timezone"}``). ``None`` leaves a key
        out (the library's default)."""
        optional = {"disk_gib": disk_gib, "uuid": uuid, "firmware": firmware, "accel": accel,
                    "cpu_cap_pct": cpu_cap_pct, "memory_cap_mib": memory_cap_mib, "io": io,
                    "prealloc": prealloc, "user": user}
        payload: Dict[str, Any] = {"alias": alias, "owner": owner,
                                   "image_uuid": image.uuid if isinstance(image, Image) else image,
                                   "vcpus": vcpus, "ram_mib": ram_mib}
        payload.update({k: v for k, v in optional.items() if v is not None})
        p = _payload(payload, "payload")
        with self._use() as h:
            return Vm.from_json(_json_out(lambda out: _vm_create(h, p, out)))

    def vm(self, vm: Union[str, Vm]) -> Vm:
        u = _uuid(vm)
        with self._use() as h:
            return Vm.from_json(_json_out(lambda out: _vm_get(h, u, out)))

    def vms(self, owner: Optional[str] = None) -> List[Vm]:
        o = _arg(owner, "owner")
        with self._use() as h:
            return [Vm.from_json(d) for d in _json_out(lambda out: _vm_list(h, o, out))]

    def delete_vm(self, vm: Union[str, Vm]) -> None:
        u = _uuid(vm)
        with self._use() as h:
            _vm_delete(h, u)

    def _vm(self, vm: Union[str, Vm], call: Callable[..., int], *args: Any) -> Vm:
        u = _uuid(vm)
        with self._use() as h:
            return Vm.from_json(_json_out(lambda out: call(h, u, *args, out)))

    def start_vm(self, vm: Union[str, Vm], *, accel: Optional[str] = None) -> Vm:
        """Start a VM (QEMU under its supervisor, detached from this process); ``accel``:
        ``"kvm"``, ``"tcg"`` or ``"auto"`` for this run. Raises :class:`AlreadyRunning`."""
        opts = _payload({"accel": accel}, "options") if accel is not None else None
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
        """Continue a paused VM, or wake a suspended one where it was."""
        return self._vm(vm, _vm_resume)

    def suspend_vm(self, vm: Union[str, Vm], reason: Optional[str] = None) -> Vm:
        """Put a VM to sleep: its memory and devices saved to the store, its QEMU ended
        (state ``"suspended"``); a start or resume wakes it where it was."""
        return self._vm(vm, _vm_suspend, _arg(reason, "reason"))

    def update_vm(self, vm: Union[str, Vm], **changes: int) -> Vm:
        """Change a stopped VM's ``vcpus``, ``ram_mib``, ``disk_gib`` (the disk only grows)."""
        _refuse_unknown(changes, _VM_UPDATE_KEYS, "VM update")
        return self._vm(vm, _vm_update, _payload(changes, "update"))

    def vm_status(self, vm: Union[str, Vm]) -> VmStatus:
        """The VM (live state), its current run (``None`` when it does not run), ``uptime_s``
        and the path of its ``serial_log``."""
        u = _uuid(vm)
        with self._use() as h:
            return VmStatus.from_json(_json_out(lambda out: _vm_status(h, u, out)))

    def vm_stats(self, vm: Union[str, Vm]) -> VmStats:
        """What the VM uses now (CPU time, memory, each drive's I/O): counters to sample
        twice and divide. Changes nothing and waits at most half a second for QEMU."""
        u = _uuid(vm)
        with self._use() as h:
            return VmStats.from_json(_json_out(lambda out: _vm_stats(h, u, out)))

    def vm_log(self, vm: Union[str, Vm], *, max_bytes: int = 65536) -> str:
        """The end of the VM's serial console log."""
        u = _uuid(vm)
        with self._use() as h:
            return _text_out(lambda out: _vm_log(h, u, int(max_bytes), out))

    def console(self, vm: Union[str, Vm], *, ttl: int = 600) -> Console:
        """A SPICE console ticket valid for ``ttl`` seconds (a fresh password each time)."""
        u = _uuid(vm)
        with self._use() as h:
            return Console.from_json(_json_out(lambda out: _vm_console(h, u, int(ttl), out)))

    def screenshot(self, vm: Union[str, Vm], path: Union[str, "os.PathLike[str]"]) -> None:
        """Save the VM's screen as a PNG file."""
        u, p = _uuid(vm), _arg(os.fspath(path), "path")
        with self._use() as h:
            _vm_screenshot(h, u, p)

    def create_pool(self, *, name: str, image: Union[str, Image], vcpus: int, ram_mib: int, max_vms: int,
                    **opts: Any) -> Pool:
        """Create a pool. Keywords: disk_gib, spares, max_per_owner, warmth ("disk", "paused",
        "template"), on_release ("destroy", "reset"), on_logout ("keep", "refresh"), ready_marker, ready_delay_s,
        ready_timeout_s, accel, home_gib (each owner's home volume), idle_suspend_after_s (suspend a desktop nobody looked at for that long),
        max_session_s (end a desktop's session after that long: on_logout keep suspends it, refresh releases it); ``None`` leaves one out (its default). Spares are made by
        :meth:`refill`."""
        _refuse_unknown(opts, _POOL_CREATE_KEYS, "pool")
        payload: Dict[str, Any] = {"name": name, "image_uuid": image.uuid if isinstance(image, Image) else image,
                                   "vcpus": vcpus, "ram_mib": ram_mib, "max_vms": max_vms}
        payload.update({k: v for k, v in opts.items() if v is not None})
        p = _payload(payload, "payload")
        with self._use() as h:
            return Pool.from_json(_json_out(lambda out: _pool_create(h, p, out)))

    def pools(self) -> List[Pool]:
        with self._use() as h:
            return [Pool.from_json(d) for d in _json_out(lambda out: _pool_list(h, out))]

    def pool(self, name: str) -> Pool:
        n = _arg(name, "name")
        with self._use() as h:
            return Pool.from_json(_json_out(lambda out: _pool_get(h, n, out)))

    def update_pool(self, name: str, **changes: Any) -> Pool:
        """Change a pool: any create keyword except name (``image`` an uuid or Image, or
        ``image_uuid``); ``disk_gib``, ``ready_marker`` and ``accel`` may be None (back to
        the default)."""
        if "image" in changes:
            img = changes.pop("image")
            changes["image_uuid"] = img.uuid if isinstance(img, Image) else img
        _refuse_unknown(changes, _POOL_UPDATE_KEYS, "pool")
        n, c = _arg(name, "name"), _payload(changes, "changes")
        with self._use() as h:
            return Pool.from_json(_json_out(lambda out: _pool_update(h, n, c, out)))

    def delete_pool(self, name: str) -> None:
        """Delete a pool with its spares; raises :class:`InUse` while owners hold VMs of it."""
        n = _arg(name, "name")
        with self._use() as h:
            _pool_delete(h, n)

    def acquire(self, pool: str, *, owner: str, console_ttl: Optional[int] = None,
                another: bool = False, user: Optional[Dict[str, Any]] = None) -> Acquired:
        """A running VM of ``pool`` for ``owner``: theirs if they hold one (never a second), else
        a spare, else a new one; ``another=True`` hands out one more up to the pool's
        ``max_per_owner``. ``console_ttl`` also makes a console ticket; ``user`` (as in
        :meth:`create_vm`) is applied in a newly handed-out desktop. Raises
        :class:`PoolExhausted` at the pool's maximum."""
        opts: Dict[str, Any] = {}
        if console_ttl is not None:
            opts["console_ttl"] = int(console_ttl)
        if another:
            opts["another"] = True
        if user is not None:
            opts["user"] = user
        n, o = _arg(pool, "pool"), _arg(owner, "owner")
        b = _payload(opts, "options") if opts else None
        with self._use() as h:
            return Acquired.from_json(_json_out(lambda out: _pool_acquire(h, n, o, b, out)))

    def release(self, vm: Union[str, Vm]) -> None:
        """Give a VM back to its pool (destroyed, or reset to a fresh spare, per the pool)."""
        u = _uuid(vm)
        with self._use() as h:
            _pool_release(h, u)

    def logout(self, owner: str) -> Dict[str, Any]:
        """The owner logged out: each pool's ``on_logout`` keeps their desktop or releases it
        for a fresh one next time (their home stays). ``{"kept": [...], "refreshed": [...]}``."""
        o = _arg(owner, "owner")
        with self._use() as h:
            done: Dict[str, Any] = _json_out(lambda out: _pool_logout(h, o, out))
        return done

    def refill(self, pool: str, *, parallel: Optional[int] = None,
               progress: Optional[Callable[[int, int, int], bool]] = None) -> RefillReport:
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
        b = _payload({"parallel": int(parallel)}, "options") if parallel is not None else None
        with self._use() as h:
            d = _json_out(lambda out: _pool_refill(h, n, b, c_cb, None, out))
        if errors:
            raise errors[0]
        return RefillReport.from_json(d)

    def create_home(self, owner: str, size_bytes: int) -> Home:
        """Make ``owner``'s home volume (at least 64 MiB); raises :class:`AlreadyExists` if
        they have one. Pools with ``home_gib`` make one on an owner's first acquire."""
        o = _arg(owner, "owner")
        with self._use() as h:
            return Home.from_json(_json_out(lambda out: _home_create(h, o, int(size_bytes), out)))

    def home(self, owner: str) -> Home:
        o = _arg(owner, "owner")
        with self._use() as h:
            return Home.from_json(_json_out(lambda out: _home_get(h, o, out)))

    def homes(self) -> List[Home]:
        with self._use() as h:
            return [Home.from_json(d) for d in _json_out(lambda out: _home_list(h, out))]

    def resize_home(self, owner: str, size_bytes: int) -> Home:
        """Grow ``owner``'s home (never shrinks); raises :class:`InUse` while a running VM has it."""
        o = _arg(owner, "owner")
        with self._use() as h:
            return Home.from_json(_json_out(lambda out: _home_resize(h, o, int(size_bytes), out)))

    def delete_home(self, owner: str) -> None:
        """Delete ``owner``'s home and everything on it; raises :class:`InUse` while a running
        VM has it. Nothing else ever deletes a home."""
        o = _arg(owner, "owner")
        with self._use() as h:
            _home_delete(h, o)
