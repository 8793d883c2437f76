# frozen_string_literal: true

require "test_helper"

# The library's `user` object from an account and a browser's headers.
class GuestUserTest < ActiveSupport::TestCase
  Account = Struct.new(:username)

  test "logins the library takes, whatever the account's name" do
    { "alice" => "alice", "Bob.Jones" => "bobjones", "9lives" => "u9lives", "root" => "root-u",
      "x" * 64 => "x" * 32, "_svc" => "_svc", "Ünïcode-ok" => "ncode-ok" }.each do |name, login|
      assert_equal login, Portal::GuestUser.login(name), name
    end
  end

  test "language, keyboard and time zone from the browser" do
    u = Portal::GuestUser.for(Account.new("ann"), accept_language: "fr-CA,fr;q=0.8", timezone: "America/Toronto")
    assert_equal({ login: "ann", full_name: "ann", locale: "fr_CA.UTF-8", keyboard: "ca", timezone: "America/Toronto" }, u)
    u = Portal::GuestUser.for(Account.new("ann"), accept_language: "en-US,en", timezone: "Asia/Tokyo")
    assert_equal ["en_US.UTF-8", "us", "Asia/Tokyo"], u.values_at(:locale, :keyboard, :timezone)
    u = Portal::GuestUser.for(Account.new("ann"), accept_language: "ja", timezone: "Etc/GMT+9")
    assert_equal ["ja_JP.UTF-8", "jp", "Etc/GMT+9"], u.values_at(:locale, :keyboard, :timezone)
    u = Portal::GuestUser.for(Account.new("ann"), accept_language: "*", timezone: "/etc/passwd")
    assert_equal({ login: "ann", full_name: "ann" }, u)
    assert_nil Portal::GuestUser.for(Account.new("ann"), timezone: "Europe/../../x")[:timezone]
  end
end
