# frozen_string_literal: true

# A console WebSocket open now, as the console proxy reports it: the proxy names each WebSocket
# with a random id, sends it with every resolve of its token (the first one, and the re-check
# every 15 s while it is open) and reports its end (Internal::ConsoleController#close). A user
# may have at most Portal.config.console_max_connections (PORTAL_CONSOLE_MAX_CONNECTIONS) of them
# at once; the next is refused before anything reaches a VM. Each one is a process of the proxy
# and a connection to QEMU's SPICE server, which a token alone could otherwise open without end.
#
# A connection whose proxy process died without reporting its end (killed, the proxy restarted)
# stops counting once it has not been re-checked for STALE seconds.
class ConsoleConnection < ApplicationRecord
  belongs_to :user
  belongs_to :console_token

  STALE = 60 # s: four missed re-checks

  # Count connection +conn_id+ of +user_id+ through +token+ as open (again: a re-check of a
  # connection already counted refreshes it). false when the user has the maximum open already.
  def self.open!(token, user_id, conn_id, now: Time.current)
    transaction do
      # One user's connections are counted and added one request at a time: this update locks
      # the user's row until the transaction ends (PostgreSQL), or takes SQLite's write lock,
      # before anything is read (so the spice-html5 channels that open together cannot all see
      # room for one more).
      User.where(id: user_id).update_all("updated_at = updated_at")
      where("last_seen_at < ?", now - STALE).delete_all
      if where(conn_id: conn_id, user_id: user_id).update_all(last_seen_at: now, updated_at: now) == 1
        true
      elsif where(user_id: user_id).count >= Portal.config.console_max_connections # the stale ones are gone
        false
      else
        create!(user_id: user_id, console_token: token, conn_id: conn_id, last_seen_at: now)
        true
      end
    end
  end

  # +user+'s connections that count now.
  def self.open_for(user, now: Time.current)
    where(user: user).where("last_seen_at >= ?", now - STALE)
  end

  # The proxy's WebSocket +conn_id+ has ended.
  def self.close!(conn_id)
    where(conn_id: conn_id).delete_all
  end
end
