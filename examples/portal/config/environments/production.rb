# frozen_string_literal: true

Rails.application.configure do
  config.cache_classes = true
  config.eager_load = true
  config.consider_all_requests_local = false
  config.action_controller.perform_caching = true
  config.log_level = ENV.fetch("RAILS_LOG_LEVEL", "info").to_sym
  config.log_tags = [:request_id]
  config.i18n.fallbacks = true
  config.active_support.deprecation = :notify
  config.log_formatter = ::Logger::Formatter.new
  if ENV["RAILS_LOG_TO_STDOUT"].present?
    logger = ActiveSupport::Logger.new($stdout)
    logger.formatter = config.log_formatter
    config.logger = ActiveSupport::TaggedLogging.new(logger)
  end
  config.active_record.dump_schema_after_migration = false

  # Only requests for the configured host (PORTAL_HOST) are answered; any other Host header gets
  # a 403 ("Blocked host"), so nothing the page builds (the console URL, the CSP, redirects) can
  # come from a forged one. The console proxy asks its internal endpoint on 127.0.0.1.
  config.hosts = [config.x.portal.host]
  config.host_authorization = { exclude: ->(request) { Portal.internal_request?(request) } }

  # PORTAL_FORCE_SSL=1: http is redirected to https, cookies are marked Secure, and HSTS tells
  # browsers to use https only (for a year; the portal's host only, not its parent's subdomains).
  # The console proxy's request to the internal endpoint stays plain http on loopback.
  if config.x.portal.force_ssl
    config.force_ssl = true
    config.ssl_options = { hsts: { expires: 365 * 24 * 3600, subdomains: false },
                           redirect: { exclude: ->(request) { Portal.internal_request?(request) } } }
  end
end
