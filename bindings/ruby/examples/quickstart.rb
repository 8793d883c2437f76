# Open the store, import an image, create a VM, list VMs. Usage: ruby quickstart.rb IMAGE
require "vmpool"

Vmpool::Store.open(ENV["VMPOOL_STORE"]) do |store|
  image = store.import_image(ARGV.fetch(0), name: "debian", version: "12", os: "linux")
  vm = store.create_vm(alias: "desk-1", owner: "alice", image: image, vcpus: 2, ram_mib: 2048, disk_gib: 20)
  puts "created #{vm[:uuid]} (#{vm[:clone_method]}) from #{image[:uuid]}"
  store.vms(owner: "alice").each { |v| puts "#{v[:alias]} #{v[:state]} #{v[:disk_gib]} GiB" }
end
