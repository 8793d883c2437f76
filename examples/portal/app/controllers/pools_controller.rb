# frozen_string_literal: true

# "Get a desktop": one library call (acquire) that returns the user's VM of this pool if there is
# one (the seed's redirect: never a second), else a spare or a new VM, with a console ticket.
class PoolsController < ApplicationController
  def acquire
    redirect_to hand_over(Desktop.acquire(current_user, params[:name].to_s, guest_user))
  rescue Vmpool::NotFound
    raise Desktop::NotFound
  rescue Vmpool::Error => e
    msg = e.name == "POOL_EXHAUSTED" ? "No desktop is free in #{params[:name]} right now; try again later." : vmpool_message(e)
    redirect_to root_path, alert: msg
  end
end
