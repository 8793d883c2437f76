# frozen_string_literal: true

# Tests run against the real library (the gem over libvmpool.so) on a fresh dir store made for
# this run, with real QEMU (TCG) guests booted from the generated test template. Nothing of the
# library is mocked. The store, and every VM in it, is removed at the end.
require "tmpdir"
require "fileutils"

TEST_ROOT = Dir.mktmpdir("portal-test.")
ENV["VMPOOL_STORE"] = "dir:#{TEST_ROOT}/store?accel=tcg"
ENV["PORTAL_STATE_DIR"] = "#{TEST_ROOT}/state"
ENV["PORTAL_PROXY_SECRET"] = "test-proxy-secret"
ENV["PORTAL_REFILL"] = "0"
# The defaults, whatever the shell running the tests has set: sign-up off (tests that need it turn
# it on), and the integration tests' host as the portal's configured host.
ENV.delete("PORTAL_SIGNUP")
ENV["PORTAL_HOST"] = "www.example.com"
ENV["RAILS_ENV"] ||= "test"
FileUtils.mkdir_p("#{TEST_ROOT}/store")
FileUtils.mkdir_p("#{TEST_ROOT}/state")

require_relative "../config/environment"
require "rails/test_help"
# Autoloaded with the first controller otherwise: a test that names its exception
# (ActionController::InvalidAuthenticityToken) before any request would not find it.
require "action_controller/metal/request_forgery_protection"

puts "portal tests: database #{ActiveRecord::Base.connection.adapter_name} (#{ActiveRecord::Base.connection_db_config.database}), " \
     "store #{ENV['VMPOOL_STORE']}, library #{Vmpool.version} (#{ENV['VMPOOL_LIB']})"

module PortalTestHelpers
  PASSWORD = "correct horse battery"

  REPO = File.expand_path("../../..", __dir__)

  def self.test_image_path
    @test_image_path ||= ENV["VMPOOL_TEST_IMAGE"].presence ||
                         `#{REPO}/scripts/make-test-image`.strip.tap { |p| raise "make-test-image failed" unless $?.success? && File.file?(p) }
  end

  # The test template, imported once per run into the test store. Every test makes sure it is
  # there before it starts (ActiveSupport::TestCase's setup below), so that what a page lists
  # (the new-pool form's images, say) does not depend on whether an earlier test happened to
  # import it: run first, "an admin creates ... a pool" rendered the form before its first call
  # of #image and found no option for the image (seed 57937 on a fresh machine).
  def self.image
    images = Portal.store.images
    @image = nil if @image && images.none? { |i| i[:uuid] == @image[:uuid] }
    @image ||= images.find { |i| i[:name] == "test-guest" } ||
               Portal.store.import_image(test_image_path, name: "test-guest", version: "1", os: "linux")
  end

  def store
    Portal.store
  end

  def image
    PortalTestHelpers.image
  end

  def create_user(name = "user#{SecureRandom.hex(3)}", admin: false, password: PASSWORD)
    User.create!(username: name, password: password, admin: admin)
  end

  # A VM owned by +user+ made directly with the library (no pool), optionally started.
  def make_vm(user, start: false)
    vm = store.create_vm(alias: "t-#{SecureRandom.hex(4)}", owner: user.owner, image: image, vcpus: 1, ram_mib: 256, disk_gib: 1)
    start ? store.start_vm(vm[:uuid]) : vm
  end

  # Wait until the VM's serial console shows +text+ (the guest prints its markers there).
  def wait_for_serial(uuid, text, timeout: 180)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      log = store.vm_log(uuid)
      return log if log.include?(text)
      raise "#{uuid}: #{text.inspect} not on the serial console after #{timeout} s:\n#{log[-2000..] || log}" if
        Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.25
    end
  end

  # Every [table, column] of the database with a value that contains +text+.
  def rows_holding(text)
    c = ActiveRecord::Base.connection
    c.tables.flat_map do |t|
      c.select_all("SELECT * FROM #{c.quote_table_name(t)}").flat_map do |row|
        row.select { |_k, v| v.to_s.include?(text) }.keys.map { |k| [t, k] }
      end
    end.uniq
  end

  def cleanup_vm(uuid)
    store.kill_vm(uuid)
  rescue Vmpool::Error
    nil
  ensure
    begin
      store.delete_vm(uuid)
    rescue Vmpool::Error
      nil
    end
  end
end

class ActiveSupport::TestCase
  include PortalTestHelpers
  # One process: the VMs are real QEMU guests and the machine has two cores.
  parallelize(workers: 1)

  # Every test starts from the same store: the shared test image imported (see .image).
  setup { PortalTestHelpers.image }

  # Every test starts with the settings the app booted with (a test may change Portal.config;
  # they come back afterwards) and with no request counted by the throttles (a fresh store for
  # rack-attack's counters), so that no test depends on what ran before it.
  setup do
    @saved_portal_config = Portal.config.to_h.deep_dup
    Rack::Attack.cache.store = ActiveSupport::Cache::MemoryStore.new
  end

  teardown do
    Portal.config.clear
    Portal.config.merge!(@saved_portal_config)
  end
end

class ActionDispatch::IntegrationTest
  # The CSRF token of the last page (forgery protection is on in tests, as in production).
  def page_token
    tag = css_select('meta[name="csrf-token"]').first
    raise "no csrf-token meta tag in the last response (#{response.status})" unless tag

    tag["content"]
  end

  # GET a page (for its CSRF token), then submit to +path+ with +method+, as a browser form does.
  def submit(method, path, params: {}, from: root_path, headers: {})
    get from
    follow_redirect! while response.redirect?
    send(method, path, params: params.merge(authenticity_token: page_token), headers: headers)
  end

  def log_in(user, password = PortalTestHelpers::PASSWORD)
    get login_path
    follow_redirect! while response.redirect?
    post login_path, params: { username: user.username, password: password, authenticity_token: page_token }
    assert_response :redirect, "login of #{user.username} failed"
  end

  def log_out
    submit(:delete, logout_path)
  end
end

Minitest.after_run do
  begin
    store = Portal.store
    store.vms.each do |vm|
      store.kill_vm(vm[:uuid]) if %w[running paused starting stopping].include?(vm[:state])
    rescue Vmpool::Error
      nil
    end
    store.pools.each do |p|
      store.vms.select { |v| v[:pool] == p[:name] && !v[:owner].to_s.empty? }.each { |v| store.release(v[:uuid]) rescue nil }
      store.delete_pool(p[:name]) rescue nil
    end
    store.vms.each { |vm| store.kill_vm(vm[:uuid]) rescue nil; store.delete_vm(vm[:uuid]) rescue nil }
    Portal.reset_store!
    # removed only once its VMs are gone: removing a store under running QEMUs would orphan them
    FileUtils.rm_rf(TEST_ROOT) unless ENV["PORTAL_KEEP_TEST_STORE"]
  rescue StandardError => e
    warn "portal test cleanup: #{e.class}: #{e.message}; the test store stays in #{TEST_ROOT}"
  end
end
