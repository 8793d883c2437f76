# frozen_string_literal: true

require "test_helper"
require "minitest/mock"

class ImageImportTest < ActiveSupport::TestCase
  setup do
    @dir = Dir.mktmpdir("imports.", TEST_ROOT)
    @outside = Dir.mktmpdir("outside.", TEST_ROOT)
    @saved_dirs = Portal.config.import_dirs
    Portal.config.import_dirs = [@dir]
  end

  teardown { Portal.config.import_dirs = @saved_dirs }

  test "server paths must be regular files inside the import directories" do
    inside = File.join(@dir, "disk.raw")
    File.write(inside, "x")
    assert ImageImport.allowed_path?(inside)
    outside = File.join(@outside, "disk.raw")
    File.write(outside, "x")
    refute ImageImport.allowed_path?(outside)
    link = File.join(@dir, "escape.raw")
    File.symlink(outside, link)
    refute ImageImport.allowed_path?(link), "a symlink out of the import directory was allowed"
    refute ImageImport.allowed_path?("#{@dir}/../#{File.basename(@outside)}/disk.raw")
    refute ImageImport.allowed_path?(@dir), "a directory was allowed"
    refute ImageImport.allowed_path?("relative/disk.raw")
    refute ImageImport.new(source: "path", path: outside, name: "x").valid?
    # a sibling directory whose name starts like the allowed one
    sibling = "#{@dir}-evil"
    FileUtils.mkdir_p(sibling)
    File.write("#{sibling}/d.raw", "x")
    refute ImageImport.allowed_path?("#{sibling}/d.raw")
  end

  test "no default import directory lies where another local user could make it first" do
    Portal::DEFAULT_IMPORT_DIRS.split(":").each do |dir|
      refute_match(%r{\A/(tmp|var/tmp|dev/shm)(/|\z)}, dir)
      # every ancestor that exists is root's and writable by root alone (no sticky /tmp-like one)
      Pathname.new(dir).ascend.drop(1).select(&:exist?).each do |up|
        st = up.stat
        assert_equal 0, st.uid, "#{up} (above #{dir}) is not root's"
        assert_equal 0, st.mode & 0o022, format("%s (above %s) is writable by others: %o", up, dir, st.mode & 0o7777)
      end
    end
  end

  test "the resolved path is saved and imported, not the link that was checked" do
    real = File.join(@dir, "real.raw")
    File.write(real, "x")
    link = File.join(@dir, "link.raw")
    File.symlink(real, link)
    imp = ImageImport.create!(source: "path", path: link, name: "linked")
    assert_equal File.realpath(real), imp.reload.path
  end

  test "any error of the background import marks the row failed" do
    path = File.join(@dir, "boom.raw")
    File.write(path, "x")
    imp = ImageImport.create!(source: "path", path: path, name: "boom")
    store.stub(:import_image, ->(*, **) { raise NoMethodError, "a bug" }) do
      imp.start!
      deadline = Time.now + 20
      sleep 0.05 until imp.reload.finished? || Time.now > deadline
    end
    assert_equal "failed", imp.status
    assert_match(/NoMethodError: a bug/, imp.error)
  end

  test "imports a previous server left queued or running are marked interrupted at start" do
    old_q = ImageImport.create!(source: "upload", path: "/nonexistent/a", name: "old-q", status: "queued", created_at: 1.hour.ago)
    old_r = ImageImport.create!(source: "upload", path: "/nonexistent/b", name: "old-r", status: "running", created_at: 1.hour.ago)
    old_done = ImageImport.create!(source: "upload", path: "/nonexistent/c", name: "old-d", status: "done", created_at: 1.hour.ago)
    mine = ImageImport.create!(source: "upload", path: "/nonexistent/d", name: "mine", status: "running")
    ImageImport.mark_interrupted!(before: 1.minute.ago)
    assert_equal %w[failed interrupted], old_q.reload.values_at(:status, :error)
    assert_equal %w[failed interrupted], old_r.reload.values_at(:status, :error)
    assert_equal "done", old_done.reload.status
    assert_equal "running", mine.reload.status, "an import of this server was marked"
  end

  test "an import runs the library's import and records its progress callbacks" do
    path = File.join(@dir, "guest.raw")
    FileUtils.cp(PortalTestHelpers.test_image_path, path)
    imp = ImageImport.create!(source: "path", path: path, name: "imported-#{SecureRandom.hex(3)}", version: "2", os: "linux")
    imp.start!(wait: true)
    imp.reload
    assert_equal "done", imp.status, imp.error
    assert_equal File.size(path), imp.total_bytes
    assert_equal imp.total_bytes, imp.done_bytes
    assert_operator imp.progress_updates, :>=, 1
    assert_equal 1.0, imp.fraction
    image = store.image(imp.image_uuid)
    assert_equal imp.name, image[:name]
    assert_equal "2", image[:version]
  ensure
    store.delete_image(imp.image_uuid) if imp&.image_uuid
  end

  test "a broken image fails with the library's error, and the row says so" do
    path = File.join(@dir, "broken.qcow2")
    File.binwrite(path, "QFI\xFB".b + ("\0" * 60).b + "garbage".b)
    imp = ImageImport.create!(source: "path", path: path, name: "broken")
    imp.start!(wait: true)
    imp.reload
    assert_equal "failed", imp.status
    assert_match(/CORRUPT_IMAGE|UNSUPPORTED_FORMAT/, imp.error)
    assert_nil imp.image_uuid
    refute store.images.any? { |i| i[:name] == "broken" }
  end

  test "an uploaded file is removed after its import" do
    path = File.join(@outside, "upload.raw")
    FileUtils.cp(PortalTestHelpers.test_image_path, path)
    imp = ImageImport.create!(source: "upload", path: path, name: "uploaded")
    imp.start!(wait: true)
    assert_equal "done", imp.reload.status, imp.error
    refute File.exist?(path)
  ensure
    store.delete_image(imp.image_uuid) if imp&.image_uuid
  end
end
