# frozen_string_literal: true

require_relative "boot"

require "rails"
require "active_model/railtie"
require "active_record/railtie"
require "action_controller/railtie"
require "action_view/railtie"
require "rails/test_unit/railtie"

Bundler.require(*Rails.groups)

module Portal
  # Where server-path image imports may come from unless PORTAL_IMPORT_DIRS says otherwise: the
  # test template's directory (scripts/make-test-image) and the portal's own images directory.
  # Directories with root-owned parents only: not under /tmp or /var/tmp, where any local user
  # could make the directory first and put a file of their choosing there.
  DEFAULT_IMPORT_DIRS = "/var/cache/vmpool/test-image:/var/lib/vmpool-portal/images"

  # The vmpool web portal: users get desktops (VMs from the library's pools) in the browser.
  class Application < Rails::Application
    config.load_defaults 6.1
    config.generators.system_tests = nil
    config.time_zone = "UTC"

    # No asset pipeline: the few stylesheets and scripts are plain files in public/, served by
    # Rails itself (the portal listens on 127.0.0.1 with nothing in front of it by default).
    config.public_file_server.enabled = true

    # Sessions live in the database (UserSession, with absolute and idle expiry); the cookie only
    # carries an encrypted reference to that row.
    config.session_store :cookie_store, key: "_vmpool_portal", httponly: true, same_site: :lax,
                                        secure: ENV["PORTAL_SECURE_COOKIES"] == "1"

    # Settings read from the environment (see README).
    config.x.portal = ActiveSupport::OrderedOptions.new
    env = ENV
    config.x.portal.store_uri = env.fetch("VMPOOL_STORE", "dir:/var/lib/vmpool-portal/store?accel=tcg")
    config.x.portal.state_dir = env.fetch("PORTAL_STATE_DIR", Rails.root.join("tmp", "state").to_s)
    config.x.portal.session_ttl = Integer(env.fetch("PORTAL_SESSION_TTL", 8 * 3600))   # absolute, s
    config.x.portal.session_idle = Integer(env.fetch("PORTAL_SESSION_IDLE", 30 * 60)) # idle, s
    config.x.portal.console_ttl = Integer(env.fetch("PORTAL_CONSOLE_TTL", 120))       # SPICE ticket, s
    # The desktop page warns this long before a pool's session limit (max_session_s) ends it.
    config.x.portal.session_end_warning = Integer(env.fetch("PORTAL_SESSION_END_WARNING", 300)) # s
    # /metrics for a Prometheus scraper: "Authorization: Bearer <this>" (at least 32 characters),
    # besides an admin's session. Unset: admins only.
    config.x.portal.metrics_token = env["PORTAL_METRICS_TOKEN"].presence
    config.x.portal.console_port = Integer(env.fetch("PORTAL_CONSOLE_PORT", 6080))
    config.x.portal.console_url = env["PORTAL_CONSOLE_URL"].presence # e.g. wss://host/console
    config.x.portal.console_cookie_bound = env.fetch("PORTAL_CONSOLE_COOKIE_BOUND", "1") == "1"
    config.x.portal.proxy_secret = env["PORTAL_PROXY_SECRET"].presence
    # Sign-up is off unless PORTAL_SIGNUP=1: an open portal hands a VM to anyone who can reach it.
    config.x.portal.signup = env["PORTAL_SIGNUP"] == "1"
    # The host name the portal is reached by: the only Host header it answers (production, test),
    # and the host of the console URL and of the CSP's connect-src (never the request's Host).
    config.x.portal.host = env.fetch("PORTAL_HOST", "127.0.0.1")
    config.x.portal.force_ssl = env["PORTAL_FORCE_SSL"] == "1" # production: https only, with HSTS
    config.x.portal.import_dirs = env.fetch("PORTAL_IMPORT_DIRS", DEFAULT_IMPORT_DIRS)
                                     .split(":").reject(&:empty?)
    # Open console WebSockets (one per SPICE channel, 4-6 for a desktop page) a user may have at
    # once; the console proxy reports each one opening and closing (see ConsoleConnection).
    config.x.portal.console_max_connections = Integer(env.fetch("PORTAL_CONSOLE_MAX_CONNECTIONS", 30))
    # Request throttles (rack-attack, config/initializers/rack_attack.rb): "LIMIT/PERIOD_S".
    config.x.portal.throttle = ActiveSupport::OrderedOptions.new
    {
      signup_ip: "5/3600",         # sign-ups from one address
      login_ip: "30/300",          # log-in attempts from one address
      login_account: "10/300",     # log-in attempts for one account name, from anywhere
      acquire_ip: "60/60",         # "Get a desktop" from one address
      acquire_account: "20/60",    # "Get a desktop" by one user
      reset_ip: "30/300",          # resets from one address
      reset_account: "10/300"      # resets by one user
    }.each do |name, default|
      limit, period = env.fetch("PORTAL_THROTTLE_#{name.upcase}", default).split("/", 2).map { |v| Integer(v, 10) }
      config.x.portal.throttle[name] = { limit: limit, period: period }
    end
    config.x.portal.spice_html5_dir = env.fetch("SPICE_HTML5_DIR", "/usr/share/spice-html5")
    config.x.portal.refill = env["PORTAL_REFILL"] == "1"
    config.x.portal.refill_interval = Float(env.fetch("PORTAL_REFILL_INTERVAL", 10))
  end
end
