# vmpool: build, test, install. `make help` lists the targets.
#
# The two set-up commands of the README:
#   sudo make demo    install what is needed, build, run the quick start on the default store
#   sudo make test    install what the tests need, build once, run every test suite

CARGO     ?= cargo
PREFIX    ?= /usr/local
LIBDIR    ?= $(PREFIX)/lib
INCLUDEDIR?= $(PREFIX)/include
DOCDIR    ?= $(PREFIX)/share/doc/vmpool
UNITDIR   ?= $(PREFIX)/lib/systemd/system
DESTDIR   ?=
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR     := $(firstword $(subst ., ,$(VERSION)))
# Tests and the demo use the dev profile (dependencies optimised, see Cargo.toml);
# install and bench use release.
DEBUG_DIR := target/debug
REL_DIR   := target/release
# What a program linking libvmpool.a statically needs besides it (rustc's native-static-libs).
LIBS_PRIVATE := $(shell pkg-config --libs libzfs libzfs_core 2>/dev/null) -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
# The bootable test guest (built and cached by the script the first time it is needed).
TEST_IMAGE = $(shell scripts/make-test-image)
# Build with ZFS when libzfs is installed (auto); CI sets VMPOOL_ZFS=1 so it cannot be left out.
export VMPOOL_ZFS ?= auto

.PHONY: help deps deps-demo build release header check-header check-lib-deps schema lint demo test test-rust test-c \
        test-desktop test-ruby test-python test-examples test-zfs test-zones-v2 install bench bench-smoke clean check-release \
        fuzz-smoke fuzz check-illumos portal test-portal

help:
	@sed -n 's/^## //p' Makefile

## deps          install everything the tests need (Debian 12; uses sudo when not root)
deps:
	scripts/install-deps --test

deps-demo:
	scripts/install-deps --demo

## build         library (rlib, .so, .a) and vmpoolctl, dev profile
build:
	$(CARGO) build --features cli --lib --bins --examples

release:
	$(CARGO) build --release --features cli --lib --bins

## header        regenerate include/vmpool.h with cbindgen
header:
	cbindgen --quiet --config cbindgen.toml --crate vmpool --output include/vmpool.h

## check-header  fail if include/vmpool.h is not what cbindgen generates now
check-header:
	@mkdir -p target
	cbindgen --quiet --config cbindgen.toml --crate vmpool --output target/vmpool.h.fresh
	@diff -u include/vmpool.h target/vmpool.h.fresh || { echo "include/vmpool.h is stale: run make header" >&2; exit 1; }

## lint          rustfmt, clippy and rustdoc with warnings as errors, header freshness,
##               a SAFETY comment per unsafe block, no failpoint in release artefacts
lint: check-header
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(MAKE) check-illumos
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --lib
	scripts/check-safety-comments
	$(MAKE) check-release
	$(MAKE) check-lib-deps

## schema        write docs/vmpool.schema.json anew from the wire types (tests/it/schema.rs checks it)
schema:
	VMPOOL_WRITE_SCHEMA=1 $(CARGO) test --test it schema::the_schema_file_is_what_the_wire_types_generate -- --exact || true
	$(CARGO) test --test it schema::

## check-lib-deps the library without the `cli` feature depends on none of the CLI's crates
check-lib-deps:
	@if $(CARGO) tree -e normal -p vmpool --prefix none | grep -E '^(clap|indicatif|comfy-table|signal-hook) '; then \
	   echo "the library depends on a crate of the CLI (above): keep it behind the cli feature" >&2; exit 1; fi
	@echo "library dependencies: none of the CLI's"

## check-illumos type-check the illumos zone module (libzonecfg) without linking it, and lint it
check-illumos:
	$(CARGO) check --features zones-typecheck --lib
	$(CARGO) clippy --features zones-typecheck --lib -- -D warnings

## check-release the release library and CLI contain no fault-injection code
check-release: release
	scripts/check-release-failpoints $(REL_DIR)/libvmpool.so $(REL_DIR)/libvmpool.a $(REL_DIR)/vmpoolctl

## demo          the quick start: import a generated image into the default store, clone VMs
demo: deps-demo build
	$(DEBUG_DIR)/examples/quickstart

## test          every suite: Rust (dir, xfs-reflink, btrfs), C, Ruby, Python, examples, ZFS in the guest, zones
##               on cgroup v2 in the guest, the portal in a browser, lint, a short fuzzing run, the benchmarks briefly
test: deps build lint fuzz-smoke test-rust test-desktop test-c test-ruby test-python test-examples test-zfs test-zones-v2 test-portal bench-smoke
	@echo "make test: all suites passed"

## test-rust     unit tests, the integration tests (tests/it) and the conformance suite on dir:,
##               XFS reflink and btrfs (loop devices); the zfs:: and desktop:: modules have their targets
test-rust:
	$(CARGO) test --lib --bins --examples -- --include-ignored
	$(CARGO) test --doc
	eval "$$(tests/env/setup)" && $(CARGO) test --test it --test conformance -- --include-ignored --skip zfs:: --skip desktop::

