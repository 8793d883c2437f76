# frozen_string_literal: true

require "test_helper"

class UserSessionTest < ActiveSupport::TestCase
  test "a session is found by its token, which is stored only as a digest" do
    u = create_user
    s, token = UserSession.start!(u, ip: "127.0.0.1", user_agent: "test")
    assert_equal s, UserSession.find_active(token)
    refute_equal token, s.token_digest
    assert_equal UserSession.digest(token), s.token_digest
    assert_nil UserSession.find_active("not-a-token")
    assert_nil UserSession.find_active(nil)
  end

  test "sessions expire after the absolute lifetime and after idling" do
    u = create_user
    _s, token = UserSession.start!(u)
    travel(Portal.config.session_idle - 30) { assert UserSession.find_active(token) }
    travel(Portal.config.session_idle + 5) { assert_nil UserSession.find_active(token), "idle session still active" }

    s2, token2 = UserSession.start!(u)
    # stay active, but hit the absolute limit
    t = 0
    while t < Portal.config.session_ttl - 120
      t += Portal.config.session_idle / 2
      travel(t) do
        s2.reload.seen!
        assert UserSession.find_active(token2) if t < Portal.config.session_ttl
      end
    end
    travel(Portal.config.session_ttl + 1) { assert_nil UserSession.find_active(token2), "session outlived its absolute lifetime" }
  end

  test "ending a session removes its console tokens" do
    u = create_user
    s, _token = UserSession.start!(u)
    ConsoleToken.issue!(s, SecureRandom.uuid, { expires_at_unix: Time.now.to_i + 60 })
    assert_equal 1, s.console_tokens.count
    s.destroy
    assert_equal 0, ConsoleToken.where(user_session_id: s.id).count
  end
end
