# frozen_string_literal: true

# One user's desktop: the screen in the page (spice-html5 through the console proxy), its
# controls, a thumbnail, a .vv file. Every action first finds the VM among the user's own
# (Desktop.find_owned!): another user's VM is a 404, exactly like one that does not exist.
class DesktopsController < ApplicationController
  before_action :load_vm
  before_action :no_store, only: %i[show console vv status]

  def show
    @ticket = ticket_for_page if live?
    @acquire = flash[:acquire]
    @ws_url = console_ws_url
  end

  # A ticket (JSON) for the page to (re)connect with; a new SPICE password when the page says its
  # last connection failed (fresh=1).
  def console
    return render(json: { error: "the desktop is #{@vm[:state]}" }, status: :conflict) unless live?

    render json: new_ticket(fresh: params[:fresh].present?)
  end

  # A remote-viewer connection file (with this session's current ticket, valid up to
  # PORTAL_CONSOLE_TTL s).
  def vv
    return head(:conflict) unless live?

    vv = Desktop.vv_file(@vm, console_ticket(@vm[:uuid])[:password])
    return head(:conflict) unless vv

    send_data vv, filename: "#{@vm[:alias]}.vv", type: "application/x-virt-viewer", disposition: "attachment"
  end

  def thumbnail
    png = Desktop.screenshot_png(@vm)
    return head(:no_content) unless png

    response.headers["Cache-Control"] = "private, max-age=5"
    send_data png, type: "image/png", disposition: "inline"
  end

  # The desktop's state, and how many console WebSockets its owner has open now (of the most
  # they may: PORTAL_CONSOLE_MAX_CONNECTIONS).
  def status
    render json: { uuid: @vm[:uuid], state: @vm[:state], pool: @vm[:pool],
                   console_connections: ConsoleConnection.open_for(current_user).count,
                   console_connections_max: Portal.config.console_max_connections }
  end

  def start
    if @vm[:state] == "paused"
      Desktop.resume(@vm)
    else
      Desktop.start(@vm)
    end
    redirect_to desktop_path(@vm[:uuid])
  rescue Vmpool::Error => e
    redirect_to desktop_path(@vm[:uuid]), alert: vmpool_message(e)
  end

  def stop
    Desktop.stop(@vm)
    redirect_to desktop_path(@vm[:uuid]), notice: "#{@vm[:alias]} stopped."
  rescue Vmpool::Error => e
    redirect_to desktop_path(@vm[:uuid]), alert: vmpool_message(e)
  end

  # Reset: give the VM back to its pool, which wipes it (on_release "reset") or destroys it, and
  # get a fresh desktop from the same pool at once (with the ticket the library made with it, as
  # "Get a desktop" does).
  def reset
    pool = @vm[:pool]
    return redirect_to(desktop_path(@vm[:uuid]), alert: "This desktop is in no pool.") unless pool

    Desktop.release(@vm)
    redirect_to hand_over(Desktop.acquire(current_user, pool, guest_user)), notice: "Your desktop was reset."
  rescue Vmpool::Error => e
    redirect_to root_path, alert: vmpool_message(e)
  end

  def destroy
    Desktop.destroy(@vm)
    redirect_to root_path, notice: "#{@vm[:alias]} deleted."
  rescue Vmpool::Error => e
    redirect_to desktop_path(@vm[:uuid]), alert: vmpool_message(e)
  end

  private

  def load_vm
    @vm = Desktop.find_owned!(current_user, params[:id])
  end

  def live?
    %w[running paused].include?(@vm[:state])
  end

  # A ticket for this session and VM: a still-valid one again (console_ticket), so that a second
  # page of the desktop or a .vv download does not change the SPICE password under the first
  # page.
  def new_ticket(fresh: false)
    { vm: @vm[:uuid], ws_url: console_ws_url, **console_ticket(@vm[:uuid], fresh: fresh).except(:run) }
  end

  # The ticket acquire just made for this VM (passed in the flash), else a new one.
  def ticket_for_page
    t = flash[:console]
    if t.is_a?(Hash) && t["vm"] == @vm[:uuid] && t["expires_at_unix"].to_i > Time.now.to_i + 10
      return { vm: @vm[:uuid], ws_url: console_ws_url, token: t["token"], password: t["password"],
               expires_at_unix: t["expires_at_unix"] }
    end
    new_ticket
  rescue Vmpool::InvalidState
    nil
  end
end
