# frozen_string_literal: true

class ApplicationController < ActionController::Base
  protect_from_forgery with: :exception
  before_action :require_login
  helper_method :current_user, :current_session, :signup_open?

  # The library's errors that no action handles itself, as HTTP statuses: the VM or pool changed
  # state under the request (409), the store is busy or full for now (503, try again), QEMU or
  # the store's backend failed (502). Declared before the 404 handler: rescue_from tries the
  # last declared first, and Vmpool::NotFound is a Vmpool::Error too.
  VMPOOL_STATUS = {
    Vmpool::InvalidState => :conflict, Vmpool::AlreadyRunning => :conflict, Vmpool::InUse => :conflict,
    Vmpool::Busy => :service_unavailable, Vmpool::Timeout => :service_unavailable,
    Vmpool::PoolExhausted => :service_unavailable,
    Vmpool::Hypervisor => :bad_gateway, Vmpool::IOError => :bad_gateway, Vmpool::Backend => :bad_gateway
  }.freeze
  RETRY_AFTER = 5 # s, for the 503s

  rescue_from(*VMPOOL_STATUS.keys) do |e|
    status = VMPOOL_STATUS.fetch(VMPOOL_STATUS.keys.find { |k| e.is_a?(k) })
    response.headers["Retry-After"] = RETRY_AFTER.to_s if status == :service_unavailable
    logger.warn("#{request.method} #{request.path}: #{vmpool_message(e)}")
    @error_title = Rack::Utils::HTTP_STATUS_CODES[Rack::Utils.status_code(status)]
    @error_message = vmpool_message(e)
    respond_to do |f|
      f.html { render "errors/vmpool", status: status }
      f.json { render json: { error: e.message, code: e.name }, status: status }
      f.any { head status }
    end
  end

  rescue_from Desktop::NotFound, ActiveRecord::RecordNotFound, Vmpool::NotFound do
    respond_to do |f|
      f.html { render "errors/not_found", status: :not_found }
      f.json { render json: { error: "not found" }, status: :not_found }
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

  # SPICE tickets live in the page and in this session's encrypted cookie (session[:spice], per
  # VM: password, expiry, QEMU run), never in the database, which keeps only their digests
  # (ConsoleToken). Expired ones are dropped whenever one is added; a handful at most.
  KEPT_TICKETS = 8

  def kept_ticket(vm_uuid)
    kept = session[:spice]
    kept.is_a?(Hash) ? kept[vm_uuid] : nil
  end

  def keep_ticket(vm_uuid, ticket)
    now = Time.now.to_i
    kept = session[:spice].is_a?(Hash) ? session[:spice] : {}
    kept = kept.select { |u, k| u != vm_uuid && k.is_a?(Hash) && k["expires_at_unix"].to_i > now }
    kept[vm_uuid] = { "password" => ticket[:password], "expires_at_unix" => ticket[:expires_at_unix].to_i, "run" => ticket[:run] }
    session[:spice] = kept.to_a.last(KEPT_TICKETS).to_h
  end

  # A console ticket for the VM +vm_uuid+ ({token:, password:, expires_at_unix:, run:}): this
  # session's kept one again while it is the VM's current one (ConsoleToken.ticket!), else new.
  def console_ticket(vm_uuid, fresh: false)
    t = ConsoleToken.ticket!(current_session, vm_uuid, kept: kept_ticket(vm_uuid), fresh: fresh)
    keep_ticket(vm_uuid, t)
    t
  end

  # After store.acquire (Get a desktop, reset): the SPICE ticket the library made with the VM is
  # this session's, and goes to the desktop page through the (encrypted) flash, so that the page
  # does not set another password on the VM. Returns the path of the desktop page.
  # The library's `user` object for a desktop handed to the current user now: their name, and
  # their browser's language, keyboard layout and time zone.
  def guest_user
    Portal::GuestUser.for(current_user, accept_language: request.headers["Accept-Language"], timezone: params[:tz])
  end

  def hand_over(result)
    vm = result[:vm]
    if result[:console]
      c = result[:console]
      run = Desktop.run_id(vm[:uuid])
      token = ConsoleToken.issue!(current_session, vm[:uuid], c, run: run)
      keep_ticket(vm[:uuid], { password: c[:password], expires_at_unix: c[:expires_at_unix], run: run })
      flash[:console] = { "vm" => vm[:uuid], "token" => token, "password" => c[:password],
                          "expires_at_unix" => c[:expires_at_unix] }
    end
    flash[:acquire] = { "path" => result[:path], "spare" => result[:spare] || result[:was], "total_ms" => result[:total_ms] }
    desktop_path(vm[:uuid])
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
