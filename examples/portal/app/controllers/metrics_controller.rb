# frozen_string_literal: true

# Prometheus text exposition of what the store's VMs use and how full its pools are (Metrics),
# for a scraper with the bearer token PORTAL_METRICS_TOKEN, or an admin in a browser. Anyone
# else gets 401 (no credentials, or a wrong token) or 404 (a signed-in user who is no admin, as
# every admin page answers them).
class MetricsController < ApplicationController
  skip_before_action :require_login
  # A scraper has no session and sends no CSRF token; the endpoint only reads.
  skip_forgery_protection

  TOKEN_MIN = 32

  def show
    unless bearer_ok?
      if request.authorization.present? || current_user.nil?
        response.headers["WWW-Authenticate"] = 'Bearer realm="vmpool metrics"'
        return head :unauthorized
      end
      require_admin
    end
    render plain: Metrics.new(Portal.store).exposition, content_type: "text/plain; version=0.0.4; charset=utf-8"
  end

  private

  def bearer_ok?
    want = Portal.config.metrics_token
    return false if want.nil? || want.length < TOKEN_MIN

    got = request.authorization.to_s[/\ABearer (.+)\z/, 1]
    got.present? && ActiveSupport::SecurityUtils.secure_compare(got, want)
  end
end
