/* Open the store, import an image, create a VM, list VMs. Usage: example IMAGE
 * Build: cc example.c $(pkg-config --cflags --libs vmpool) -o example */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmpool.h>

#define TRY(call) do { vmpool_result r = (call); if (r != VMPOOL_RESULT_OK) { \
    fprintf(stderr, "%s: %s\n", vmpool_result_name(r), vmpool_last_error()); exit(r); } } while (0)

int main(int argc, char **argv) {
    vmpool_store *store;
    char *image, *vm, *list, payload[256], uuid[37] = {0};
    if (argc != 2) { fprintf(stderr, "usage: %s IMAGE\n", argv[0]); return 64; }
    TRY(vmpool_store_open(getenv("VMPOOL_STORE"), &store));
    TRY(vmpool_image_import(store, argv[1], "{\"name\":\"debian\",\"version\":\"12\",\"os\":\"linux\"}", &image));
    memcpy(uuid, strstr(image, "\"uuid\":\"") + 8, 36);
    snprintf(payload, sizeof payload, "{\"alias\":\"desk-1\",\"owner\":\"alice\",\"image_uuid\":\"%s\","
             "\"vcpus\":2,\"ram_mib\":2048,\"disk_gib\":20}", uuid);
    TRY(vmpool_vm_create(store, payload, &vm));
    TRY(vmpool_vm_list(store, "alice", &list));
    printf("created %.80s...\nalice's VMs: %s\n", vm, list);
    vmpool_string_free(image); vmpool_string_free(vm); vmpool_string_free(list);
    vmpool_store_free(store);
    return 0;
}
