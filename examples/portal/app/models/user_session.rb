# frozen_string_literal: true

# A login. The browser's (encrypted) cookie holds a random token; this row holds its SHA-256,
# the absolute expiry (PORTAL_SESSION_TTL) and the last activity (idle expiry,
# PORTAL_SESSION_IDLE). Logging out deletes the row, and with it the session's console tokens.
class UserSession < ApplicationRecord
  belongs_to :user
  has_many :console_tokens, dependent: :delete_all

  # Start a session; returns [session, token] (the token goes into the cookie only).
  def self.start!(user, ip: nil, user_agent: nil)
    token = SecureRandom.urlsafe_base64(32)
    now = Time.current
    s = create!(user: user, token_digest: digest(token), expires_at: now + Portal.config.session_ttl,
                last_seen_at: now, ip: ip.to_s[0, 64], user_agent: user_agent.to_s[0, 255])
    where("expires_at < ?", now - 1.day).delete_all
    [s, token]
  end

  # The live session for +token+, or nil (unknown, expired, idle too long).
  def self.find_active(token)
    return nil if token.blank?

    s = find_by(token_digest: digest(token))
    s if s&.active?
  end

  def active?(now = Time.current)
    expires_at > now && last_seen_at > now - Portal.config.session_idle
  end

  # Record activity (at most once a minute, to spare the database).
  def seen!(now = Time.current)
    update_column(:last_seen_at, now) if last_seen_at < now - 60
  end
end
