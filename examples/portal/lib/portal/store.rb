# frozen_string_literal: true

require "vmpool"

module Portal
  @store_lock = Mutex.new

  class << self
    # The process's open vmpool store (URI from VMPOOL_STORE, see config/application.rb).
    def store
      s = @store
      return s if s && @store_pid == Process.pid

      @store_lock.synchronize do
        if @store.nil? || @store_pid != Process.pid
          @store = Vmpool::Store.open(config.store_uri)
          @store_pid = Process.pid
        end
        @store
      end
    end

    # Close and forget the handle (tests that switch stores; forks do it implicitly).
    def reset_store!
      @store_lock.synchronize do
        @store&.close if @store_pid == Process.pid
        @store = nil
      end
    end

    def config
      Rails.application.config.x.portal
    end

    # Where the browser opens the console WebSocket: PORTAL_CONSOLE_URL, else the console proxy's
    # port on the portal's configured host (PORTAL_HOST, the host the page is loaded from, so the
    # browser sends the proxy the same cookies). Never the request's Host header: a forged one
    # must not become the page's console URL or its CSP's connect-src.
    def console_ws_url(request)
      config.console_url || "#{request.ssl? ? 'wss' : 'ws'}://#{url_host(config.host)}:#{config.console_port}/"
    end

    # An IPv6 address goes in brackets in a URL.
    def url_host(host)
      host.include?(":") && !host.start_with?("[") ? "[#{host}]" : host
    end

    # The console proxy's requests: /internal/ from the loopback address (the endpoint itself
    # also wants the proxy's secret). Exempt from the Host check and from the https redirect.
    def internal_request?(request)
      request.path.start_with?("/internal/") && %w[127.0.0.1 ::1].include?(request.remote_addr.to_s)
    end

    def console_ws_origin(request)
      u = URI.parse(console_ws_url(request))
      "#{u.scheme}://#{u.host}#{u.port ? ":#{u.port}" : ''}"
    end

    # Where the portal keeps files of its own (uploads, thumbnails).
    def state_path(*parts)
      File.join(config.state_dir, *parts.map(&:to_s))
    end
  end
end
