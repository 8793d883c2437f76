# frozen_string_literal: true

# Names are unique whatever their case ("Alice" and "alice" are one name: log-in looks names up
# case-insensitively). The model validates it, but two sign-ups at the same instant both pass the
# validation; this index lets only one of them in, on SQLite and on PostgreSQL alike (an
# expression index on lower(username)).
class AddLowerUsernameIndexToUsers < ActiveRecord::Migration[6.1]
  def up
    clash = select_values("SELECT lower(username) FROM users GROUP BY lower(username) HAVING count(*) > 1")
    unless clash.empty?
      raise ActiveRecord::MigrationError,
            "users whose names differ only in case: #{clash.join(', ')}; rename or delete all but one of each, then migrate again"
    end

    add_index :users, "lower(username)", unique: true, name: "index_users_on_lower_username"
  end

  def down
    remove_index :users, name: "index_users_on_lower_username"
  end
end
