# frozen_string_literal: true

require "test_helper"

# Console tokens against real running VMs: what the console proxy gets for each token.
class ConsoleTokenTest < ActiveSupport::TestCase
  setup do
    @user = create_user
    @session, = UserSession.start!(@user)
    @vm = make_vm(@user, start: true)
  end

  teardown { cleanup_vm(@vm[:uuid]) }

  test "a token resolves to the VM's SPICE unix socket and expires with the SPICE ticket" do
    console = store.console(@vm[:uuid], ttl: 60)
    token = ConsoleToken.issue!(@session, @vm[:uuid], console)
    row = ConsoleToken.last
    assert_equal ConsoleToken.digest(token), row.token_digest, "the token itself must not be stored"
    assert_equal console[:expires_at_unix], row.expires_at.to_i

    r = ConsoleToken.resolve(token, browser_session: @session)
    assert_equal "unix", r[:kind]
    assert_equal console[:path], r[:path]
    assert File.socket?(r[:path]), "#{r[:path]} is not a socket"

    travel_to(Time.zone.at(console[:expires_at_unix] + 1)) do
      assert_equal "token expired", ConsoleToken.resolve(token, browser_session: @session).reason
    end
  end

  test "a real short ticket: the token is refused once the ticket has expired" do
    token = ConsoleToken.issue!(@session, @vm[:uuid], store.console(@vm[:uuid], ttl: 1))
    sleep 2.1
    assert_equal "token expired", ConsoleToken.resolve(token, browser_session: @session).reason
  end

  test "foreign, unknown and orphaned tokens are refused" do
    token = ConsoleToken.issue!(@session, @vm[:uuid], store.console(@vm[:uuid], ttl: 60))
    other_user = create_user
    other_session, = UserSession.start!(other_user)
    same_user_other_session, = UserSession.start!(@user)

    assert_equal "token of another session", ConsoleToken.resolve(token, browser_session: other_session).reason
    assert_equal "token of another session", ConsoleToken.resolve(token, browser_session: same_user_other_session).reason
    assert_equal "token of another session", ConsoleToken.resolve(token, browser_session: nil).reason
    assert_equal "unix", ConsoleToken.resolve(token, browser_session: nil, bound: false)[:kind]
    assert_equal "unknown token", ConsoleToken.resolve(token + "x", browser_session: @session).reason
    assert_equal "unknown token", ConsoleToken.resolve("", browser_session: @session).reason

    # a token for a VM of another user (cannot be issued through the pages; made here directly)
    theirs = make_vm(other_user)
    t2 = ConsoleToken.issue!(@session, theirs[:uuid], { expires_at_unix: Time.now.to_i + 60 })
    assert_equal "VM is not this user's", ConsoleToken.resolve(t2, browser_session: @session).reason

    @session.destroy
    assert_equal "unknown token", ConsoleToken.resolve(token, browser_session: @session).reason
  ensure
    cleanup_vm(theirs[:uuid]) if theirs
  end

  test "a token of a stopped or deleted VM is refused" do
    token = ConsoleToken.issue!(@session, @vm[:uuid], store.console(@vm[:uuid], ttl: 60))
    store.kill_vm(@vm[:uuid])
    assert_equal "VM is not running", ConsoleToken.resolve(token, browser_session: @session).reason
    store.delete_vm(@vm[:uuid])
    assert_equal "VM is not this user's", ConsoleToken.resolve(token, browser_session: @session).reason
  end
end
