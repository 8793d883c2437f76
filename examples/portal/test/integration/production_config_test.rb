# frozen_string_literal: true

require "test_helper"
require "open3"

# The production settings as production loads them: the app booted in a child process with
# RAILS_ENV=production (bin/rails runner), requests made against it with Rack::MockRequest.
# PORTAL_FORCE_SSL=1 redirects http to https and sends HSTS; PORTAL_HOST is the only Host
# answered, also before any redirect; the console proxy's request on loopback gets through both.
class ProductionConfigTest < ActiveSupport::TestCase
  SCRIPT = <<~'RUBY'
    ask = lambda do |url, env = {}|
      u = URI(url) # a browser's request: the Host header as in the URL
      host = u.port == u.default_port ? u.host : "#{u.host}:#{u.port}"
      env = { "REMOTE_ADDR" => "127.0.0.1", "HTTP_HOST" => host }.merge(env)
      status, headers, body = Rails.application.call(Rack::MockRequest.env_for(url, env))
      text = +""
      body.each { |b| text << b }
      body.close if body.respond_to?(:close)
      { status: status, location: headers["Location"], hsts: headers["Strict-Transport-Security"],
        csp: headers["Content-Security-Policy"], cookie: headers["Set-Cookie"].to_s, body: text[0, 200] }
    end
    answers = {
      http: ask.call("http://portal.test/login"),
      https: ask.call("https://portal.test/login"),
      forged_http: ask.call("http://evil.example/login"),
      forged_https: ask.call("https://evil.example/login"),
      proxy: ask.call("http://127.0.0.1:3000/internal/console/resolve"),
      proxy_elsewhere: ask.call("http://127.0.0.1:3000/internal/console/resolve", "REMOTE_ADDR" => "192.0.2.1")
    }
    puts "ANSWERS #{JSON.generate(answers)}"
  RUBY

  def production(env)
    base = { "RAILS_ENV" => "production", "PORTAL_HOST" => "portal.test", "SECRET_KEY_BASE" => SecureRandom.hex(64),
             "PORTAL_SQLITE" => File.join(TEST_ROOT, "production.sqlite3"), "DATABASE_URL" => nil,
             "PORTAL_FORCE_SSL" => nil, "PORTAL_SERVER" => nil, "PORTAL_CONSOLE_URL" => nil, "RAILS_LOG_TO_STDOUT" => "1" }
    out, err, st = Open3.capture3(base.merge(env), "bin/rails", "runner", SCRIPT, chdir: Rails.root.to_s)
    line = out.lines.find { |l| l.start_with?("ANSWERS ") }
    assert st.success? && line, "the production app did not answer:\n#{err}\n#{out}"
    JSON.parse(line.delete_prefix("ANSWERS "), symbolize_names: true)
  end

  test "PORTAL_FORCE_SSL=1: http is redirected to https, with HSTS and Secure cookies; the proxy's request is not" do
    a = production("PORTAL_FORCE_SSL" => "1")
    assert_equal 301, a[:http][:status], a[:http].inspect
    assert_equal "https://portal.test/login", a[:http][:location]
    assert_equal 200, a[:https][:status], a[:https].inspect
    assert_match(/\Amax-age=31536000\z/, a[:https][:hsts])
    assert_match(/_vmpool_portal=.*; secure/i, a[:https][:cookie])
    assert_match(%r{connect-src 'self' wss://portal\.test:6080}, a[:https][:csp])
    # a forged host is refused before any redirect could name it
    assert_equal 403, a[:forged_http][:status], a[:forged_http].inspect
    assert_nil a[:forged_http][:location]
    assert_equal 403, a[:forged_https][:status]
    # the console proxy asks over http on loopback: the endpoint answers (404 without the secret)
    assert_equal 404, a[:proxy][:status], a[:proxy].inspect
    assert_equal 403, a[:proxy_elsewhere][:status]
  end

  test "without PORTAL_FORCE_SSL plain http is served, without HSTS; a forged Host is refused" do
    a = production({})
    assert_equal 200, a[:http][:status], a[:http].inspect
    assert_nil a[:http][:hsts]
    assert_match(%r{connect-src 'self' ws://portal\.test:6080}, a[:http][:csp])
    refute_match(/evil/, a[:http][:csp])
    assert_equal 403, a[:forged_http][:status]
    refute_match(/evil/, a[:forged_http][:body])
  end
end
