# frozen_string_literal: true

# The binding's own behaviour, without a guest: an exception class per result code of the
# header, "uuid or Hash" arguments, and every key of the C API's JSON inputs passed through.
# Runs against the real libvmpool.so (VMPOOL_LIB) on a dir: store.
require "minitest/autorun"
require "tmpdir"
require "fileutils"
require "vmpool"

class VmpoolBindingTest < Minitest::Test
  HEADER = File.expand_path("../../../include/vmpool.h", __dir__)
  UUID = "6f1c2b34-0d4e-4f8a-9b6c-1234567890ab"

  def setup
    @dir = Dir.mktmpdir("vmpool-ruby-binding")
    @store = Vmpool::Store.open("dir:#{@dir}/store?clone=qcow2&max_disk_gib=100")
    path = File.join(@dir, "image.raw")
    File.open(path, "wb") { |f| f.truncate(8 << 20) }
    @image = @store.import_image(path, name: "base")
  end

  def teardown
    @store.close
    FileUtils.rm_rf(@dir)
  end

  def test_a_class_per_result_code_of_the_header
    skip "#{HEADER} is not there" unless File.exist?(HEADER)
    codes = File.read(HEADER).scan(/VMPOOL_RESULT_(\w+) = (\d+),/).to_h { |name, n| [Integer(n), name] }
    assert_equal "OK", codes.delete(0)
    assert_equal codes.keys.sort, Vmpool::ERROR_CLASSES.keys.sort
    codes.each do |code, name|
      klass = Vmpool::ERROR_CLASSES.fetch(code)
      assert_operator klass, :<, Vmpool::Error
      assert_equal code < 10, klass < Vmpool::ArgumentError || false, name
      assert_equal name, Vmpool::Native.vmpool_result_name(code)
    end
  end

  def test_errors_carry_code_name_and_message
    err = assert_raises(Vmpool::NotFound) { @store.vm("00000000-0000-4000-8000-000000000000") }
    assert_equal [10, "NOT_FOUND"], [err.code, err.name]
    assert_includes err.message, "00000000-0000-4000-8000-000000000000"
  end

  def test_uuid_or_hash_everywhere
    vm = @store.create_vm(alias: "a", owner: "o", image: @image, vcpus: 1, ram_mib: 256, uuid: UUID)
    assert_equal @image, @store.image(@image)
    assert_equal vm, @store.vm(vm)
    assert_equal vm, @store.vm({ "uuid" => UUID }) # a Hash with string keys, as JSON.parse gives
    assert_equal vm, @store.vm_status(vm)[:vm]
    assert_nil @store.vm_status(vm)[:run]
    assert_equal "stopped", @store.stop_vm(vm)[:state]
    assert_raises(::ArgumentError) { @store.vm({ alias: "a" }) }
    assert_raises(Vmpool::InUse) { @store.delete_image(@image) }
    @store.delete_vm(vm)
    assert_empty @store.vms
  end

  def test_every_vm_key_is_passed_through
    vm = @store.create_vm(alias: "a", owner: "o", image: @image[:uuid], vcpus: 1, ram_mib: 256, disk_gib: 2,
                          uuid: UUID, firmware: "uefi", accel: "tcg", cpu_cap_pct: 50, memory_cap_mib: 600,
                          io: { read_bps: 1 << 20 }, prealloc: true)
    assert_equal [UUID, 2, "uefi", "tcg"], vm.values_at(:uuid, :disk_gib, :firmware, :accel)
    assert_equal [50, 600, 1 << 20, true], [vm[:caps][:cpu_pct], vm[:caps][:memory_mib], vm[:caps][:io][:read_bps],
                                           vm[:caps][:prealloc]]
    assert_equal 2, @store.update_vm(vm, vcpus: 2, ram_mib: 512, disk_gib: 3)[:vcpus]
    assert_raises(::ArgumentError) { @store.update_vm(vm, colour: 1) }
  end

  def test_every_pool_key_is_passed_through
    p = @store.create_pool(name: "p", image: @image, vcpus: 1, ram_mib: 256, max_vms: 3, disk_gib: 2, spares: 0,
                           max_per_owner: 2, warmth: "paused", on_release: "reset", on_logout: "refresh", ready_marker: "ready",
                           ready_delay_s: 1, ready_timeout_s: 30, accel: "tcg", home_gib: 1,
                           idle_suspend_after_s: 600, max_session_s: 3600)
    assert_equal [2, 2, "paused", "reset", "refresh", "ready", 1, 30, "tcg", 1, 600, 3600],
                 p.values_at(:disk_gib, :max_per_owner, :warmth, :on_release, :on_logout, :ready_marker,
                             :ready_delay_s, :ready_timeout_s, :accel, :home_gib, :idle_suspend_after_s, :max_session_s)
    assert_raises(Vmpool::InvalidArgument) { @store.update_pool("p", max_session_s: 0) }
    assert_equal({ kept: [], refreshed: [] }, @store.logout("nobody"))
    assert_raises(Vmpool::InvalidArgument) { @store.logout("../x") }
    # nil clears the clearable keys; image: (uuid or Hash) and image_uuid: are both the image.
    q = @store.update_pool("p", disk_gib: nil, ready_marker: nil, accel: nil, image_uuid: @image[:uuid], spares: 1,
                                max_session_s: nil)
    assert_equal [nil, nil, nil, 1, nil], q.values_at(:disk_gib, :ready_marker, :accel, :spares, :max_session_s)
    assert_equal @image[:uuid], @store.update_pool("p", image: @image)[:image_uuid]
    assert_raises(::ArgumentError) { @store.update_pool("p", name: "q") }
    @store.delete_pool("p")
  end

  def test_home_volumes_through_the_library
    h = @store.create_home("alice", 256 << 20)
    assert_equal ["alice", 256 << 20, nil], h.values_at(:owner, :size_bytes, :attached_to)
    assert_equal h, @store.home("alice")
    assert_equal [h], @store.homes
    assert_raises(Vmpool::AlreadyExists) { @store.create_home("alice", 256 << 20) }
    assert_equal 512 << 20, @store.resize_home("alice", 512 << 20)[:size_bytes]
    e = assert_raises(Vmpool::InvalidArgument) { @store.resize_home("alice", 256 << 20) }
    assert_match(/only grow/, e.message)
    assert_raises(Vmpool::InvalidArgument) { @store.create_home("bob", 1 << 20) }
    assert_raises(Vmpool::InvalidArgument) { @store.create_home("../x", 256 << 20) }
    @store.delete_home("alice")
    assert_equal [], @store.homes
    assert_raises(Vmpool::NotFound) { @store.home("alice") }
  end
end
