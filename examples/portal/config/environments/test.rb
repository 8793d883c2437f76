# frozen_string_literal: true

Rails.application.configure do
  config.cache_classes = true
  config.eager_load = false
  config.public_file_server.headers = { "Cache-Control" => "public, max-age=3600" }
  config.consider_all_requests_local = true
  config.action_controller.perform_caching = false
  config.cache_store = :null_store
  config.action_dispatch.show_exceptions = false
  # CSRF protection stays ON in tests: the tests fetch the token from the forms like a browser
  # does, and one test checks that a request without it is refused.
  config.action_controller.allow_forgery_protection = true
  config.active_support.deprecation = :stderr
  config.active_support.disallowed_deprecation = :raise
  config.active_support.disallowed_deprecation_warnings = []
  # As in production: only the configured host (test_helper sets PORTAL_HOST to the integration
  # tests' www.example.com); a test sends a forged Host header and sees it refused.
  config.hosts = [config.x.portal.host]
  config.host_authorization = { exclude: ->(request) { Portal.internal_request?(request) } }
end
