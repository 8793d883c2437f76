# frozen_string_literal: true

# Ruby binding of libvmpool (the C ABI in include/vmpool.h) through the ffi gem.
#
#   store = Vmpool::Store.open("dir:/var/lib/vmpool")
#   image = store.import_image("debian.qcow2", name: "debian", version: "12")
#   vm    = store.create_vm(alias: "desk", owner: "alice", image: image, vcpus: 2, ram_mib: 2048, disk_gib: 20)
#   store.vms(owner: "alice")   # => [{uuid: "...", alias: "desk", ...}]
#
# Results are plain Hashes with symbol keys, parsed from the library's JSON. Failures raise a
# subclass of Vmpool::Error named after the library's result code. Long calls release the GVL
# (attached with blocking: true), so other Puma threads keep running while they wait.
# A Store may be shared by threads.

require "ffi"
require "json"

module Vmpool
  # Where the shared library is looked for, in order: $VMPOOL_LIB, this gem's directory, the
  # system's library paths.
  def self.library_candidates
    here = File.expand_path("vmpool", __dir__)
    [ENV["VMPOOL_LIB"], File.join(here, "libvmpool.so"), File.join(here, "libvmpool.so.0"),
     "libvmpool.so.0", "libvmpool.so", "vmpool"].compact.reject(&:empty?)
  end

  # The raw C functions. Use Vmpool::Store instead.
  module Native
    extend FFI::Library

    tried = []
    loaded = Vmpool.library_candidates.any? do |candidate|
      ffi_lib candidate
      true
    rescue LoadError => e
      tried << "#{candidate} (#{e.message.lines.first.strip})"
      false
    end
    raise LoadError, "libvmpool not found; tried: #{tried.join('; ')}. Set VMPOOL_LIB to the path of libvmpool.so." unless loaded

    callback :progress_cb, %i[pointer uint64 uint64], :int
    callback :refill_cb, %i[pointer uint32 uint32 uint32], :int

    attach_function :vmpool_version, [], :string
    attach_function :vmpool_last_error, [], :string
    attach_function :vmpool_result_name, [:uint32], :string
    attach_function :vmpool_string_free, [:pointer], :void
    attach_function :vmpool_store_open, %i[string pointer], :uint32, blocking: true
    attach_function :vmpool_store_free, [:pointer], :void
    attach_function :vmpool_store_info, %i[pointer pointer], :uint32
    attach_function :vmpool_store_recover, %i[pointer pointer], :uint32, blocking: true
    attach_function :vmpool_host_start, %i[pointer pointer], :uint32, blocking: true
    attach_function :vmpool_host_stop, %i[pointer pointer], :uint32, blocking: true
    attach_function :vmpool_image_import_with_progress, %i[pointer string string progress_cb pointer pointer], :uint32, blocking: true
    attach_function :vmpool_image_list, %i[pointer pointer], :uint32
    attach_function :vmpool_image_get, %i[pointer string pointer], :uint32
    attach_function :vmpool_image_delete, %i[pointer string], :uint32, blocking: true
    attach_function :vmpool_vm_create, %i[pointer string pointer], :uint32, blocking: true
    attach_function :vmpool_vm_get, %i[pointer string pointer], :uint32
    attach_function :vmpool_vm_list, %i[pointer string pointer], :uint32
    attach_function :vmpool_vm_delete, %i[pointer string], :uint32, blocking: true
    attach_function :vmpool_vm_start, %i[pointer string string pointer], :uint32, blocking: true
    attach_function :vmpool_vm_stop, %i[pointer string uint32 pointer], :uint32, blocking: true
    attach_function :vmpool_vm_kill, %i[pointer string pointer], :uint32, blocking: true
    attach_function :vmpool_vm_reboot, %i[pointer string pointer], :uint32, blocking: true
    attach_function :vmpool_vm_pause, %i[pointer string pointer], :uint32, blocking: true
    attach_function :vmpool_vm_suspend, %i[pointer string string pointer], :uint32, blocking: true
    attach_function :vmpool_vm_resume, %i[pointer string pointer], :uint32, blocking: true
    attach_function :vmpool_vm_status, %i[pointer string pointer], :uint32
    attach_function :vmpool_vm_stats, %i[pointer string pointer], :uint32, blocking: true
    attach_function :vmpool_vm_update, %i[pointer string string pointer], :uint32, blocking: true
    attach_function :vmpool_vm_log, %i[pointer string uint64 pointer], :uint32
    attach_function :vmpool_vm_console, %i[pointer string uint32 pointer], :uint32, blocking: true
    attach_function :vmpool_vm_screenshot, %i[pointer string string], :uint32, blocking: true
    attach_function :vmpool_pool_create, %i[pointer string pointer], :uint32, blocking: true
    attach_function :vmpool_pool_list, %i[pointer pointer], :uint32
    attach_function :vmpool_pool_get, %i[pointer string pointer], :uint32
    attach_function :vmpool_pool_update, %i[pointer string string pointer], :uint32, blocking: true
    attach_function :vmpool_pool_delete, %i[pointer string], :uint32, blocking: true
    attach_function :vmpool_pool_acquire, %i[pointer string string string pointer], :uint32, blocking: true
    attach_function :vmpool_pool_release, %i[pointer string], :uint32, blocking: true
    attach_function :vmpool_pool_logout, %i[pointer string pointer], :uint32, blocking: true
    attach_function :vmpool_pool_refill, %i[pointer string string refill_cb pointer pointer], :uint32, blocking: true
    attach_function :vmpool_home_create, %i[pointer string uint64 pointer], :uint32, blocking: true
    attach_function :vmpool_home_get, %i[pointer string pointer], :uint32
    attach_function :vmpool_home_list, %i[pointer pointer], :uint32
    attach_function :vmpool_home_resize, %i[pointer string uint64 pointer], :uint32, blocking: true
    attach_function :vmpool_home_delete, %i[pointer string], :uint32, blocking: true
  end

  # Base of every error the library reports. #code is the vmpool_result number, #name its
  # symbolic name ("NOT_FOUND").
  class Error < StandardError
    attr_reader :code, :name

    def initialize(message = nil, code: nil, name: nil)
      super(message)
      @code = code
      @name = name
    end
  end

  # Errors of the caller's arguments.
  class ArgumentError < Error; end

  # The Store was closed (raised by the binding; there is no library code for it).
  class Closed < Error; end

  CODES = {
    1 => %i[NullPointer ArgumentError], 2 => %i[InvalidUtf8 ArgumentError],
    3 => %i[StringTooLong ArgumentError], 4 => %i[InvalidJson ArgumentError],
    5 => %i[InvalidArgument ArgumentError], 10 => %i[NotFound Error], 11 => %i[AlreadyExists Error],
    12 => %i[InUse Error], 13 => %i[NotAStore Error], 14 => %i[Busy Error], 15 => %i[Cancelled Error],
    16 => %i[InvalidState Error], 17 => %i[AlreadyRunning Error], 18 => %i[Timeout Error],
    19 => %i[PoolExhausted Error],
    20 => %i[ChecksumMismatch Error], 21 => %i[CorruptImage Error], 22 => %i[UnsupportedFormat Error],
    30 => %i[Unsupported Error], 31 => %i[IOError Error], 32 => %i[NoSpace Error],
    33 => %i[PermissionDenied Error], 34 => %i[Backend Error], 35 => %i[Hypervisor Error],
    40 => %i[Panic Error], 41 => %i[Internal Error]
  }.freeze

  ERROR_CLASSES = CODES.to_h do |code, (name, parent)|
    [code, const_set(name, Class.new(const_get(parent)))]
  end.freeze

  def self.version
    Native.vmpool_version
  end

  # Raise the exception for result +rc+ (a no-op for 0). Must run on the thread that made
  # the call: the library's last-error message is per thread.
  def self.check!(rc)
    return if rc.zero?

    message = Native.vmpool_last_error
    klass = ERROR_CLASSES.fetch(rc, Error)
    raise klass.new(message, code: rc, name: Native.vmpool_result_name(rc))
  end

  # Call a function whose last argument is a char ** out; returns the parsed JSON.
  def self.json_out
    out = FFI::MemoryPointer.new(:pointer)
    check!(yield(out))
    ptr = out.read_pointer
    begin
      JSON.parse(ptr.read_string.force_encoding(Encoding::UTF_8), symbolize_names: true)
    ensure
      Native.vmpool_string_free(ptr)
    end
  end

  # Owns a vmpool_store * and frees it when garbage collected (or on Store#close).
  class StoreHandle < FFI::AutoPointer
    def self.release(ptr)
      Native.vmpool_store_free(ptr)
    end
  end

  # An open store. Thread-safe; share one per process.
  #
  # Closing never frees the library's handle under a call in flight on another thread: the
  # handle is released when the last such call returns, and calls made after #close raise
  # Vmpool::Closed.
  class Store
    # Open the store at +uri+ (dir:/path, btrfs:/path, zfs:pool/dataset), or the default store
    # for nil. Store options follow as ?option=value&... and are passed to the library as
    # written: accel, qemu, spice, spice_addr, spice_ports, serial_log_kib, zone, uid_base,
    # uid_count, template_dir, runtime_dir, net (isolated or user) and each driver's own
    # (clone, max_disk_gib, ...). With a block, yields the store and closes it afterwards.
    def self.open(uri = nil)
      out = FFI::MemoryPointer.new(:pointer)
      Vmpool.check!(Native.vmpool_store_open(uri, out))
      store = new(StoreHandle.new(out.read_pointer))
      return store unless block_given?

      begin
        yield store
      ensure
        store.close
      end
    end

    def initialize(handle)
      @handle = handle
      @lock = Mutex.new
      @inflight = 0
      @closing = false
    end

    # Release the handle now instead of at garbage collection (once calls in flight on other
    # threads have returned). Further calls raise Vmpool::Closed.
    def close
      @lock.synchronize do
        @closing = true
        release_if_idle
      end
      nil
    end

    def closed?
      @closing
    end

    def info
      use { |h| Vmpool.json_out { |out| Native.vmpool_store_info(h, out) } }
    end

    def recover
      use { |h| Vmpool.json_out { |out| Native.vmpool_store_recover(h, out) } }
    end

    # After the host booted: recover, start the VMs marked to run, wake what host_stop
    # suspended (a pool's desktop waits for its owner), refill every pool. A Hash with
    # :recovered, :started, :woken, :asleep, :refilled, :suspended, :ended, :errors.
    def host_start
      use { |h| Vmpool.json_out { |out| Native.vmpool_host_start(h, out) } }
    end

    # Before the host shuts down: suspend every VM that runs, end the spares (the same keys).
    def host_stop
      use { |h| Vmpool.json_out { |out| Native.vmpool_host_stop(h, out) } }
    end

    # Import a raw or qcow2 file as an image. Keywords: name, version, os, sha256, uuid,
    # format, size_bytes, tags. With a block, it is called with (done, total) bytes as the
    # import goes; return false (or :cancel) from it to cancel (raises Vmpool::Cancelled).
    def import_image(path, **manifest, &progress)
      refuse_unknown(manifest, IMPORT_KEYS, "manifest")

      cb = nil
      if progress
        cb = proc do |_userdata, done, total|
          r = progress.call(done, total)
          r == false || r == :cancel ? 1 : 0
        end
      end
      use do |h|
        Vmpool.json_out do |out|
          Native.vmpool_image_import_with_progress(h, path.to_s, JSON.generate(manifest), cb, nil, out)
        end
      end
    end

    def images
      use { |h| Vmpool.json_out { |out| Native.vmpool_image_list(h, out) } }
    end

    def image(uuid)
      uuid = uuid_of(uuid)
      use { |h| Vmpool.json_out { |out| Native.vmpool_image_get(h, uuid, out) } }
    end

    def delete_image(uuid)
      uuid = uuid_of(uuid)
      use { |h| Vmpool.check!(Native.vmpool_image_delete(h, uuid)) }
      nil
    end

    # Create a VM. +image+ is an image uuid or an image Hash. Optional (nil leaves the key out,
    # for the library's default): +disk_gib+ (the image's size), +uuid+, +firmware+ ("bios",
    # "uefi"), +accel+ ("auto", "kvm", "tcg"; the store's), caps +cpu_cap_pct+,
    # +memory_cap_mib+, +io+ ({read_bps:, write_bps:, read_iops:, write_iops:}), +prealloc+;
    # +user+, the person it is for ({login:, full_name:, password_hash:, ssh_keys:, locale:,
    # keyboard:, timezone:}).
    def create_vm(alias:, owner:, image:, vcpus:, ram_mib:, disk_gib: nil, uuid: nil, firmware: nil, accel: nil,
                  cpu_cap_pct: nil, memory_cap_mib: nil, io: nil, prealloc: nil, user: nil)
      payload = { alias: binding.local_variable_get(:alias), owner: owner, image_uuid: uuid_of(image),
                  vcpus: vcpus, ram_mib: ram_mib }
      payload.merge!({ disk_gib: disk_gib, uuid: uuid, firmware: firmware, accel: accel, cpu_cap_pct: cpu_cap_pct,
                       memory_cap_mib: memory_cap_mib, io: io, prealloc: prealloc, user: user }.compact)
      use { |h| Vmpool.json_out { |out| Native.vmpool_vm_create(h, JSON.generate(payload), out) } }
    end

    def vm(uuid)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_get(h, u, out) }
    end

    # All VMs, or those of one owner, oldest first.
    def vms(owner: nil)
      use { |h| Vmpool.json_out { |out| Native.vmpool_vm_list(h, owner, out) } }
    end

    def delete_vm(uuid)
      uuid = uuid_of(uuid)
      use { |h| Vmpool.check!(Native.vmpool_vm_delete(h, uuid)) }
      nil
    end

    # Start a VM (QEMU under its supervisor, detached from this process). +accel+: "kvm",
    # "tcg" or "auto" for this run. Raises Vmpool::AlreadyRunning if it runs.
    def start_vm(uuid, accel: nil)
      opts = accel ? JSON.generate(accel: accel.to_s) : nil
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_start(h, u, opts, out) }
    end

    # ACPI shutdown, then kill after +timeout+ seconds. A VM that does not run: no error.
    def stop_vm(uuid, timeout: 60)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_stop(h, u, Integer(timeout), out) }
    end

    def kill_vm(uuid)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_kill(h, u, out) }
    end

    def reboot_vm(uuid)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_reboot(h, u, out) }
    end

    def pause_vm(uuid)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_pause(h, u, out) }
    end

    # Continue a paused VM, or wake a suspended one where it was.
    def resume_vm(uuid)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_resume(h, u, out) }
    end

    # Put a VM to sleep: memory and devices saved to the store, QEMU ended ("suspended").
    def suspend_vm(uuid, reason: nil)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_suspend(h, u, reason, out) }
    end

    # {vm: {...live state...}, run: {...} or nil, uptime_s:, serial_log:}
    def vm_status(uuid)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_status(h, u, out) }
    end

    # What a VM uses now: {cpu_time_us:, memory: {rss_bytes:, pss_bytes:, ...}, disks: [...], ...},
    # counters to sample twice and divide; nil/empty unless it runs. Waits at most 0.5 s for QEMU.
    def vm_stats(uuid)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_stats(h, u, out) }
    end

    # Change a stopped VM's vcpus, ram_mib, disk_gib (the disk only grows).
    def update_vm(uuid, **changes)
      refuse_unknown(changes, VM_UPDATE_KEYS, "VM update")
      body = JSON.generate(changes)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_update(h, u, body, out) }
    end

    # The end of the serial console log, as a String.
    def vm_log(uuid, max_bytes: 65_536)
      uuid = uuid_of(uuid)
      use do |h|
        out = FFI::MemoryPointer.new(:pointer)
        Vmpool.check!(Native.vmpool_vm_log(h, uuid, Integer(max_bytes), out))
        ptr = out.read_pointer
        begin
          ptr.read_string.force_encoding(Encoding::UTF_8)
        ensure
          Native.vmpool_string_free(ptr)
        end
      end
    end

    # A SPICE console ticket valid for +ttl+ seconds: {kind:, path: or host:/port:, uri:,
    # password:, expires_at:, expires_at_unix:, vv: (a remote-viewer file)}.
    def console(uuid, ttl: 600)
      ttl = Integer(ttl)
      vm_call(uuid) { |h, u, out| Native.vmpool_vm_console(h, u, ttl, out) }
    end

    # Save the VM's screen as a PNG file.
    def screenshot(uuid, path)
      uuid = uuid_of(uuid)
      use { |h| Vmpool.check!(Native.vmpool_vm_screenshot(h, uuid, path.to_s)) }
      nil
    end

    # The keys each JSON input of the C API takes (src/ffi/wire), besides those that are
    # arguments of their own. Checked here so that a misspelt keyword is an ::ArgumentError
    # naming it, as for any Ruby method; the library refuses unknown keys too (InvalidJson).
    IMPORT_KEYS = %i[uuid name version os sha256 format size_bytes tags].freeze
    VM_UPDATE_KEYS = %i[vcpus ram_mib disk_gib].freeze
    # vmpool_pool_update takes every create key except name; image_uuid is also said as image:.
    POOL_UPDATE_KEYS = %i[image_uuid vcpus ram_mib disk_gib spares max_vms max_per_owner warmth on_release
                          on_logout ready_marker ready_delay_s ready_timeout_s accel home_gib idle_suspend_after_s
                          max_session_s].freeze
    POOL_KEYS = (POOL_UPDATE_KEYS - [:image_uuid]).freeze # as earlier versions had it
    POOL_CREATE_KEYS = (POOL_UPDATE_KEYS - %i[image_uuid vcpus ram_mib max_vms]).freeze

    # Create a pool. +image+ is an image uuid or an image Hash. Keywords: disk_gib, spares,
    # max_per_owner, warmth ("disk", "paused" or "template"), on_release ("destroy" or
    # "reset"), on_logout ("keep" or "refresh"), ready_marker, ready_delay_s, ready_timeout_s, accel, home_gib (each owner's
    # home volume), idle_suspend_after_s (suspend a desktop nobody looked at for that long),
    # max_session_s (end a desktop's session after that long: on_logout keep suspends it,
    # refresh releases it);
    # nil leaves one out (its default). Spares are made by #refill.
    def create_pool(name:, image:, vcpus:, ram_mib:, max_vms:, **opts)
      refuse_unknown(opts, POOL_CREATE_KEYS, "pool")
      payload = { name: name, image_uuid: uuid_of(image),
                  vcpus: vcpus, ram_mib: ram_mib, max_vms: max_vms }.merge(opts.compact)
      use { |h| Vmpool.json_out { |out| Native.vmpool_pool_create(h, JSON.generate(payload), out) } }
    end

    def pools
      use { |h| Vmpool.json_out { |out| Native.vmpool_pool_list(h, out) } }
    end

    def pool(name)
      use { |h| Vmpool.json_out { |out| Native.vmpool_pool_get(h, name.to_s, out) } }
    end

    # Change a pool: any of the create keywords except name (image: an image uuid or Hash, or
    # image_uuid:). disk_gib:, ready_marker: and accel: may be nil to go back to the default.
    def update_pool(name, **changes)
      changes[:image_uuid] = uuid_of(changes.delete(:image)) if changes.key?(:image)
      refuse_unknown(changes, POOL_UPDATE_KEYS, "pool")

      body = JSON.generate(changes)
      use { |h| Vmpool.json_out { |out| Native.vmpool_pool_update(h, name.to_s, body, out) } }
    end

    # Delete a pool with its spares. Raises Vmpool::InUse while owners hold VMs of it.
    def delete_pool(name)
      use { |h| Vmpool.check!(Native.vmpool_pool_delete(h, name.to_s)) }
      nil
    end

    # A running VM of the pool for +owner+: the one they hold (never a second), else a spare,
    # else a new one. Returns {vm:, path: "redirect"|"spare"|"created", was:, steps:, total_ms:,
    # console: (with console_ttl:) or nil}. Raises Vmpool::PoolExhausted at the maximum.
    # +user:+ (as in create_vm) is applied in a newly handed-out desktop.
    def acquire(pool_name, owner:, console_ttl: nil, another: false, user: nil)
      opts = {}
      opts[:console_ttl] = Integer(console_ttl) if console_ttl
      opts[:another] = true if another
      opts[:user] = user if user
      body = opts.empty? ? nil : JSON.generate(opts)
      use do |h|
        Vmpool.json_out { |out| Native.vmpool_pool_acquire(h, pool_name.to_s, owner.to_s, body, out) }
      end
    end

    # Give a VM back to its pool (destroyed, or reset to a fresh spare, per the pool).
    def release(uuid)
      uuid = uuid_of(uuid)
      use { |h| Vmpool.check!(Native.vmpool_pool_release(h, uuid)) }
      nil
    end

    # The owner logged out: each pool's on_logout keeps their desktop or releases it for a
    # fresh one next time (their home stays). A Hash with :kept and :refreshed uuids.
    def logout(owner)
      use { |h| Vmpool.json_out { |out| Native.vmpool_pool_logout(h, owner, out) } }
    end

    # Bring the pool's spares to its target. With a block, it is called with (ready, target,
    # working) as it goes; return false (or :stop) from it to stop early. Returns {created:,
    # warmed:, removed:, template_built:, spares:, errors:}.
    def refill(pool_name, parallel: nil, &progress)
      body = parallel ? JSON.generate(parallel: Integer(parallel)) : nil
      cb = nil
      if progress
        cb = proc do |_userdata, ready, target, working|
          r = progress.call(ready, target, working)
          r == false || r == :stop ? 1 : 0
        end
      end
      use do |h|
        Vmpool.json_out { |out| Native.vmpool_pool_refill(h, pool_name.to_s, body, cb, nil, out) }
      end
    end

    # Make +owner+'s home volume of +size_bytes+ (at least 64 MiB). Raises
    # Vmpool::AlreadyExists if they have one; pools with home_gib make one on an owner's first
    # acquire. Returns {owner:, uuid:, size_bytes:, disk_format:, disk:, clone_method:,
    # created_at:, attached_to:}.
    def create_home(owner, size_bytes)
      use { |h| Vmpool.json_out { |out| Native.vmpool_home_create(h, owner.to_s, Integer(size_bytes), out) } }
    end

    def home(owner)
      use { |h| Vmpool.json_out { |out| Native.vmpool_home_get(h, owner.to_s, out) } }
    end

    def homes
      use { |h| Vmpool.json_out { |out| Native.vmpool_home_list(h, out) } }
    end

    # Grow +owner+'s home (never shrinks). Raises Vmpool::InUse while a running VM has it.
    def resize_home(owner, size_bytes)
      use { |h| Vmpool.json_out { |out| Native.vmpool_home_resize(h, owner.to_s, Integer(size_bytes), out) } }
    end

    # Delete +owner+'s home and everything on it. Raises Vmpool::InUse while a running VM has
    # it; nothing else ever deletes a home.
    def delete_home(owner)
      use { |h| Vmpool.check!(Native.vmpool_home_delete(h, owner.to_s)) }
      nil
    end

    private

    # An image or VM argument: its uuid, or the Hash the library returned for it.
    def uuid_of(obj)
      return obj.to_s unless obj.is_a?(Hash)

      obj.fetch(:uuid) { obj.fetch("uuid") { raise ::ArgumentError, "a Hash without :uuid given for an image or VM" } }.to_s
    end

    def refuse_unknown(given, allowed, what)
      unknown = given.keys - allowed
      raise ::ArgumentError, "unknown #{what} keys: #{unknown.join(', ')}" unless unknown.empty?
    end

    # A call on one VM (given as uuid or Hash) that returns JSON.
    def vm_call(uuid)
      uuid = uuid_of(uuid)
      use { |h| Vmpool.json_out { |out| yield h, uuid, out } }
    end

    # Run a call with the handle, counted as in flight so that #close cannot free it meanwhile.
    def use
      h = @lock.synchronize do
        raise Closed.new("store is closed", code: nil, name: "CLOSED") if @closing || @handle.nil?

        @inflight += 1
        @handle
      end
      begin
        yield h
      ensure
        @lock.synchronize do
          @inflight -= 1
          release_if_idle if @closing
        end
      end
    end

    # With @lock held.
    def release_if_idle
      return unless @inflight.zero? && @handle

      @handle.free
      @handle = nil
    end
  end
end
