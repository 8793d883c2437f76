/*
 * The C ABI from C: compiled with `cc` against include/vmpool.h and linked with the cdylib
 * (make test-c). Covers every exported function, its success path and its error codes, the
 * same codes the Rust API and the CLI give. Usage: api_test STORE_DIR [BOOTABLE_IMAGE]
 * (with the image, a VM is also started, ticketed, paused, resumed and stopped).
 */
#define _GNU_SOURCE
#include "vmpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__,    \
                    __LINE__, #cond, vmpool_last_error());                            \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define EXPECT(call, code)                                                            \
    do {                                                                              \
        vmpool_result r_ = (call);                                                    \
        if (r_ != (code)) {                                                           \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__,     \
                    __LINE__, #call, vmpool_result_name(r_), vmpool_result_name(code), \
                    vmpool_last_error());                                             \
            failures++;                                                               \
        }                                                                             \
    } while (0)

/* A sparse 64 MiB raw image with some data. */
static void make_image(const char *path) {
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0 || ftruncate(fd, 64 << 20) != 0) {
        perror(path);
        exit(2);
    }
    char buf[4096];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(i * 7 + 1);
    if (pwrite(fd, buf, sizeof buf, 0) != sizeof buf || pwrite(fd, buf, sizeof buf, 32 << 20) != sizeof buf) {
        perror("pwrite");
        exit(2);
    }
    close(fd);
}

/* Pull "key":"value" out of a JSON string (enough for the flat records we get back). */
static void json_str(const char *json, const char *key, char *out, size_t n) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    out[0] = 0;
    if (!p) return;
    p += strlen(pat);
    size_t i = 0;
    while (p[i] && p[i] != '"' && i + 1 < n) {
        out[i] = p[i];
        i++;
    }
    out[i] = 0;
}

static int count(const char *haystack, const char *needle) {
    int c = 0;
    for (const char *p = strstr(haystack, needle); p; p = strstr(p + 1, needle)) c++;
    return c;
}

static int progress_calls;
static int cancel_after_two(void *userdata, uint64_t done, uint64_t total) {
    (void)done;
    (void)total;
    CHECK(userdata == &progress_calls);
    return ++progress_calls > 2;
}

static void *thread_error(void *arg) {
    /* The last error is per thread: a failure here does not show on the main thread. */
    vmpool_store *store = arg;
    char *out = NULL;
    EXPECT(vmpool_image_get(store, "00000000-0000-4000-8000-000000000000", &out), VMPOOL_RESULT_NOT_FOUND);
    CHECK(strstr(vmpool_last_error(), "not found") != NULL);
    return NULL;
}

/* Freeing a store while another thread is inside a call on it (issue 9): the call must
 * finish normally, on memory that is still the store's (valgrind and ASan check that). */
struct race {
    vmpool_store *store;
    const char *image;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in_call, freed, rc;
    char *manifest;
};

