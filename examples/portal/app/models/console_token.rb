# frozen_string_literal: true

# A short-lived bearer token that lets one login session reach one VM's SPICE console through the
# console proxy. It expires with the SPICE ticket it was issued with (or the session, if that ends
# first). The proxy resolves it on every WebSocket it accepts (spice-html5 opens one per SPICE
# channel) by asking the portal (Internal::ConsoleController), which refuses it when it is unknown,
# expired, its session ended or is not the browser's, or the VM is no longer the user's.
class ConsoleToken < ApplicationRecord
  belongs_to :user_session

  # Issue a token for +console+ (the Hash store.console returned). Returns the plain token.
  def self.issue!(user_session, vm_uuid, console)
    token = SecureRandom.urlsafe_base64(32)
    expires = [Time.zone.at(Integer(console.fetch(:expires_at_unix))), user_session.expires_at].min
    create!(user_session: user_session, vm_uuid: vm_uuid, token_digest: digest(token), expires_at: expires)
    where("expires_at < ?", Time.current - 1.hour).delete_all
    token
  end

  Refusal = Struct.new(:reason)

  # Where +token+ may connect: {kind: "unix", path: ...} (or tcp host/port), or a Refusal with the
  # reason. +browser_session+ is the session of the cookie the WebSocket request carried (nil if
  # none); when +bound+ it must be the session the token was issued to.
  def self.resolve(token, browser_session:, bound: true, now: Time.current)
    t = token.present? && find_by(token_digest: digest(token))
    return Refusal.new("unknown token") unless t
    return Refusal.new("token expired") unless t.expires_at > now

    s = t.user_session
    return Refusal.new("session ended") unless s.active?(now)
    return Refusal.new("token of another session") if bound && browser_session&.id != s.id

    vm = Desktop.find_owned(s.user, t.vm_uuid)
    return Refusal.new("VM is not this user's") unless vm

    spice = Desktop.spice_addr(t.vm_uuid)
    return Refusal.new("VM is not running") unless spice

    spice
  end
end
