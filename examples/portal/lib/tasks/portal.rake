# frozen_string_literal: true

namespace :portal do
  desc "Create (or reset) an admin account: NAME=admin [PASSWORD=...]; prints the password"
  task admin: :environment do
    name = ENV.fetch("NAME", "admin")
    password = ENV["PASSWORD"].presence || SecureRandom.alphanumeric(16)
    user = User.find_or_initialize_by(username: name)
    user.password = password
    user.admin = true
    user.save!
    user.user_sessions.delete_all
    puts "admin account: #{name}  password: #{password}"
  end

  desc "Import IMAGE=path as NAME (default test-guest) unless an image of that name exists; prints its uuid"
  task image: :environment do
    name = ENV.fetch("IMAGE_NAME", "test-guest")
    version = ENV.fetch("IMAGE_VERSION", "1")
    image = Portal.store.images.find { |i| i[:name] == name && i[:version] == version }
    image ||= Portal.store.import_image(ENV.fetch("IMAGE"), name: name, version: version, os: "linux")
    puts image[:uuid]
  end

  desc "Create POOL (default desktop) from image IMAGE_NAME unless it exists: SPARES, WARMTH, MAX_VMS, VCPUS, RAM_MIB, " \
       "DISK_GIB, READY_MARKER, READY_DELAY, HOME_GIB"
  task pool: :environment do
    name = ENV.fetch("POOL", "desktop")
    existing = Portal.store.pools.find { |p| p[:name] == name }
    if existing
      puts "pool #{name} exists"
    else
      iname = ENV.fetch("IMAGE_NAME", "test-guest")
      image = Portal.store.images.find { |i| i[:name] == iname } or abort("no image named #{iname}")
      marker = ENV.fetch("READY_MARKER", "VMPOOL-TEST-GUEST: ready")
      Portal.store.create_pool(name: name, image: image[:uuid], vcpus: Integer(ENV.fetch("VCPUS", 1)),
                               ram_mib: Integer(ENV.fetch("RAM_MIB", 256)), disk_gib: Integer(ENV.fetch("DISK_GIB", 1)),
                               spares: Integer(ENV.fetch("SPARES", 2)), max_vms: Integer(ENV.fetch("MAX_VMS", 10)),
                               max_per_owner: 1, warmth: ENV.fetch("WARMTH", "paused"), on_release: ENV.fetch("ON_RELEASE", "reset"),
                               ready_marker: marker.presence, ready_delay_s: ENV["READY_DELAY"]&.then { |v| Integer(v) },
                               home_gib: ENV["HOME_GIB"]&.then { |v| Integer(v) })
      puts "pool #{name} created"
    end
    if ENV["REFILL"] == "1"
      r = Portal.store.refill(name)
      puts "refill: #{r.inspect}"
    end
  end
end
