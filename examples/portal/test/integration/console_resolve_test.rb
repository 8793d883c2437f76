# frozen_string_literal: true

require "test_helper"

# The endpoint the console proxy asks for each WebSocket: token (+ the browser's forwarded cookie)
# -> the VM's SPICE socket, or a refusal.
class ConsoleResolveTest < ActionDispatch::IntegrationTest
  SECRET = "test-proxy-secret"

  setup do
    @alice = create_user
    @vm = make_vm(@alice, start: true)
  end

  teardown { cleanup_vm(@vm[:uuid]) }

  def page_ticket(sess = self)
    sess.get desktop_path(@vm[:uuid])
    sess.css_select("#desktop").first["data-token"]
  end

  # The proxy's question for one WebSocket (+conn+: its id; a new one unless given).
  def resolve(token, sess: self, secret: SECRET, env: {}, open: false, conn: SecureRandom.hex(16))
    headers = { "X-Portal-Proxy-Secret" => secret, "X-Console-Token" => token, "X-Console-Connection" => conn }
    headers["X-Console-Open"] = "1" if open
    sess.get "/internal/console/resolve", headers: headers, env: env
    sess.response
  end

  # The proxy reporting the end of WebSocket +conn+.
  def closed(conn, secret: SECRET)
    post "/internal/console/close", headers: { "X-Portal-Proxy-Secret" => secret, "X-Console-Connection" => conn }
    response
  end

  test "the owner's browser gets the VM's SPICE socket" do
    log_in(@alice)
    token = page_ticket
    r = resolve(token)
    assert_equal 200, r.status, r.body
    body = JSON.parse(r.body)
    assert_equal "unix", body["kind"]
    assert_equal store.vm_status(@vm[:uuid]).dig(:run, :spice, :path), body["path"]
  end

  test "only the proxy may ask: loopback and the shared secret" do
    log_in(@alice)
    token = page_ticket
    assert_equal 404, resolve(token, secret: "wrong").status
    assert_equal 404, resolve(token, secret: "").status
    assert_equal 404, resolve(token, env: { "REMOTE_ADDR" => "10.1.2.3" }).status
    assert_equal 200, resolve(token).status
  end

  test "a token used from another browser, after logout, or after expiry is refused" do
    log_in(@alice)
    token = page_ticket

    other = open_session
    other.extend(PortalTestHelpers) # nothing else: a browser with no login
    assert_equal 403, resolve(token, sess: other).status, "a token without its session cookie was accepted"

    bob = create_user
    b = open_session
    b.get login_path
    b.post login_path, params: { username: bob.username, password: PASSWORD,
                                 authenticity_token: b.css_select('meta[name="csrf-token"]').first["content"] }
    r = resolve(token, sess: b)
    assert_equal 403, r.status
    assert_equal "token of another session", JSON.parse(r.body)["error"]

    # the same user, logged in in a second browser: still not that session's token
    a2 = open_session
    a2.get login_path
    a2.post login_path, params: { username: @alice.username, password: PASSWORD,
                                  authenticity_token: a2.css_select('meta[name="csrf-token"]').first["content"] }
    assert_equal 403, resolve(token, sess: a2).status

    assert_equal 200, resolve(token).status
    travel(Portal.config.console_ttl + 2) do
      r = resolve(token)
      assert_equal 403, r.status
      assert_match(/expired|session ended/, JSON.parse(r.body)["error"])
    end
    # the proxy's re-check of a console it opened with the token: the expiry does not count then,
    # the cookie binding does
    travel(Portal.config.console_ttl + 2) do
      assert_equal 200, resolve(token, open: true).status, "an open console was refused for the token's expiry"
      assert_equal 403, resolve(token, sess: b, open: true).status
    end

    fresh = page_ticket
    assert_equal 200, resolve(fresh).status
    log_out
    assert_equal 403, resolve(fresh).status, "a token outlived its session's logout"
    assert_equal 403, resolve(fresh, open: true).status, "an open console outlived its session's logout"
  end

  test "a user's open console connections are capped: one more is refused until one closes" do
    Portal.config.console_max_connections = 3
    log_in(@alice)
    token = page_ticket
    conns = Array.new(3) { SecureRandom.hex(16) }
    conns.each { |c| assert_equal 200, resolve(token, conn: c).status, "connection #{c} refused below the cap" }
    assert_equal 3, ConsoleConnection.where(user: @alice).count
    get status_desktop_path(@vm[:uuid])
    assert_equal [3, 3], JSON.parse(response.body).values_at("console_connections", "console_connections_max")

    # a fourth WebSocket with the same token, or with another page's token of the same user
    r = resolve(token)
    assert_equal 403, r.status
    assert_match(/too many open console connections \(at most 3\)/, JSON.parse(r.body)["error"])
    other_page = page_ticket
    assert_equal 403, resolve(other_page).status
    assert_equal 3, ConsoleConnection.where(user: @alice).count

    # the re-check of an open one is no new connection
    assert_equal 200, resolve(token, conn: conns[0], open: true).status
    assert_equal 3, ConsoleConnection.where(user: @alice).count

    # one closes: room for one more, and only one
    assert_equal 204, closed(conns[1]).status
    assert_equal 200, resolve(other_page).status
    assert_equal 403, resolve(other_page).status

    # another user is not affected
    bob = create_user
    b = open_session
    b.get login_path
    b.post login_path, params: { username: bob.username, password: PASSWORD,
                                 authenticity_token: b.css_select('meta[name="csrf-token"]').first["content"] }
    bob_vm = make_vm(bob, start: true)
    b.get desktop_path(bob_vm[:uuid])
    assert_equal 200, resolve(b.css_select("#desktop").first["data-token"], sess: b).status

    # connections whose proxy died without a word stop counting once no re-check came for a while
    travel(ConsoleConnection::STALE + 1) do
      assert_equal 200, resolve(token).status
    end
  ensure
    cleanup_vm(bob_vm[:uuid]) if bob_vm
  end

  test "the proxy must name the connection, and only the proxy may report one closed" do
    log_in(@alice)
    token = page_ticket
    conn = SecureRandom.hex(16)
    assert_equal 200, resolve(token, conn: conn).status
    assert_equal 400, resolve(token, conn: "").status
    assert_equal 400, resolve(token, conn: "not hex!").status
    assert_equal 404, closed(conn, secret: "wrong").status
    assert_equal 1, ConsoleConnection.where(conn_id: conn).count
    assert_equal 204, closed(conn).status
    assert_equal 0, ConsoleConnection.where(conn_id: conn).count
  end

  test "logging out forgets the session's connections" do
    log_in(@alice)
    token = page_ticket
    assert_equal 200, resolve(token).status
    assert_equal 1, ConsoleConnection.where(user: @alice).count
    log_out
    assert_equal 0, ConsoleConnection.where(user: @alice).count
  end
end
