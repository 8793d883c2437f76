# frozen_string_literal: true

module Admin
  # Users: list (with their VMs), create, make admin or not, reset a password, delete.
  class UsersController < BaseController
    def index
      @users = User.order(:username)
      @vms_by_owner = Portal.store.vms.group_by { |v| v[:owner] }
    end

    def new
      @user = User.new
    end

    def create
      @user = User.new(params.require(:user).permit(:username, :password, :admin))
      if @user.save_unique
        redirect_to admin_users_path, notice: "User #{@user.username} created."
      else
        render :new, status: :unprocessable_entity
      end
    end

    def update
      user = User.find(params[:id])
      attrs = params.require(:user).permit(:admin, :password)
      attrs.delete(:password) if attrs[:password].blank?
      if user == current_user && attrs.key?(:admin) && attrs[:admin] != "1"
        return redirect_to(admin_users_path, alert: "You cannot take away your own admin rights.")
      end
      if user.update(attrs)
        user.user_sessions.delete_all if attrs[:password].present? # log them out everywhere
        redirect_to admin_users_path, notice: "User #{user.username} updated."
      else
        redirect_to admin_users_path, alert: user.errors.full_messages.to_sentence
      end
    end

    # Deletes the user's VMs first (releasing pool VMs to their pool), then the user.
    def destroy
      user = User.find(params[:id])
      return redirect_to(admin_users_path, alert: "You cannot delete yourself.") if user == current_user

      Desktop.for_user(user).each { |vm| Desktop.destroy(vm) }
      user.destroy!
      redirect_to admin_users_path, notice: "User #{user.username} and their desktops deleted."
    rescue Vmpool::Error => e
      redirect_to admin_users_path, alert: vmpool_message(e)
    end
  end
end