static int race_progress(void *userdata, uint64_t done, uint64_t total) {
    (void)done;
    (void)total;
    struct race *r = userdata;
    pthread_mutex_lock(&r->mu);
    if (!r->in_call) {
        r->in_call = 1;
        pthread_cond_broadcast(&r->cv);
        while (!r->freed) pthread_cond_wait(&r->cv, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static void *race_import(void *arg) {
    struct race *r = arg;
    r->rc = vmpool_image_import_with_progress(r->store, r->image, "{\"name\":\"racing\"}",
                                              race_progress, r, &r->manifest);
    return NULL;
}

static void free_during_call(const char *uri, const char *image) {
    struct race r = {0};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    r.image = image;
    EXPECT(vmpool_store_open(uri, &r.store), VMPOOL_RESULT_OK);
    pthread_t t;
    pthread_create(&t, NULL, race_import, &r);
    pthread_mutex_lock(&r.mu);
    while (!r.in_call) pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    vmpool_store_free(r.store); /* the import is in flight on the other thread */
    pthread_mutex_lock(&r.mu);
    r.freed = 1;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    pthread_join(t, NULL);
    CHECK(r.rc == VMPOOL_RESULT_OK);
    CHECK(r.manifest != NULL && strstr(r.manifest, "\"racing\"") != NULL);
    vmpool_string_free(r.manifest);
}

/* Running a VM through the C ABI: start (TCG), status, console ticket, pause, resume, log,
 * stop; and the refusals. */
static void run_vm(const char *dir, const char *bootable) {
    char uri[4200], payload[512], uuid[64], image_uuid[64];
    snprintf(uri, sizeof uri, "dir:%s/run-store?accel=tcg", dir);
    vmpool_store *store;
    EXPECT(vmpool_store_open(uri, &store), VMPOOL_RESULT_OK);
    char *m = NULL, *vm = NULL, *out = NULL;
    EXPECT(vmpool_image_import(store, bootable, NULL, &m), VMPOOL_RESULT_OK);
    json_str(m, "uuid", image_uuid, sizeof image_uuid);
    snprintf(payload, sizeof payload,
             "{\"alias\":\"c-vm\",\"owner\":\"c\",\"image_uuid\":\"%s\",\"vcpus\":1,\"ram_mib\":256}",
             image_uuid);
    EXPECT(vmpool_vm_create(store, payload, &vm), VMPOOL_RESULT_OK);
    json_str(vm, "uuid", uuid, sizeof uuid);

    EXPECT(vmpool_vm_console(store, uuid, 60, &out), VMPOOL_RESULT_INVALID_STATE);
    EXPECT(vmpool_vm_start(store, uuid, "{\"colour\":1}", NULL), VMPOOL_RESULT_INVALID_JSON);
    EXPECT(vmpool_vm_start(store, "00000000-0000-4000-8000-000000000000", NULL, NULL), VMPOOL_RESULT_NOT_FOUND);
    EXPECT(vmpool_vm_start(store, NULL, NULL, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_vm_start(store, uuid, "{\"accel\":\"tcg\"}", &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, "\"state\":\"running\"") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_vm_start(store, uuid, NULL, NULL), VMPOOL_RESULT_ALREADY_RUNNING);
    EXPECT(vmpool_vm_status(store, uuid, &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, "\"qemu_pid\":") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_vm_stats(store, uuid, &out), VMPOOL_RESULT_OK);
    /* A number, not null, while it runs. */
    CHECK(out && strstr(out, "\"cpu_time_us\":") != NULL && strstr(out, "\"cpu_time_us\":null") == NULL &&
          strstr(out, "\"rss_bytes\":") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_vm_stats(store, uuid, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_vm_stats(NULL, uuid, &out), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_vm_stats(store, "vm", &out), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_vm_console(store, uuid, 0, &out), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_vm_console(store, uuid, 600, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_vm_console(store, uuid, 600, &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, "\"password\":\"") != NULL && strstr(out, "[virt-viewer]") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_vm_pause(store, uuid, &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, "\"state\":\"paused\"") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_vm_resume(store, uuid, NULL), VMPOOL_RESULT_OK);
    EXPECT(vmpool_vm_update(store, uuid, "{\"vcpus\":2}", NULL), VMPOOL_RESULT_INVALID_STATE);
    /* The guest boots; its log fills. */
    int seen = 0;
    for (int i = 0; i < 600 && !seen; i++) {
        EXPECT(vmpool_vm_log(store, uuid, 1 << 20, &out), VMPOOL_RESULT_OK);
        seen = out && strstr(out, "VMPOOL-TEST-GUEST: ready") != NULL;
        vmpool_string_free(out);
        if (!seen) usleep(200000);
    }
    CHECK(seen);
    /* Asleep and awake: the state saved to the store, QEMU gone; a resume wakes it. */
    EXPECT(vmpool_vm_suspend(store, NULL, NULL, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_vm_suspend(store, uuid, "a\x01b", NULL), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_vm_suspend(store, uuid, NULL, &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, "\"state\":\"suspended\"") != NULL && strstr(out, "\"reason\":\"on request\"") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_vm_suspend(store, uuid, "idle", NULL), VMPOOL_RESULT_INVALID_STATE);
    EXPECT(vmpool_vm_resume(store, uuid, &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, "\"state\":\"running\"") != NULL && strstr(out, "\"suspended\":null") != NULL);
    CHECK(strstr(out, "\"autoboot\":true") != NULL);
    vmpool_string_free(out);
    /* A host's reboot: stop suspends it, start wakes it (it belongs to no pool). */
    EXPECT(vmpool_host_stop(NULL, &out), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_host_stop(store, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_host_stop(store, &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, uuid) != NULL && strstr(out, "\"errors\":[]") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_host_start(store, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_host_start(store, &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, "\"woken\":[\"") != NULL && strstr(out, "\"errors\":[]") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_vm_stop(store, uuid, 60, &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, "\"state\":\"stopped\"") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_vm_update(store, uuid, "{\"vcpus\":2,\"disk_gib\":2}", &out), VMPOOL_RESULT_OK);
    CHECK(out && strstr(out, "\"vcpus\":2") != NULL);
    vmpool_string_free(out);
    EXPECT(vmpool_vm_delete(store, uuid), VMPOOL_RESULT_OK);
    vmpool_string_free(m);
    vmpool_string_free(vm);
    vmpool_store_free(store);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s STORE_DIR [BOOTABLE_IMAGE]\n", argv[0]);
        return 2;
    }
    char uri[4200], img[4200];
    snprintf(uri, sizeof uri, "dir:%s/store?clone=qcow2&max_disk_gib=100", argv[1]);
    snprintf(img, sizeof img, "%s/image.raw", argv[1]);
    make_image(img);

    /* The header's version macros are the library's version. */
    char version[64];
    snprintf(version, sizeof version, "%d.%d.%d", VMPOOL_VERSION_MAJOR, VMPOOL_VERSION_MINOR,
             VMPOOL_VERSION_PATCH);
    CHECK(strcmp(vmpool_version(), version) == 0);
    /* vmpool_result is a fixed-width type. */
    CHECK(sizeof(vmpool_result) == 4);
    CHECK(strcmp(vmpool_result_name(VMPOOL_RESULT_IN_USE), "IN_USE") == 0);
    CHECK(strcmp(vmpool_result_name(9999), "UNKNOWN") == 0);

    /* Store: bad arguments first. */
    vmpool_store *store = (vmpool_store *)0x1; /* must stay untouched on failure */
    EXPECT(vmpool_store_open(uri, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_store_open("nfs:/x", &store), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_store_open("dir:relative/path", &store), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_store_open("\xff\xfe", &store), VMPOOL_RESULT_INVALID_UTF8);
    EXPECT(vmpool_store_open("dir:/tmp?colour=blue", &store), VMPOOL_RESULT_INVALID_ARGUMENT);
    char *huge = malloc(1 << 21);
    memset(huge, 'a', (1 << 21) - 1);
    huge[(1 << 21) - 1] = 0;
    EXPECT(vmpool_store_open(huge, &store), VMPOOL_RESULT_STRING_TOO_LONG);
    CHECK(store == (vmpool_store *)0x1);
    EXPECT(vmpool_store_open(uri, &store), VMPOOL_RESULT_OK);
    CHECK(strcmp(vmpool_last_error(), "") == 0);
    char race_uri[4200];
    snprintf(race_uri, sizeof race_uri, "dir:%s/race-store?clone=qcow2", argv[1]);
    free_during_call(race_uri, img);

    char *info = NULL;
    EXPECT(vmpool_store_info(store, &info), VMPOOL_RESULT_OK);
    CHECK(info && strstr(info, "\"driver\":\"dir\""));
    vmpool_string_free(info);
    EXPECT(vmpool_store_info(NULL, &info), VMPOOL_RESULT_NULL_POINTER);
    char *rec = NULL;
    EXPECT(vmpool_store_recover(store, &rec), VMPOOL_RESULT_OK);
    CHECK(rec && strstr(rec, "\"cleaned\":[]"));
    vmpool_string_free(rec);

    /* Images. */
    char *manifest = (char *)0x1;
    EXPECT(vmpool_image_import(NULL, img, NULL, &manifest), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_image_import(store, NULL, NULL, &manifest), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_image_import(store, img, NULL, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_image_import(store, img, "{\"name\":", &manifest), VMPOOL_RESULT_INVALID_JSON);
    EXPECT(vmpool_image_import(store, img, "{\"colour\":1}", &manifest), VMPOOL_RESULT_INVALID_JSON);
    CHECK(strstr(vmpool_last_error(), "colour") != NULL);
    EXPECT(vmpool_image_import(store, img, "{\"name\":\"a/b\"}", &manifest), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_image_import(store, "/nonexistent.raw", NULL, &manifest), VMPOOL_RESULT_NOT_FOUND);
    EXPECT(vmpool_image_import(store, img, "{\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\"}", &manifest),
           VMPOOL_RESULT_CHECKSUM_MISMATCH);
    progress_calls = 0;
    EXPECT(vmpool_image_import_with_progress(store, img, NULL, cancel_after_two, &progress_calls, &manifest), VMPOOL_RESULT_CANCELLED);
    CHECK(manifest == (char *)0x1);
    char *list = NULL;
    EXPECT(vmpool_image_list(store, &list), VMPOOL_RESULT_OK);
    CHECK(list && strcmp(list, "[]") == 0);
    vmpool_string_free(list);

    EXPECT(vmpool_image_import(store, img, "{\"name\":\"debian\",\"version\":\"12\",\"os\":\"linux\",\"tags\":{\"role\":\"desktop\"}}", &manifest),
           VMPOOL_RESULT_OK);
    char image_uuid[64];
    json_str(manifest, "uuid", image_uuid, sizeof image_uuid);
    CHECK(strlen(image_uuid) == 36);
    CHECK(strstr(manifest, "\"name\":\"debian\"") && strstr(manifest, "\"size_bytes\":67108864"));

    char *got = NULL;
    EXPECT(vmpool_image_get(store, image_uuid, &got), VMPOOL_RESULT_OK);
    CHECK(got && strcmp(got, manifest) == 0);
    vmpool_string_free(got);
    EXPECT(vmpool_image_get(store, "not-a-uuid", &got), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_image_get(store, "00000000-0000-4000-8000-000000000000", &got), VMPOOL_RESULT_NOT_FOUND);
    EXPECT(vmpool_image_get(store, image_uuid, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_image_list(store, &list), VMPOOL_RESULT_OK);
    CHECK(count(list, "\"uuid\"") == 1);
    vmpool_string_free(list);

    /* VMs. */
    char payload[512];
    char *vm = (char *)0x1;
    EXPECT(vmpool_vm_create(store, NULL, &vm), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_vm_create(store, "{", &vm), VMPOOL_RESULT_INVALID_JSON);
    snprintf(payload, sizeof payload, "{\"alias\":\"a\",\"owner\":\"o\",\"image_uuid\":\"%s\",\"vcpus\":0,\"ram_mib\":512}", image_uuid);
    EXPECT(vmpool_vm_create(store, payload, &vm), VMPOOL_RESULT_INVALID_ARGUMENT);
    snprintf(payload, sizeof payload, "{\"alias\":\"a\",\"owner\":\"o\",\"image_uuid\":\"%s\",\"vcpus\":1,\"ram_mib\":512,\"disk_gib\":101}", image_uuid);
    EXPECT(vmpool_vm_create(store, payload, &vm), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_vm_create(store, "{\"alias\":\"a\",\"owner\":\"o\",\"image_uuid\":\"00000000-0000-4000-8000-000000000000\",\"vcpus\":1,\"ram_mib\":512}", &vm),
           VMPOOL_RESULT_NOT_FOUND);
    CHECK(vm == (char *)0x1);

    char vm_uuid[3][64];
    const char *owners[3] = {"alice", "bob", "alice"};
    for (int i = 0; i < 3; i++) {
        snprintf(payload, sizeof payload, "{\"alias\":\"desk%d\",\"owner\":\"%s\",\"image_uuid\":\"%s\",\"vcpus\":2,\"ram_mib\":2048,\"disk_gib\":20}", i,
                 owners[i], image_uuid);
        EXPECT(vmpool_vm_create(store, payload, &vm), VMPOOL_RESULT_OK);
        json_str(vm, "uuid", vm_uuid[i], sizeof vm_uuid[i]);
        CHECK(strstr(vm, "\"state\":\"stopped\"") && strstr(vm, "\"disk_format\":\"qcow2\""));
        vmpool_string_free(vm);
    }
    EXPECT(vmpool_vm_list(store, NULL, &list), VMPOOL_RESULT_OK);
    CHECK(count(list, "\"alias\"") == 3);
    vmpool_string_free(list);
    EXPECT(vmpool_vm_list(store, "alice", &list), VMPOOL_RESULT_OK);
    CHECK(count(list, "\"alias\"") == 2 && !strstr(list, "bob"));
    vmpool_string_free(list);
    EXPECT(vmpool_vm_list(store, "bad owner!", &list), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_vm_get(store, vm_uuid[1], &got), VMPOOL_RESULT_OK);
    CHECK(strstr(got, "\"owner\":\"bob\""));
    vmpool_string_free(got);

    /* An image with VMs cannot go. */
    EXPECT(vmpool_image_delete(store, image_uuid), VMPOOL_RESULT_IN_USE);
    CHECK(strstr(vmpool_last_error(), vm_uuid[0]) != NULL);
    EXPECT(vmpool_image_delete(store, NULL), VMPOOL_RESULT_NULL_POINTER);

    /* The last error is per thread. */
    pthread_t t;
    pthread_create(&t, NULL, thread_error, store);
    pthread_join(t, NULL);
    CHECK(strcmp(vmpool_last_error(), "uuid is NULL") == 0);

    for (int i = 0; i < 3; i++) EXPECT(vmpool_vm_delete(store, vm_uuid[i]), VMPOOL_RESULT_OK);
    EXPECT(vmpool_vm_delete(store, vm_uuid[0]), VMPOOL_RESULT_NOT_FOUND);
    EXPECT(vmpool_vm_get(store, vm_uuid[0], &got), VMPOOL_RESULT_NOT_FOUND);
    EXPECT(vmpool_image_delete(store, image_uuid), VMPOOL_RESULT_OK);
    EXPECT(vmpool_image_delete(store, image_uuid), VMPOOL_RESULT_NOT_FOUND);

    /* Home volumes. */
    char *home = (char *)0x1;
    EXPECT(vmpool_home_create(NULL, "alice", 256u << 20, &home), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_home_create(store, NULL, 256u << 20, &home), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_home_create(store, "alice", 1u << 20, &home), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_home_create(store, "a/b", 256u << 20, &home), VMPOOL_RESULT_INVALID_ARGUMENT);
    CHECK(home == (char *)0x1);
    EXPECT(vmpool_home_create(store, "alice", 256u << 20, &home), VMPOOL_RESULT_OK);
    CHECK(home && strstr(home, "\"owner\":\"alice\"") && strstr(home, "\"attached_to\":null"));
    vmpool_string_free(home);
    EXPECT(vmpool_home_create(store, "alice", 256u << 20, NULL), VMPOOL_RESULT_ALREADY_EXISTS);
    EXPECT(vmpool_home_get(store, "alice", NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_home_get(store, "bob", &got), VMPOOL_RESULT_NOT_FOUND);
    EXPECT(vmpool_home_resize(store, "alice", 128u << 20, NULL), VMPOOL_RESULT_INVALID_ARGUMENT);
    EXPECT(vmpool_home_resize(store, "alice", 512u << 20, &got), VMPOOL_RESULT_OK);
    CHECK(got && strstr(got, "\"size_bytes\":536870912"));
    vmpool_string_free(got);
    EXPECT(vmpool_home_list(store, &list), VMPOOL_RESULT_OK);
    CHECK(count(list, "\"owner\"") == 1);
    vmpool_string_free(list);
    EXPECT(vmpool_home_delete(store, NULL), VMPOOL_RESULT_NULL_POINTER);
    EXPECT(vmpool_home_delete(store, "alice"), VMPOOL_RESULT_OK);
    EXPECT(vmpool_home_delete(store, "alice"), VMPOOL_RESULT_NOT_FOUND);

    vmpool_string_free(manifest);
    vmpool_string_free(NULL);
    vmpool_store_free(store);
    vmpool_store_free(NULL);
    free(huge);
    if (argc == 3) run_vm(argv[1], argv[2]);
    if (failures) {
        fprintf(stderr, "api_test: %d failure(s)\n", failures);
        return 1;
    }
    printf("api_test: all checks passed\n");
    return 0;
}
