# frozen_string_literal: true

class ApplicationController < ActionController::Base
  protect_from_forgery with: :exception
  before_action :require_login
  helper_method :current_user, :current_session, :signup_open?

  rescue_from Desktop::NotFound, ActiveRecord::RecordNotFound do
    respond_to do |f|
      f.html { render "errors/not_found", status: :not_found }
      f.any { head :not_found }
    end
  end

  private

  def current_session
    return @current_session if defined?(@current_session)

    @current_session = UserSession.find_active(session[:token])
    @current_session&.seen!
    @current_session
  end

  def current_user
    current_session&.user
  end

  def signup_open?
    Portal.config.signup
  end

  def require_login
    return if current_user

    session[:return_to] = request.fullpath if request.get? && request.format.html?
    respond_to do |f|
      f.html { redirect_to login_path, alert: "Please log in." }
      f.any { head :unauthorized }
    end
  end

  def require_admin
    raise Desktop::NotFound unless current_user&.admin?
  end

  # A new session for +user+: the old session id is dropped first (no fixation).
  def sign_in(user)
    reset_session
    _s, token = UserSession.start!(user, ip: request.remote_ip, user_agent: request.user_agent)
    session[:token] = token
  end

  def sign_out
    current_session&.destroy
    @current_session = nil
    reset_session
  end

  def console_ws_url
    Portal.console_ws_url(request)
  end

  def no_store
    response.headers["Cache-Control"] = "no-store"
  end

  # The library's error for a person: its code name and message.
  def vmpool_message(error)
    name = error.respond_to?(:name) && error.name ? error.name : error.class.name
    "#{name}: #{error.message}"
  end
end
