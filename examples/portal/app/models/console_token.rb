# frozen_string_literal: true

# A short-lived bearer token that lets one login session reach one VM's SPICE console through the
# console proxy. It expires with the SPICE ticket it was issued with (or the session, if that ends
# first). The proxy resolves it on every WebSocket it accepts (spice-html5 opens one per SPICE
# channel) by asking the portal (Internal::ConsoleController), which refuses it when it is unknown,
# expired, its session ended or is not the browser's, or the VM is no longer the user's; and again
# every few seconds while the console is open, then without the expiry.
class ConsoleToken < ApplicationRecord
  belongs_to :user_session
  has_many :console_connections, dependent: :delete_all

  # A ticket must have this long left to be handed out again (the page connects at once; a later
  # reconnect asks anew).
  REUSE_MIN_LEFT = 20 # s

  # Issue a token for +console+ (the Hash store.console returned, or a ticket the session
  # kept). Returns the plain token. The row keeps the token's and the SPICE password's SHA-256,
  # never the password: only the page and the session that got it hold the password (see
  # .ticket!). +run+ names the QEMU process the password was set on (Desktop.run_id).
  def self.issue!(user_session, vm_uuid, console, run: nil)
    token = SecureRandom.urlsafe_base64(32)
    now = Time.current
    expires = [Time.zone.at(Integer(console.fetch(:expires_at_unix))), user_session.expires_at].min
    create!(user_session: user_session, vm_uuid: vm_uuid, token_digest: digest(token), expires_at: expires,
            spice_digest: console[:password] && digest(console[:password]), vm_run: run)
    # An open console is re-checked with its token long after the token expired (resolve with
    # open: true), so rows go only once their session is over for sure.
    where("expires_at < ?", now - Portal.config.session_ttl).delete_all
    token
  end

  # A console ticket for +vm_uuid+: {token:, password:, expires_at_unix:, run:}, with a new
  # token. QEMU holds one SPICE password per VM, and every store.console replaces it, which would
  # break the reconnects of every other page of the same desktop. So +kept+, the ticket this
  # session got last for the VM ({password:, expires_at_unix:, run:}, from its encrypted cookie),
  # is handed out again when it is still the VM's current password - the newest ticket issued
  # for the VM (by any session) has its digest and the same QEMU run - and it has REUSE_MIN_LEFT
  # to go. Otherwise, and when +fresh+ (a page whose connection failed: the password may have
  # been replaced behind the portal's back, e.g. by vmpoolctl), the library makes a new one.
  def self.ticket!(user_session, vm_uuid, kept: nil, fresh: false, now: Time.current)
    run = Desktop.run_id(vm_uuid)
    console = reusable(vm_uuid, kept, run, now) unless fresh
    console ||= Desktop.console(vm_uuid)
    { token: issue!(user_session, vm_uuid, console, run: run), password: console[:password],
      expires_at_unix: Integer(console[:expires_at_unix]), run: run }
  end

  # +kept+ (symbol or string keys) as a console Hash if it may be handed out again, else nil.
  def self.reusable(vm_uuid, kept, run, now)
    kept = kept&.to_h&.symbolize_keys
    return nil unless run && kept && kept[:password].present? && kept[:run] == run &&
                      Integer(kept[:expires_at_unix] || 0) > (now + REUSE_MIN_LEFT).to_i

    newest = where(vm_uuid: vm_uuid).order(created_at: :desc, id: :desc).first
    return nil unless newest && newest.vm_run == run && newest.spice_digest &&
                      ActiveSupport::SecurityUtils.secure_compare(newest.spice_digest, digest(kept[:password]))

    { password: kept[:password], expires_at_unix: Integer(kept[:expires_at_unix]) }
  end

  Refusal = Struct.new(:reason)

  # Where +token+ may connect: {kind: "unix", path: ...} (or tcp host/port), or a Refusal with the
  # reason. +browser_session+ is the session of the cookie the WebSocket request carried (nil if
  # none); when +bound+ it must be the session the token was issued to.
  # +open+: the proxy re-checks a console it already opened with this token; its expiry does not
  # matter then (it only limits when a connection may start), the session and the owner do.
  # +connection+: the proxy's id for this WebSocket; a resolved one counts among the user's open
  # console connections (ConsoleConnection), and one more than the user may have is refused.
  def self.resolve(token, browser_session:, bound: true, open: false, connection: nil, now: Time.current)
    t = token.present? && find_by(token_digest: digest(token))
    return Refusal.new("unknown token") unless t
    return Refusal.new("token expired") unless open || t.expires_at > now

    s = t.user_session
    return Refusal.new("session ended") unless s.active?(now)
    return Refusal.new("token of another session") if bound && browser_session&.id != s.id

    vm = Desktop.find_owned(s.user, t.vm_uuid)
    return Refusal.new("VM is not this user's") unless vm

    spice = Desktop.spice_addr(t.vm_uuid)
    return Refusal.new("VM is not running") unless spice

    if connection && !ConsoleConnection.open!(t, s.user_id, connection, now: now)
      return Refusal.new("too many open console connections (at most #{Portal.config.console_max_connections})")
    end

    spice
  end
end
