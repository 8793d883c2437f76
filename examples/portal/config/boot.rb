# frozen_string_literal: true

ENV["BUNDLE_GEMFILE"] ||= File.expand_path("../Gemfile", __dir__)

# The vmpool gem loads libvmpool.so when it is required (by Bundler.require below): from
# $VMPOOL_LIB, else from the gem's own directory, else the system's library paths. Inside this
# repository, default to the newest build in ../../target (release or debug), so that
# `bin/rails server` works right after `cargo build`. vmpool-supervisor is found next to it.
if ENV["VMPOOL_LIB"].to_s.empty?
  target = File.expand_path("../../../target", __dir__)
  built = %w[release debug].map { |p| File.join(target, p, "libvmpool.so") }.select { |f| File.file?(f) }
  ENV["VMPOOL_LIB"] = built.max_by { |f| File.mtime(f) } unless built.empty?
end

require "bundler/setup" # Set up gems listed in the Gemfile.
