# frozen_string_literal: true

# "Get a desktop": one library call (acquire) that returns the user's VM of this pool if there is
# one (the seed's redirect: never a second), else a spare or a new VM, with a console ticket.
class PoolsController < ApplicationController
  def acquire
    result = Desktop.acquire(current_user, params[:name].to_s)
    vm = result[:vm]
    # The ticket the library made with the VM goes to the desktop page through the (encrypted)
    # session cookie, so that page does not have to ask QEMU for another one.
    if result[:console]
      token = ConsoleToken.issue!(current_session, vm[:uuid], result[:console], run: Desktop.run_id(vm[:uuid]))
      flash[:console] = { "vm" => vm[:uuid], "token" => token, "password" => result[:console][:password],
                          "expires_at_unix" => result[:console][:expires_at_unix] }
    end
    flash[:acquire] = { "path" => result[:path], "spare" => result[:spare] || result[:was], "total_ms" => result[:total_ms] }
    redirect_to desktop_path(vm[:uuid])
  rescue Vmpool::NotFound
    raise Desktop::NotFound
  rescue Vmpool::Error => e
    msg = e.name == "POOL_EXHAUSTED" ? "No desktop is free in #{params[:name]} right now; try again later." : vmpool_message(e)
    redirect_to root_path, alert: msg
  end
end
