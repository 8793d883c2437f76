# frozen_string_literal: true

# Sign up (when PORTAL_SIGNUP is on; admins can always create users in the admin pages).
class UsersController < ApplicationController
  skip_before_action :require_login
  before_action { raise Desktop::NotFound unless signup_open? }

  def new
    @user = User.new
  end

  def create
    @user = User.new(params.require(:user).permit(:username, :password, :password_confirmation))
    @user.password_confirmation = "" if @user.password_confirmation.nil?
    if @user.save_unique
      sign_in(@user)
      redirect_to root_path, notice: "Welcome, #{@user.username}."
    else
      render :new, status: :unprocessable_entity
    end
  end
end
