# frozen_string_literal: true

Gem::Specification.new do |s|
  s.name        = "vmpool"
  s.version     = File.read(File.expand_path("../../Cargo.toml", __dir__))[/^version = "([^"]+)"/, 1] || "0.1.0"
  s.summary     = "Ruby binding of libvmpool: instant VMs from templates by copy-on-write clone"
  s.description = "Drives libvmpool (ZFS, btrfs or directory stores; images, clones, VMs) through the ffi gem."
  s.authors     = ["vmpool developers"]
  # The crate's "MIT OR Apache-2.0" (Cargo.toml): RubyGems lists a choice of licenses as an array.
  s.licenses    = ["MIT", "Apache-2.0"]
  s.files       = Dir["lib/**/*.rb"] + Dir["lib/vmpool/libvmpool.so*"]
  s.require_paths = ["lib"]
  s.required_ruby_version = ">= 2.7"
  s.add_runtime_dependency "ffi", ">= 1.15"
end
