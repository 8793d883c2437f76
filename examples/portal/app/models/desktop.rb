# frozen_string_literal: true

require "etc"
require "fileutils"

# The portal's gateway to the VMs in the vmpool store (through the Ruby gem; nothing here shells
# out). Every lookup on behalf of a user goes through find_owned, which returns a VM only when the
# store says that user owns it: the one place where "a user never sees another user's VM" is
# decided.
module Desktop
  UUID = /\A\h{8}-\h{4}-\h{4}-\h{4}-\h{12}\z/.freeze

  # Raised for a VM that does not exist or is not the caller's (the two are not told apart).
  class NotFound < StandardError; end

  module_function

  def store
    Portal.store
  end

  # The user's VMs (live state), oldest first.
  def for_user(user)
    return [] if user.owner.blank?

    store.vms(owner: user.owner)
  end

  # The VM +uuid+ if +user+ owns it, else nil.
  def find_owned(user, uuid)
    return nil unless uuid.is_a?(String) && uuid.match?(UUID) && user.owner.present?

    vm = store.vm(uuid)
    vm if vm[:owner] == user.owner
  rescue Vmpool::NotFound
    nil
  end

  def find_owned!(user, uuid)
    find_owned(user, uuid) || raise(NotFound, "no such desktop")
  end

  # Any VM (admin pages), or nil.
  def find_any(uuid)
    return nil unless uuid.is_a?(String) && uuid.match?(UUID)

    store.vm(uuid)
  rescue Vmpool::NotFound
    nil
  end

  # Where the VM's SPICE server listens right now ({kind: "unix", path:} or tcp {host:, port:}),
  # or nil when it does not run.
  def spice_addr(uuid)
    status = store.vm_status(uuid)
    run = status[:run]
    return nil unless run && %w[running paused].include?(status.dig(:vm, :state))

    spice = run[:spice]
    return nil unless spice

    spice[:kind] == "unix" ? { kind: "unix", path: spice[:path] } : { kind: "tcp", host: spice[:host], port: spice[:port] }
  rescue Vmpool::NotFound
    nil
  end

  # Get a desktop from +pool+ for +user+: the user's existing VM of that pool, or a spare, or a new
  # one (the library decides, atomically). +guest+ is the library's `user` object for a new
  # desktop (Portal::GuestUser). Returns the library's answer (vm, path, steps, console).
  def acquire(user, pool, guest = nil)
    r = store.acquire(pool, owner: user.owner, console_ttl: Portal.config.console_ttl, user: guest)
    Portal::Refiller.poke(pool)
    # Where an acquire spent its time, for whoever reads the log when one is slow.
    steps = Array(r[:steps]).map { |s| "#{s[:step]} #{s[:ms].to_f.round(1)}" }.join(", ")
    Rails.logger.info("acquire #{pool} for #{user.owner}: #{r[:path]} (#{r[:was]}) in " \
                      "#{r[:total_ms].to_f.round(1)} ms [#{steps}]")
    r
  end

  # A fresh SPICE ticket for a running VM.
  def console(uuid)
    store.console(uuid, ttl: Portal.config.console_ttl)
  end

  # A remote-viewer connection file for +password+ (the library's format, see its
  # console::vv_file), or nil when the VM does not run. Made here because the password may be one
  # the library handed out before (ConsoleToken.ticket!), not a new one.
  def vv_file(vm, password)
    addr = spice_addr(vm[:uuid])
    return nil unless addr

    where = addr[:kind] == "unix" ? "unix-path=#{addr[:path]}\n" : "host=#{addr[:host]}\nport=#{addr[:port]}\n"
    "[virt-viewer]\ntype=spice\n#{where}password=#{password}\ntitle=#{vm[:alias]}\ndelete-this-file=1\n" \
      "toggle-fullscreen=shift+f11\nrelease-cursor=shift+f12\nsecure-attention=ctrl+alt+end\n"
  end

  # The VM's current QEMU process ("pid:start ticks"), or nil when it does not run: a SPICE
  # password belongs to one QEMU, a restarted VM has another.
  def run_id(uuid)
    run = store.vm_status(uuid)[:run]
    run && run[:qemu_pid] ? "#{run[:qemu_pid]}:#{run[:qemu_start]}" : nil
  rescue Vmpool::NotFound
    nil
  end

  def start(vm)
    store.start_vm(vm[:uuid])
  rescue Vmpool::AlreadyRunning
    store.vm(vm[:uuid])
  end

  def stop(vm, timeout: 20)
    store.stop_vm(vm[:uuid], timeout: timeout)
  end

  def resume(vm)
    store.resume_vm(vm[:uuid])
  end

  # Give the VM back to its pool (the pool's on_release: destroy it, or wipe it for a fresh
  # spare). Returns the pool's name.
  def release(vm)
    store.release(vm[:uuid])
    Portal::Refiller.poke(vm[:pool]) if vm[:pool]
    vm[:pool]
  end

  # Destroy the VM: a pool's VM handed out to someone goes back to its pool (release always
  # destroys it; a pool that resets on release makes a fresh spare in its place), any other (also
  # a pool's spare, which the library does not release: it belongs to no one) is stopped and
  # deleted; the refill thread makes a new spare if the pool is short.
  def destroy(vm)
    return release(vm) if vm[:pool] && vm[:owner].present?

    begin
      store.kill_vm(vm[:uuid]) if %w[running paused starting stopping].include?(vm[:state])
    rescue Vmpool::InvalidState
      nil
    end
    store.delete_vm(vm[:uuid])
    Portal::Refiller.poke(vm[:pool]) if vm[:pool]
    nil
  end

  # The screen as PNG bytes (QMP screendump), or nil when the VM does not run.
  def screenshot_png(vm)
    return nil unless %w[running paused].include?(vm[:state])

    dir = Portal.state_path("shots")
    FileUtils.mkdir_p(dir)
    path = File.join(dir, "#{vm[:uuid]}-#{SecureRandom.hex(4)}.png")
    store.screenshot(vm[:uuid], path)
    File.binread(path)
  rescue Vmpool::InvalidState, Vmpool::NotFound
    nil
  ensure
    File.unlink(path) if path && File.exist?(path)
  end

  # What the VM's QEMU uses right now, read from /proc: {rss_mib:, cpu_s:} or nil.
  def resources(uuid)
    run = store.vm_status(uuid)[:run]
    pid = run && run[:qemu_pid]
    return nil unless pid

    rss = File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+) kB/, 1].to_i
    fields = File.read("/proc/#{pid}/stat").split(") ", 2).last.split
    ticks = fields[11].to_i + fields[12].to_i # utime + stime
    { rss_mib: (rss / 1024.0).round(1), cpu_s: (ticks / Etc.sysconf(Etc::SC_CLK_TCK).to_f).round(1) }
  rescue Errno::ENOENT, Errno::ESRCH, Vmpool::NotFound
    nil
  end
end
