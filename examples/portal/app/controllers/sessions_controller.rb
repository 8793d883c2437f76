# frozen_string_literal: true

# Log in and out.
class SessionsController < ApplicationController
  skip_before_action :require_login, only: %i[new create]

  def new
    redirect_to root_path if current_user
  end

  def create
    user = User.authenticate(params[:username], params[:password])
    unless user
      flash.now[:alert] = "Wrong name or password."
      return render :new, status: :unprocessable_entity
    end
    back = session[:return_to]
    sign_in(user)
    redirect_to(back.presence || landing_path_for(user))
  end

  # Each pool's on_logout says what becomes of the user's desktops: kept, or released for a
  # fresh one next time (their home stays). A store that cannot be reached does not keep
  # anyone signed in.
  def destroy
    owner = current_user.owner
    sign_out
    begin
      Portal.store.logout(owner)
    rescue Vmpool::Error => e
      Rails.logger.warn("logout of #{owner}: #{e.message}")
    end
    redirect_to login_path, notice: "Logged out."
  end

  private

  # The seed's redirect: someone who holds exactly one desktop lands on it.
  def landing_path_for(user)
    vms = Desktop.for_user(user)
    vms.size == 1 ? desktop_path(vms.first[:uuid]) : root_path
  rescue Vmpool::Error
    root_path
  end
end
