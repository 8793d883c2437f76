"""Open the store, import an image, create a VM, list VMs. Usage: python3 quickstart.py IMAGE"""
import os, sys
from vmpool import Store

with Store.open(os.environ.get("VMPOOL_STORE")) as store:
    image = store.import_image(sys.argv[1], name="debian", version="12", os="linux")
    vm = store.create_vm(alias="desk-1", owner="alice", image=image, vcpus=2, ram_mib=2048, disk_gib=20)
    print(f"created {vm.uuid} ({vm.clone_method}) from {image.uuid}")
    for v in store.vms(owner="alice"):
        print(v.alias, v.state, v.disk_gib, "GiB")
