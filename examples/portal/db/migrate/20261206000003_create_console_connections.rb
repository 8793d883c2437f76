# frozen_string_literal: true

# The console WebSockets open now, as the console proxy reports them (one row per WebSocket,
# named by the proxy's random id), so that a user's open consoles can be capped.
class CreateConsoleConnections < ActiveRecord::Migration[6.1]
  def change
    create_table :console_connections do |t|
      t.references :user, null: false, foreign_key: { on_delete: :cascade }
      t.references :console_token, null: false, foreign_key: { on_delete: :cascade }
      t.string :conn_id, null: false, limit: 64
      t.datetime :last_seen_at, null: false
      t.timestamps
    end
    add_index :console_connections, :conn_id, unique: true
    add_index :console_connections, :last_seen_at
  end
end
