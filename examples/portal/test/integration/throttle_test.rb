# frozen_string_literal: true

require "test_helper"

# Floods of sign-ups, log-ins, "Get a desktop" and resets: past the limit (lowered here; every
# test starts with rack-attack's counters empty, see test_helper) the request gets 429 with a
# Retry-After and a sentence, and never reaches the app.
class ThrottleTest < ActionDispatch::IntegrationTest
  setup do
    @pools = []
    # rack-attack counts in fixed windows of the period (epoch time / period): a flood that
    # crossed a window's end would start counting again. The clock stands still in each test.
    travel_to Time.current.change(usec: 0)
  end

  teardown do
    @pools.each do |name|
      store.vms.select { |v| v[:pool] == name && !v[:owner].to_s.empty? }.each { |v| store.release(v[:uuid]) }
      store.delete_pool(name)
    rescue Vmpool::NotFound
      nil
    end
  end

  def limit(name, limit, period = 60)
    Portal.config.throttle[name] = { limit: limit, period: period }
  end

  def assert_throttled(what)
    assert_response 429
    assert_match(/\A\d+\z/, response.headers["Retry-After"])
    assert_operator response.headers["Retry-After"].to_i, :>, 0
    assert_select "#throttled", /#{what} Try again in \d+ seconds\./
  end

  def make_pool
    name = "th-#{SecureRandom.hex(3)}"
    @pools << name
    store.create_pool(name: name, image: image, vcpus: 1, ram_mib: 256, disk_gib: 1, max_vms: 4, spares: 0,
                      warmth: "disk", on_release: "destroy")
    name
  end

  def from(ip)
    { "REMOTE_ADDR" => ip }
  end

  test "sign-ups from one address: 429 after the limit, and no account made" do
    Portal.config.signup = true
    limit(:signup_ip, 3)
    3.times do |i|
      get signup_path, env: from("198.51.100.7")
      post signup_path, params: { user: { username: "flood#{i}", password: PASSWORD, password_confirmation: PASSWORD },
                                  authenticity_token: page_token }, env: from("198.51.100.7")
      assert_response :redirect, "sign-up #{i} refused"
    end
    get signup_path, env: from("198.51.100.7")
    post signup_path, params: { user: { username: "flood3", password: PASSWORD, password_confirmation: PASSWORD },
                                authenticity_token: page_token }, env: from("198.51.100.7")
    assert_throttled("Too many sign-ups from your address.")
    assert_nil User.find_by(username: "flood3")
    assert_equal 3, User.where("username LIKE 'flood%'").count

    # another address is not affected
    get signup_path, env: from("198.51.100.8")
    post signup_path, params: { user: { username: "elsewhere", password: PASSWORD, password_confirmation: PASSWORD },
                                authenticity_token: page_token }, env: from("198.51.100.8")
    assert_response :redirect
  end

  test "log-in attempts from one address: 429 after the limit, even with the right password" do
    limit(:login_ip, 4)
    victim = create_user
    get login_path, env: from("198.51.100.9")
    csrf = page_token
    4.times do
      post login_path, params: { username: victim.username, password: "guess #{SecureRandom.hex(4)}", authenticity_token: csrf },
                       env: from("198.51.100.9")
      assert_response :unprocessable_entity
    end
    post login_path, params: { username: victim.username, password: PASSWORD, authenticity_token: csrf }, env: from("198.51.100.9")
    assert_throttled("Too many log-in attempts.")
    assert_equal 0, victim.user_sessions.count, "a throttled log-in started a session"

    # someone else, elsewhere, logs in
    other = create_user
    get login_path, env: from("198.51.100.10")
    post login_path, params: { username: other.username, password: PASSWORD, authenticity_token: page_token }, env: from("198.51.100.10")
    assert_response :redirect
  end

  test "log-in attempts for one account from many addresses: 429 after the limit" do
    limit(:login_account, 3)
    victim = create_user
    get login_path
    csrf = page_token
    3.times do |i|
      post login_path, params: { username: victim.username.upcase, password: "guess #{i}", authenticity_token: csrf },
                       env: from("203.0.113.#{i + 1}")
      assert_response :unprocessable_entity
    end
    post login_path, params: { username: victim.username, password: PASSWORD, authenticity_token: csrf }, env: from("203.0.113.50")
    assert_throttled("Too many log-in attempts.")
    assert_equal 0, victim.user_sessions.count

    other = create_user
    post login_path, params: { username: other.username, password: PASSWORD, authenticity_token: csrf }, env: from("203.0.113.50")
    assert_response :redirect, "another account was throttled"
  end

  test "'Get a desktop' by one user: 429 after the limit, and no VM made by the throttled request" do
    limit(:acquire_account, 3)
    pool = make_pool
    alice = create_user
    log_in(alice)
    get root_path
    csrf = page_token
    3.times do
      post acquire_pool_path(pool), params: { authenticity_token: csrf }, env: from("198.51.100.20")
      assert_response :redirect
    end
    vms = store.vms(owner: alice.owner).map { |v| v[:uuid] }
    assert_equal 1, vms.size
    # another address: the account's count still applies
    post acquire_pool_path(pool), params: { authenticity_token: csrf }, env: from("198.51.100.21")
    assert_throttled("Too many requests for a desktop.")
    assert_equal vms, store.vms(owner: alice.owner).map { |v| v[:uuid] }
  end

  test "'Get a desktop' from one address: 429 after the limit, whoever asks" do
    limit(:acquire_ip, 2)
    pool = make_pool
    alice = create_user
    bob = create_user
    log_in(alice)
    submit(:post, acquire_pool_path(pool))
    assert_response :redirect
    log_out
    log_in(bob)
    submit(:post, acquire_pool_path(pool))
    assert_response :redirect
    submit(:post, acquire_pool_path(pool))
    assert_throttled("Too many requests for a desktop.")
  end

  test "resets by one user: 429 after the limit, and the desktop is left alone" do
    limit(:reset_account, 2)
    pool = make_pool
    alice = create_user
    log_in(alice)
    submit(:post, acquire_pool_path(pool))
    uuid = response.location.split("/").last
    2.times do
      submit(:post, reset_desktop_path(uuid), from: desktop_path(uuid))
      assert_response :redirect
      uuid = response.location.split("/").last
      assert_match Desktop::UUID, uuid
    end
    submit(:post, reset_desktop_path(uuid), from: desktop_path(uuid))
    assert_throttled("Too many resets.")
    assert_equal [uuid], store.vms(owner: alice.owner).map { |v| v[:uuid] }, "a throttled reset touched the desktop"
  end

  test "resets from one address: 429 after the limit, whoever asks" do
    limit(:reset_ip, 2)
    pool = make_pool
    alice = create_user
    bob = create_user
    [alice, bob].each do |u|
      log_in(u)
      submit(:post, acquire_pool_path(pool))
      uuid = response.location.split("/").last
      submit(:post, reset_desktop_path(uuid), from: desktop_path(uuid))
      assert_response :redirect
      log_out unless u == bob
    end
    uuid = store.vms(owner: bob.owner).first[:uuid]
    submit(:post, reset_desktop_path(uuid), from: desktop_path(uuid))
    assert_throttled("Too many resets.")
    assert_equal uuid, store.vms(owner: bob.owner).first[:uuid]
  end

  test "a JSON client gets the message as JSON" do
    limit(:login_ip, 0)
    get login_path
    post login_path, params: { username: "x", password: "y", authenticity_token: page_token }, headers: { "Accept" => "application/json" }
    assert_response 429
    assert_match(/Too many log-in attempts\. Try again in \d+ seconds\./, JSON.parse(response.body)["error"])
  end
end
