# frozen_string_literal: true

require "test_helper"

# The portal's host name is configured (PORTAL_HOST; www.example.com in the tests): a request with
# another Host header is refused, and the page's console URL and CSP name the configured host,
# never the request's.
class HostTest < ActionDispatch::IntegrationTest
  test "a forged Host header is refused: no page, no log-in" do
    u = create_user
    host! "evil.example"
    get login_path
    assert_response :forbidden
    refute_includes response.body, "csrf-token"
    post login_path, params: { username: u.username, password: PASSWORD }
    assert_response :forbidden
    assert_equal 0, u.user_sessions.count
    host! "evil.example:3000"
    get login_path
    assert_response :forbidden
    host! Portal.config.host
    get login_path
    assert_response :success
  end

  test "the console proxy's own request on loopback is answered whatever its Host; from elsewhere it is not" do
    get "/internal/console/resolve", headers: { "Host" => "127.0.0.1:3000", "X-Portal-Proxy-Secret" => "test-proxy-secret",
                                                "X-Console-Token" => "bogus", "X-Console-Connection" => "ab" * 16 }
    assert_response :forbidden
    assert_equal "unknown token", JSON.parse(response.body)["error"], "the host check answered, not the endpoint"
    get "/internal/console/resolve", headers: { "Host" => "127.0.0.1:3000", "X-Portal-Proxy-Secret" => "test-proxy-secret",
                                                "X-Console-Token" => "bogus", "X-Console-Connection" => "ab" * 16 },
                                     env: { "REMOTE_ADDR" => "10.1.2.3" }
    assert_response :forbidden
    assert_match(/Blocked host/, response.body)
  end

  test "the console URL and the CSP name the configured host, not the request's" do
    u = create_user
    vm = make_vm(u, start: true)
    Portal.config.host = "portal.test" # the request still comes to www.example.com, which passes
    log_in(u)
    get desktop_path(vm[:uuid])
    assert_response :success
    port = Portal.config.console_port
    assert_equal "ws://portal.test:#{port}/", css_select("#desktop").first["data-ws-url"]
    csp = response.headers["Content-Security-Policy"]
    assert_match(/connect-src 'self' ws:\/\/portal\.test:#{port}(;|$)/, csp)
    refute_includes csp, "www.example.com"
    post console_desktop_path(vm[:uuid]), headers: { "X-CSRF-Token" => page_token, "Accept" => "application/json" }
    assert_equal "ws://portal.test:#{port}/", JSON.parse(response.body)["ws_url"]

    Portal.config.host = "::1"
    get desktop_path(vm[:uuid])
    assert_equal "ws://[::1]:#{port}/", css_select("#desktop").first["data-ws-url"]
  ensure
    cleanup_vm(vm[:uuid]) if vm
  end
end
