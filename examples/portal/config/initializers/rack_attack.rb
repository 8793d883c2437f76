# frozen_string_literal: true

# Request throttles (rack-attack, from Debian's ruby-rack-attack): sign-up, log-in, "Get a
# desktop" and reset, each per client address and, where there is an account, per account. Over
# the limit a request gets 429 with a Retry-After header and a sentence saying what to do; the
# request never reaches the app (no user made, no password checked, no VM touched).
#
# Limits come from Portal.config.throttle (PORTAL_THROTTLE_<NAME>=LIMIT/PERIOD_S, see
# config/application.rb) and are read on every request, so tests can lower them. The counters
# live in this process's memory: with several Puma workers each counts for itself (the limits
# then apply per worker). Tests give every test a fresh store (test_helper).
Rack::Attack.cache.store = ActiveSupport::Cache::MemoryStore.new

module Portal
  # The portal's throttles (installed below).
  module Throttles
    LOGIN = %r{\A/login/?\z}.freeze
    SIGNUP = %r{\A/signup/?\z}.freeze
    ACQUIRE = %r{\A/pools/[^/]+/acquire/?\z}.freeze
    RESET = %r{\A/desktops/[^/]+/reset/?\z}.freeze
    MESSAGES = {
      "signup" => "Too many sign-ups from your address.",
      "login" => "Too many log-in attempts.",
      "acquire" => "Too many requests for a desktop.",
      "reset" => "Too many resets."
    }.freeze

    module_function

    # The client's address as Rails sees it (ActionDispatch::RemoteIp: the peer, or the address
    # a trusted proxy on loopback forwarded).
    def ip(req)
      ActionDispatch::Request.new(req.env).remote_ip.to_s
    end

    # The logged-in user of the request's session cookie, or nil: the app's own lookup
    # (UserSession.find_active), without recording activity.
    def user_id(req)
      token = req.env["rack.session"]&.[]("token")
      token.present? ? UserSession.find_active(token)&.user_id : nil
    rescue ActiveRecord::ActiveRecordError
      nil
    end

    def post?(req, pattern)
      req.post? && pattern.match?(req.path)
    end

    # Throttle +name+ (a key of Portal.config.throttle) with the limit configured at the time of
    # each request.
    def throttle(name, &block)
      Rack::Attack.throttle(name.to_s, limit: ->(_req) { Portal.config.throttle[name][:limit] },
                                       period: ->(_req) { Portal.config.throttle[name][:period] }, &block)
    end

    # 429 with Retry-After and a sentence (HTML, or JSON for a client that asks for it).
    def respond(req)
      data = req.env["rack.attack.match_data"] || {}
      period = data[:period].to_i
      retry_after = period.positive? ? period - (data[:epoch_time].to_i % period) : 60
      what = MESSAGES.fetch(req.env["rack.attack.matched"].to_s.sub(/_(ip|account)\z/, ""), "Too many requests.")
      message = "#{what} Try again in #{retry_after} seconds."
      headers = { "Retry-After" => retry_after.to_s, "Cache-Control" => "no-store" }
      if req.get_header("HTTP_ACCEPT").to_s.include?("application/json")
        return [429, headers.merge("Content-Type" => "application/json"), [{ error: message }.to_json]]
      end

      body = <<~HTML
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>Too many requests · vmpool portal</title>
        <link rel="stylesheet" href="/portal.css"></head>
        <body><main><section class="card narrow"><h1>Too many requests</h1>
        <p class="flash alert" role="alert" id="throttled">#{ERB::Util.html_escape(message)}</p>
        <p><a href="/">Back</a></p></section></main></body></html>
      HTML
      [429, headers.merge("Content-Type" => "text/html; charset=utf-8"), [body]]
    end

    def install!
      throttle(:signup_ip) { |req| ip(req) if post?(req, SIGNUP) }
      throttle(:login_ip) { |req| ip(req) if post?(req, LOGIN) }
      # A guessed account is tried from many addresses: its name counts wherever the tries come from.
      throttle(:login_account) { |req| req.params["username"].to_s.downcase.presence if post?(req, LOGIN) }
      throttle(:acquire_ip) { |req| ip(req) if post?(req, ACQUIRE) }
      throttle(:acquire_account) { |req| user_id(req) if post?(req, ACQUIRE) }
      throttle(:reset_ip) { |req| ip(req) if post?(req, RESET) }
      throttle(:reset_account) { |req| user_id(req) if post?(req, RESET) }
      Rack::Attack.throttled_responder = ->(req) { respond(req) }
    end
  end
end

Portal::Throttles.install!
