# frozen_string_literal: true

require "test_helper"
require "minitest/mock"

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

  # What two sign-ups at the same instant amount to: the second one's validation ran before the
  # first one's insert, so only the database can refuse it.
  test "the database refuses a name that differs only in case, even past the validations" do
    create_user("alice")
    rows = [{ username: "Alice", password_digest: "x", admin: false, created_at: Time.current, updated_at: Time.current }]
    # each in a savepoint of its own: on PostgreSQL a failed statement spoils the transaction
    assert_raises(ActiveRecord::RecordNotUnique) { User.transaction(requires_new: true) { User.insert_all!(rows) } }
    assert_raises(ActiveRecord::RecordNotUnique) do
      User.transaction(requires_new: true) { User.new(username: "ALICE", password: PASSWORD).save(validate: false) }
    end
    assert_equal ["alice"], User.where("lower(username) = ?", "alice").pluck(:username)
  end

  test "a sign-up that loses the race gets the validation's error, not an exception" do
    create_user("bob")
    late = User.new(username: "BOB", password: PASSWORD)
    ok = late.stub(:valid?, true) { late.save_unique } # its validation ran before bob's insert
    refute ok
    assert_includes late.errors[:username], "has already been taken"
    assert late.new_record?
    assert_equal ["bob"], User.where("lower(username) = ?", "bob").pluck(:username)
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
