"""The binding against docs/vmpool.schema.json, the JSON Schema generated from the C ABI's wire
types (tests/it/schema.rs checks the file against the types and the header): every key an entry
point accepts is a keyword of the matching method, and every key it writes is a field of the
matching dataclass. No guest, no store."""

import inspect
import json
from dataclasses import fields
from pathlib import Path

import pytest

import vmpool
from vmpool import Acquired, Console, Image, Pool, RefillReport, Store, Vm, VmStats, VmStatus

SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "vmpool.schema.json"


@pytest.fixture(scope="module")
def schema():
    if not SCHEMA.exists():
        pytest.skip(f"{SCHEMA} is not there (make schema writes it)")
    return json.loads(SCHEMA.read_text())


def keys(doc, s):
    """The property names of schema ``s``, following an array to its items and a $ref into $defs."""
    if s.get("type") == "array":
        s = s["items"]
    if "$ref" in s:
        s = doc["$defs"][s["$ref"].split("/")[-1]]
    return set(s["properties"])


def keywords(method, *, but=()):
    """The keyword parameters of ``method`` (``image`` stands for the key ``image_uuid``)."""
    params = inspect.signature(method).parameters.values()
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {"self"} - set(but)
    return {"image_uuid" if n == "image" else n for n in names}


# entry point -> the keys the binding sends for its JSON argument.
INPUTS = {
    "vmpool_image_import": lambda: vmpool._IMPORT_KEYS,
    "vmpool_vm_create": lambda: keywords(Store.create_vm),
    "vmpool_vm_start": lambda: keywords(Store.start_vm, but={"vm"}),
    "vmpool_vm_update": lambda: vmpool._VM_UPDATE_KEYS,
    "vmpool_pool_create": lambda: keywords(Store.create_pool, but={"opts"}) | vmpool._POOL_CREATE_KEYS,
    "vmpool_pool_update": lambda: vmpool._POOL_UPDATE_KEYS,
    "vmpool_pool_acquire": lambda: keywords(Store.acquire, but={"pool", "owner"}),
    "vmpool_pool_refill": lambda: keywords(Store.refill, but={"pool", "progress"}),
}

# entry point -> the dataclass its output becomes.
OUTPUTS = {
    "vmpool_image_get": Image, "vmpool_image_list": Image, "vmpool_image_import": Image,
    "vmpool_vm_get": Vm, "vmpool_vm_list": Vm, "vmpool_vm_create": Vm, "vmpool_vm_start": Vm, "vmpool_vm_suspend": Vm,
    "vmpool_vm_update": Vm, "vmpool_vm_status": VmStatus, "vmpool_vm_stats": VmStats, "vmpool_vm_console": Console,
    "vmpool_pool_get": Pool, "vmpool_pool_list": Pool, "vmpool_pool_create": Pool, "vmpool_pool_update": Pool,
    "vmpool_pool_acquire": Acquired, "vmpool_pool_refill": RefillReport,
}


def test_every_input_of_the_schema_is_covered(schema):
    with_input = {name for name, p in schema["entry_points"].items() if "input" in p}
    assert with_input == set(INPUTS), "an entry point with a JSON argument the binding does not know"


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_the_binding_sends_exactly_the_keys_the_library_accepts(schema, name):
    assert INPUTS[name]() == keys(schema, schema["entry_points"][name]["input"])


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_each_written_key_is_a_dataclass_field(schema, name):
    cls = OUTPUTS[name]
    assert {f.name for f in fields(cls)} - {"extra"} == keys(schema, schema["entry_points"][name]["output"])
