# frozen_string_literal: true

module Internal
  # Asked by the console proxy (console_proxy/portal_console_proxy.py) for every WebSocket it is
  # about to open: which SPICE socket may this token reach? Answers only requests from the
  # loopback address that carry the proxy's shared secret. The proxy forwards the browser's
  # Cookie header, so the session is read exactly as for a page request, and a token used from
  # a browser that is not logged in to the session it was issued to is refused. While a console
  # is open the proxy asks again every few seconds (then the token's expiry does not count), and
  # closes it when refused: after log-out, the user's deletion, the VM changing hands.
  #
  # The proxy names each WebSocket (X-Console-Connection, random) and reports its end (close), so
  # that a user's open console connections can be counted and capped (ConsoleConnection).
  class ConsoleController < ApplicationController
    skip_before_action :require_login
    skip_forgery_protection
    before_action :require_proxy
    before_action :require_connection_id

    def resolve
      browser_session = UserSession.find_active(session[:token])
      # "X-Console-Open: 1": the proxy re-checks a console it opened earlier with this token
      r = ConsoleToken.resolve(request.headers["X-Console-Token"].to_s, browser_session: browser_session,
                                                                        bound: Portal.config.console_cookie_bound,
                                                                        open: request.headers["X-Console-Open"] == "1",
                                                                        connection: @connection)
      if r.is_a?(ConsoleToken::Refusal)
        logger.info("console token refused: #{r.reason}")
        render json: { error: r.reason }, status: :forbidden
      else
        render json: r
      end
    end

    # The proxy's WebSocket X-Console-Connection has ended.
    def close
      ConsoleConnection.close!(@connection)
      head :no_content
    end

    private

    def require_connection_id
      @connection = request.headers["X-Console-Connection"].to_s
      render json: { error: "no connection id" }, status: :bad_request unless @connection.match?(/\A[0-9a-f]{16,64}\z/)
    end

    def require_proxy
      secret = Portal.config.proxy_secret
      ok = secret && request.remote_addr.to_s.then { |a| a == "127.0.0.1" || a == "::1" } &&
           ActiveSupport::SecurityUtils.secure_compare(request.headers["X-Portal-Proxy-Secret"].to_s, secret)
      head :not_found unless ok
    end
  end
end
