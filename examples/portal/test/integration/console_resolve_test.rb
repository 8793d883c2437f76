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

  def resolve(token, sess: self, secret: SECRET, env: {}, open: false)
    headers = { "X-Portal-Proxy-Secret" => secret, "X-Console-Token" => token }
    headers["X-Console-Open"] = "1" if open
    sess.get "/internal/console/resolve", headers: headers, env: env
    sess.response
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
end
