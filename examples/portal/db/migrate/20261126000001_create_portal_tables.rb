# frozen_string_literal: true

class CreatePortalTables < ActiveRecord::Migration[6.1]
  def change
    create_table :users do |t|
      t.string :username, null: false, limit: 64
      t.string :password_digest, null: false
      t.boolean :admin, null: false, default: false
      # The owner name of this user's VMs in the vmpool store: "u<id>-<random>", set once.
      # The random part keeps a recreated database from handing old VMs to a new user 1.
      t.string :owner, limit: 64
      t.timestamps
    end
    add_index :users, :username, unique: true
    add_index :users, :owner, unique: true

    create_table :user_sessions do |t|
      t.references :user, null: false, foreign_key: { on_delete: :cascade }
      t.string :token_digest, null: false, limit: 64
      t.datetime :expires_at, null: false
      t.datetime :last_seen_at, null: false
      t.string :ip, limit: 64
      t.string :user_agent, limit: 255
      t.timestamps
    end
    add_index :user_sessions, :token_digest, unique: true

    create_table :console_tokens do |t|
      t.references :user_session, null: false, foreign_key: { on_delete: :cascade }
      t.string :vm_uuid, null: false, limit: 36
      t.string :token_digest, null: false, limit: 64
      t.datetime :expires_at, null: false
      t.timestamps
    end
    add_index :console_tokens, :token_digest, unique: true

    create_table :image_imports do |t|
      t.references :user, foreign_key: { on_delete: :nullify }
      t.string :source, null: false, limit: 16 # "path" or "upload"
      t.string :path, null: false, limit: 4096
      t.string :name, null: false, limit: 64
      t.string :version, limit: 64
      t.string :os, limit: 64
      t.string :status, null: false, default: "queued", limit: 16 # queued running done failed
      t.bigint :done_bytes, null: false, default: 0
      t.bigint :total_bytes, null: false, default: 0
      t.integer :progress_updates, null: false, default: 0
      t.string :image_uuid, limit: 36
      t.text :error
      t.datetime :finished_at
      t.timestamps
    end
  end
end
