# frozen_string_literal: true

require "test_helper"

class UserTest < ActiveSupport::TestCase
  test "passwords are stored as bcrypt digests and checked" do
    u = create_user("alice")
    assert_match(/\A\$2a\$\d\d\$/, u.password_digest)
    refute_includes u.password_digest, PASSWORD
    assert_equal u, User.authenticate("alice", PASSWORD)
    assert_equal u, User.authenticate("ALICE", PASSWORD), "names are case-insensitive"
    assert_nil User.authenticate("alice", "wrong password")
    assert_nil User.authenticate("nobody", PASSWORD)
  end

  test "names follow the library's name rule and passwords have a minimum length" do
    ["", "a b", ".hidden", "-x", "a/b", "a..b", "x" * 65, "é"].each do |bad|
      refute User.new(username: bad, password: PASSWORD).valid?, "#{bad.inspect} accepted"
    end
    assert User.new(username: "Bob.Smith_2-x", password: PASSWORD).valid?
    refute User.new(username: "short", password: "1234567").valid?
    create_user("carol")
    refute User.new(username: "Carol", password: PASSWORD).valid?, "duplicate name (other case) accepted"
  end

  test "each user gets its own owner name, which the library accepts" do
    a = create_user
    b = create_user
    assert_match(/\Au#{a.id}-\h{8}\z/, a.owner)
    refute_equal a.owner, b.owner
    vm = make_vm(a)
    assert_equal a.owner, vm[:owner]
    assert_equal [vm[:uuid]], store.vms(owner: a.owner).map { |v| v[:uuid] }
    assert_empty store.vms(owner: b.owner)
  ensure
    cleanup_vm(vm[:uuid]) if vm
  end
end
