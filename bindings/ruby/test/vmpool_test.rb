# frozen_string_literal: true

# Runs against the real libvmpool.so (VMPOOL_LIB, set by `make test-ruby`) on a real dir: store.
require "minitest/autorun"
require "tmpdir"
require "digest"
require "vmpool"

class VmpoolTest < Minitest::Test
  def setup
    @dir = Dir.mktmpdir("vmpool-ruby")
    @uri = "dir:#{@dir}/store?clone=qcow2&max_disk_gib=100"
    @store = Vmpool::Store.open(@uri)
    @image_path = File.join(@dir, "image.raw")
    File.open(@image_path, "wb") do |f|
      f.truncate(64 << 20)
      f.pwrite("vmpool" * 1000, 0)
      f.pwrite("ruby" * 1000, 32 << 20)
    end
  end

  def teardown
    @store.close unless @store.closed?
    FileUtils.rm_rf(@dir)
  end

  def import(**kw, &progress)
    @store.import_image(@image_path, **kw, &progress)
  end

  def test_version_and_info
    refute_empty Vmpool.version
    info = @store.info
    assert_equal "dir", info[:driver]
    assert_equal Vmpool.version, info[:version]
    assert_equal({ cleaned: [], errors: [], kept: [] }, @store.recover)
  end

  def test_import_list_get_delete
    m = import(name: "debian", version: "12", os: "linux", tags: { role: "desktop" })
    assert_equal "debian", m[:name]
    assert_equal 64 << 20, m[:size_bytes]
    assert_equal Digest::SHA256.file(@image_path).hexdigest, m[:sha256]
    assert_equal "desktop", m[:tags][:role]
    assert_equal [m], @store.images
    assert_equal m, @store.image(m[:uuid])
    @store.delete_image(m)
    assert_empty @store.images
  end

  def test_import_progress_and_cancel
    seen = []
    m = import { |done, total| seen << [done, total] }
    refute_empty seen
    assert_equal [64 << 20, 64 << 20], seen.last
    assert m[:uuid]
    calls = 0
    assert_raises(Vmpool::Cancelled) { import { |_d, _t| (calls += 1) < 2 } }
    assert_equal 1, @store.images.size
  end

  def test_vm_lifecycle
    image = import(name: "base")
    a = @store.create_vm(alias: "desk", owner: "alice", image: image, vcpus: 2, ram_mib: 2048, disk_gib: 20)
    b = @store.create_vm(alias: "srv", owner: "bob", image: image[:uuid], vcpus: 1, ram_mib: 512)
    assert_equal "stopped", a[:state]
    assert_equal 20, a[:disk_gib]
    assert_equal 1, b[:disk_gib]
    assert_equal a, @store.vm(a[:uuid])
    assert_equal [a[:uuid]], @store.vms(owner: "alice").map { |v| v[:uuid] }
    assert_equal 2, @store.vms.size
    err = assert_raises(Vmpool::InUse) { @store.delete_image(image) }
    assert_includes err.message, a[:uuid]
    assert_equal 12, err.code
    assert_equal "IN_USE", err.name
    @store.delete_vm(a)
    @store.delete_vm(b[:uuid])
    assert_empty @store.vms
    @store.delete_image(image)
  end

  def test_fixed_uuid_and_duplicates
    image = import
    uuid = "6f1c2b34-0d4e-4f8a-9b6c-1234567890ab"
    vm = @store.create_vm(uuid: uuid, alias: "x", owner: "o", image: image, vcpus: 1, ram_mib: 256)
    assert_equal uuid, vm[:uuid]
    assert_raises(Vmpool::AlreadyExists) { @store.create_vm(uuid: uuid, alias: "y", owner: "o", image: image, vcpus: 1, ram_mib: 256) }
    assert_raises(Vmpool::AlreadyExists) { import(uuid: image[:uuid]) }
  end

  def test_error_mapping
    image = import
    cases = {
      Vmpool::NotFound => -> { @store.vm("00000000-0000-4000-8000-000000000000") },
      Vmpool::InvalidArgument => -> { @store.vm("nope") },
      Vmpool::InvalidJson => -> { @store.import_image(@image_path, tags: "not an object") },
      Vmpool::ChecksumMismatch => -> { import(sha256: "0" * 64) },
      Vmpool::CorruptImage => -> { import(size_bytes: 1234) },
      Vmpool::UnsupportedFormat => lambda {
        File.binwrite(File.join(@dir, "x.vmdk"), "KDMV\x01junk")
        @store.import_image(File.join(@dir, "x.vmdk"))
      },
      Vmpool::InvalidUtf8 => -> { @store.vm("\xff\xfe".dup.force_encoding("BINARY")) },
      Vmpool::StringTooLong => -> { @store.vm("a" * 5000) },
      Vmpool::Unsupported => -> { Vmpool::Store.open("zfs:nosuchpool/x") },
      Vmpool::NotAStore => -> { Vmpool::Store.open("dir:#{@dir}") }
    }
    cases.each do |klass, call|
      err = assert_raises(klass, klass.name) { call.call }
      assert_kind_of Vmpool::Error, err
      refute_empty err.message
      assert_equal Vmpool::ERROR_CLASSES.key(klass), err.code
    end
    assert_raises(Vmpool::InvalidArgument) { @store.create_vm(alias: "a/b", owner: "o", image: image, vcpus: 1, ram_mib: 256) }
    assert_raises(Vmpool::InvalidArgument) { @store.create_vm(alias: "a", owner: "o", image: image, vcpus: 0, ram_mib: 256) }
    assert_raises(Vmpool::InvalidArgument) { @store.create_vm(alias: "a", owner: "o", image: image, vcpus: 1, ram_mib: 256, disk_gib: 101) }
    e = assert_raises(Vmpool::InvalidArgument) do
      @store.create_vm(alias: "a", owner: "o", image: image, vcpus: 1, ram_mib: 256,
                       user: { login: "al", password_hash: "hunter2" })
    end
    assert_match(/user\.password_hash/, e.message)
    assert_raises(Vmpool::InvalidArgument) { Vmpool::Store.open("nfs:/x") }
    assert_kind_of Vmpool::ArgumentError, Vmpool::InvalidJson.new
    assert_raises(::ArgumentError) { import(colour: "red") }
    assert_empty @store.vms
  end

  def test_every_result_code_has_a_class
    (0..64).each do |code|
      name = Vmpool::Native.vmpool_result_name(code)
      next if %w[UNKNOWN OK].include?(name)

      klass = Vmpool::ERROR_CLASSES.fetch(code)
      expected = name == "IO" ? "IOError" : name.split("_").map(&:capitalize).join
      assert_equal expected, klass.name.split("::").last
    end
  end

  def test_closed_store
    s = Vmpool::Store.open(@uri)
    s.close
    assert s.closed?
    assert_raises(Vmpool::Error) { s.images }
    Vmpool::Store.open(@uri) { |st| assert_equal [], st.vms }
  end

  def test_threads_share_a_store
    image = import
    threads = 8.times.map do |t|
      Thread.new do
        4.times.map do |i|
          @store.create_vm(alias: "t#{t}-#{i}", owner: "thread#{t}", image: image, vcpus: 1, ram_mib: 256)[:uuid]
        end
      end
    end
    uuids = threads.flat_map(&:value)
    assert_equal 32, uuids.uniq.size
    assert_equal 32, @store.vms.size
    # Errors raised on other threads carry their own messages (the last error is per thread).
    errs = 4.times.map { |i| Thread.new { @store.vm("00000000-0000-4000-8000-00000000000#{i}") rescue $! } }.map(&:value)
    errs.each_with_index { |e, i| assert_includes e.message, "00000000-0000-4000-8000-00000000000#{i}" }
  end

  def test_other_threads_run_during_blocking_calls
    big = File.join(@dir, "big.raw")
    File.open(big, "wb") { |f| f.truncate(512 << 20) }
    ticks = 0
    ticker = Thread.new { loop { ticks += 1; sleep 0.001 } }
    @store.import_image(big)
    ticker.kill
    assert_operator ticks, :>, 5, "the import held the GVL"
  end

  # Closing a store while another thread is inside a call on it: the call finishes with its
  # real result (the handle is released after it), and later calls raise Vmpool::Closed.
  def test_close_during_a_call_in_flight
    started = Queue.new
    go_on = Queue.new
    result = nil
    worker = Thread.new do
      first = true
      result = import(name: "racing") do |_done, _total|
        if first
          first = false
          started << true
          go_on.pop
        end
        true
      end
    end
    started.pop
    @store.close # must not block on, nor free under, the import
    assert @store.closed?
    go_on << true
    worker.join
    assert_equal "racing", result[:name]
    assert_raises(Vmpool::Closed) { @store.images }
    # The import really happened: another handle sees it.
    Vmpool::Store.open(@uri) { |s| assert_equal [result[:uuid]], s.images.map { |m| m[:uuid] } }
  end

  # A real VM from the bootable test image (make test-ruby sets VMPOOL_TEST_IMAGE).
  def test_run_a_vm
    image_path = ENV.fetch("VMPOOL_TEST_IMAGE") { skip "VMPOOL_TEST_IMAGE is not set (make test-ruby sets it)" }
    Vmpool::Store.open("dir:#{@dir}/run?accel=tcg") do |s|
      image = s.import_image(image_path, name: "guest")
      vm = s.create_vm(alias: "rb", owner: "ruby", image: image, vcpus: 1, ram_mib: 256)
      assert_raises(Vmpool::InvalidState) { s.console(vm) }
      assert_equal "running", s.start_vm(vm, accel: "tcg")[:state]
      assert_raises(Vmpool::AlreadyRunning) { s.start_vm(vm) }
      ticket = s.console(vm, ttl: 60)
      assert_match(/\A\h{32}\z/, ticket[:password])
      assert_includes ticket[:vv], "password=#{ticket[:password]}"
      assert_raises(Vmpool::InvalidArgument) { s.console(vm, ttl: 0) }
      assert_equal "paused", s.pause_vm(vm)[:state]
      assert_equal "running", s.resume_vm(vm)[:state]
      deadline = Time.now + 120
      sleep 0.2 until s.vm_log(vm).include?("VMPOOL-TEST-GUEST: ready") || Time.now > deadline
      assert_includes s.vm_log(vm), "VMPOOL-TEST-GUEST: boot_count=1"
      slept = s.suspend_vm(vm, reason: "idle")
      assert_equal "suspended", slept[:state]
      assert_equal "idle", slept[:suspended][:reason]
      assert_nil s.vm_status(vm)[:run]
      woken = s.resume_vm(vm)
      assert_equal "running", woken[:state]
      assert_nil woken[:suspended]
      assert woken[:autoboot]
      # A host's reboot: stop suspends it, start wakes it (it belongs to no pool).
      down = s.host_stop
      assert_equal [[vm[:uuid]], []], down.values_at(:suspended, :errors)
      assert_equal "host stop", s.vm(vm)[:suspended][:reason]
      up = s.host_start
      assert_equal [[vm[:uuid]], []], up.values_at(:woken, :errors)
      assert_equal "running", s.vm(vm)[:state]
      png = File.join(@dir, "screen.png")
      s.screenshot(vm, png)
      assert_equal "\x89PNG".b, File.binread(png, 4)
      assert s.vm_status(vm)[:run][:qemu_pid].positive?
      used = s.vm_stats(vm)
      assert_equal "running", used[:state]
      assert used[:cpu_time_us].positive?
      assert used[:memory][:pss_bytes].between?(1, used[:memory][:rss_bytes])
      assert_includes used[:disks].map { |d| d[:id] }, "disk0"
      stopped = s.stop_vm(vm, timeout: 60)
      assert_equal "stopped", stopped[:state]
      assert stopped[:last_exit][:clean]
      assert_equal 2, s.update_vm(vm, vcpus: 2)[:vcpus]
      idle = s.vm_stats(vm)
      assert_equal ["stopped", nil, nil, []], idle.values_at(:state, :cpu_time_us, :memory, :disks)
      assert_raises(Vmpool::InvalidArgument) { s.vm_stats("not-a-uuid") }
      s.delete_vm(vm)
    end
  end

  # A pool of memory-template clones: spares, the redirect, the maximum, release.
  def test_pool
    image_path = ENV.fetch("VMPOOL_TEST_IMAGE") { skip "VMPOOL_TEST_IMAGE is not set (make test-ruby sets it)" }
    Vmpool::Store.open("dir:#{@dir}/pool?accel=tcg&template_dir=#{@dir}/tpl") do |s|
      image = s.import_image(image_path, name: "guest")
      p = s.create_pool(name: "rb", image: image, vcpus: 1, ram_mib: 256, max_vms: 2, spares: 1,
                        warmth: "template", ready_marker: "VMPOOL-TEST-GUEST: tick=2")
      assert_equal "template", p[:warmth]
      assert_raises(Vmpool::AlreadyExists) { s.create_pool(name: "rb", image: image, vcpus: 1, ram_mib: 256, max_vms: 2) }
      assert_raises(ArgumentError) { s.create_pool(name: "x", image: image, vcpus: 1, ram_mib: 256, max_vms: 2, colour: 1) }
      seen = []
      r = s.refill("rb") { |ready, target, _working| seen << [ready, target] }
      assert r[:template_built]
      assert_equal 1, r[:spares]
      refute_empty seen
      assert_equal 1, s.pool("rb")[:status][:spares_ready]
      a = s.acquire("rb", owner: "alice", console_ttl: 60)
      assert_equal %w[spare waiting running], [a[:path], a[:was], a[:vm][:state]]
      assert_equal "rb", a[:vm][:pool]
      assert_match(/\A\h{32}\z/, a[:console][:password])
      assert_equal a[:vm][:uuid], s.acquire("rb", owner: "alice")[:vm][:uuid]
      b = s.acquire("rb", owner: "bob")
      assert_equal "created", b[:path]
      assert_raises(Vmpool::PoolExhausted) { s.acquire("rb", owner: "carol") }
      assert_raises(Vmpool::InUse) { s.delete_pool("rb") }
      assert_equal 3, s.update_pool("rb", max_vms: 3)[:max_vms]
      s.release(a[:vm])
      s.release(b[:vm])
      assert_raises(Vmpool::NotFound) { s.vm(a[:vm][:uuid]) }
      s.delete_pool("rb")
      assert_empty s.pools
    end
  end
end
