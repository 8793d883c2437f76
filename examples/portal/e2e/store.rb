# frozen_string_literal: true

# What the browser tests ask the library directly (the same gem the portal uses, on the same
# store, $VMPOOL_STORE): a VM's serial log, its record, a pool's status. One JSON value on stdout.
#
#   ruby e2e/store.rb vm-log UUID | vm UUID | vms [OWNER] | pool NAME | refill NAME | release UUID | suspend UUID
#                     | start UUID | session-limit POOL=SECONDS|POOL=null | cleanup
$LOAD_PATH.unshift(File.expand_path("../../../bindings/ruby/lib", __dir__))
if ENV["VMPOOL_LIB"].to_s.empty?
  target = File.expand_path("../../../target", __dir__)
  built = %w[release debug].map { |p| File.join(target, p, "libvmpool.so") }.select { |f| File.file?(f) }
  ENV["VMPOOL_LIB"] = built.max_by { |f| File.mtime(f) } unless built.empty?
end
require "vmpool"
require "json"

cmd, arg = ARGV
Vmpool::Store.open(ENV.fetch("VMPOOL_STORE")) do |s|
  out = case cmd
        when "vm-log" then s.vm_log(arg, max_bytes: 1 << 20)
        when "vm" then s.vm(arg)
        when "vms" then s.vms(owner: arg)
        when "pool" then s.pool(arg)
        when "refill" then s.refill(arg)
        when "release" then s.release(arg)
        when "suspend" then s.suspend_vm(arg, reason: "e2e")
        when "start" then s.start_vm(arg)
        when "session-limit"
          pool, secs = arg.split("=", 2)
          s.update_pool(pool, max_session_s: secs == "null" ? nil : Integer(secs))
        when "cleanup" # every VM and pool of the (throwaway) store
          s.vms.select { |v| v[:pool] && !v[:owner].to_s.empty? }.each { |v| s.release(v[:uuid]) rescue nil }
          s.pools.each { |p| s.delete_pool(p[:name]) rescue nil }
          s.vms.each { |v| (s.kill_vm(v[:uuid]) rescue nil); (s.delete_vm(v[:uuid]) rescue nil) }
          s.vms.size
        else abort("unknown command #{cmd}")
        end
  puts JSON.generate(out)
rescue Vmpool::Error => e
  puts JSON.generate(error: e.name, message: e.message)
  exit 3
end