## test-desktop  the Xfce template built from Debian packages (scripts/build-image, cached), booted
##               from a clone under TCG: X on QXL, the panel, the grown disk, the guest agent
test-desktop:
	eval "$$(tests/env/setup)" && VMPOOL_DESKTOP_IMAGE=$$(scripts/build-image debian-12-xfce) \
	   $(CARGO) test --test it desktop:: -- --include-ignored --nocapture --test-threads=1

## test-c        the C API test, compiled against include/vmpool.h and the .so; plain, under
##               AddressSanitizer + UndefinedBehaviorSanitizer, and under valgrind memcheck
C_TEST = cc -std=c11 -Wall -Wextra -Werror -Iinclude tests/c/api_test.c -L$(DEBUG_DIR) -lvmpool \
	   -lpthread -Wl,-rpath,$(CURDIR)/$(DEBUG_DIR)
test-c: build
	@mkdir -p target/c
	ln -sf libvmpool.so $(DEBUG_DIR)/libvmpool.so.$(MAJOR)
	$(C_TEST) -g -o target/c/api_test
	$(C_TEST) -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	   -o target/c/api_test_asan
	rm -rf target/c/store && mkdir -p target/c/store && target/c/api_test $(CURDIR)/target/c/store $(TEST_IMAGE)
	rm -rf target/c/store && mkdir -p target/c/store && \
	   ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	   target/c/api_test_asan $(CURDIR)/target/c/store $(TEST_IMAGE)
	rm -rf target/c/store && mkdir -p target/c/store && \
	   valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	   target/c/api_test $(CURDIR)/target/c/store $(TEST_IMAGE)

## test-ruby     minitest suite of bindings/ruby against the freshly built .so
test-ruby: build
	VMPOOL_LIB=$(CURDIR)/$(DEBUG_DIR)/libvmpool.so VMPOOL_TEST_IMAGE=$(TEST_IMAGE) \
	   ruby -Ibindings/ruby/lib -Ibindings/ruby/test \
	   -e 'Dir["bindings/ruby/test/*_test.rb"].sort.each { |f| require File.expand_path(f) }'

## test-python   pytest suite of bindings/python against the freshly built .so
test-python: build
	VMPOOL_LIB=$(CURDIR)/$(DEBUG_DIR)/libvmpool.so VMPOOL_TEST_IMAGE=$(TEST_IMAGE) PYTHONPATH=bindings/python \
	   python3 -m pytest -q bindings/python/tests

## test-examples the README's Ruby, Python and C examples, against an installed copy
test-examples: release
	scripts/test-examples

## test-zones-v2 the zone tests on cgroup v2, inside the guest harness (this host has v1)
test-zones-v2:
	scripts/test-zones-v2

## test-portal   the web portal (examples/portal): Rails tests and the browser end to end, on SQLite and PostgreSQL,
##               and the Xfce desktop in the browser (e2e/desktop.e2e.js; the image of scripts/build-image)
test-portal: release
	VMPOOL_LIB=$(CURDIR)/$(REL_DIR)/libvmpool.so scripts/test-portal

## portal        the web portal on http://127.0.0.1:3000/ (installs, builds, prepares a pool, prints the admin password)
portal:
	scripts/portal

## test-zfs      conformance and ZFS tests on a real OpenZFS pool inside a QEMU guest
test-zfs:
	scripts/test-zfs

## install       install libvmpool.so.$(MAJOR) (SONAME), libvmpool.a, vmpool.h, vmpool.pc, vmpoolctl,
##               the vmpool.service unit (host start at boot, host stop at shutdown) and its documentation
install: release
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 0644 docs/sessions.md $(DESTDIR)$(DOCDIR)/sessions.md
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@DOCDIR@|$(DOCDIR)|' dist/vmpool.service.in > $(DESTDIR)$(UNITDIR)/vmpool.service
	install -m 0755 $(REL_DIR)/libvmpool.so $(DESTDIR)$(LIBDIR)/libvmpool.so.$(VERSION)
	ln -sf libvmpool.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libvmpool.so.$(MAJOR)
	ln -sf libvmpool.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libvmpool.so
	install -m 0644 $(REL_DIR)/libvmpool.a $(DESTDIR)$(LIBDIR)/libvmpool.a
	install -m 0644 include/vmpool.h $(DESTDIR)$(INCLUDEDIR)/vmpool.h
	install -m 0755 $(REL_DIR)/vmpoolctl $(DESTDIR)$(PREFIX)/bin/vmpoolctl
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|; s|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|' \
	    bindings/c/vmpool.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/vmpool.pc

## bench         clone-latency benchmarks (library against the command line), writes BENCHMARKS.md
bench: deps
	scripts/bench

## bench-smoke   the same benchmarks for a few iterations (part of make test; writes target/bench/)
bench-smoke:
	VMPOOL_BENCH_SMOKE=1 scripts/bench

## fuzz-smoke    every fuzz target (fuzz/fuzz_targets/) for 45 s, one per core at a time, from the committed corpus (part of make test)
fuzz-smoke:
	scripts/fuzz smoke

## fuzz          every fuzz target to 10 million executions or 30 minutes, writes FUZZING.md
fuzz:
	scripts/fuzz long

clean:
	$(CARGO) clean
