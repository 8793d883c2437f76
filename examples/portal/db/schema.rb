# This file is auto-generated from the current state of the database. Instead
# of editing this file, please use the migrations feature of Active Record to
# incrementally modify your database, and then regenerate this schema definition.
#
# This file is the source Rails uses to define your schema when running `bin/rails
# db:schema:load`. When creating a new database, `bin/rails db:schema:load` tends to
# be faster and is potentially less error prone than running all of your
# migrations from scratch. Old migrations may fail to apply correctly if those
# migrations use external dependencies or application code.
#
# It's strongly recommended that you check this file into your version control system.

ActiveRecord::Schema.define(version: 2026_12_06_000003) do

  create_table "console_connections", force: :cascade do |t|
    t.integer "user_id", null: false
    t.integer "console_token_id", null: false
    t.string "conn_id", limit: 64, null: false
    t.datetime "last_seen_at", null: false
    t.datetime "created_at", precision: 6, null: false
    t.datetime "updated_at", precision: 6, null: false
    t.index ["conn_id"], name: "index_console_connections_on_conn_id", unique: true
    t.index ["console_token_id"], name: "index_console_connections_on_console_token_id"
    t.index ["last_seen_at"], name: "index_console_connections_on_last_seen_at"
    t.index ["user_id"], name: "index_console_connections_on_user_id"
  end

  create_table "console_tokens", force: :cascade do |t|
    t.integer "user_session_id", null: false
    t.string "vm_uuid", limit: 36, null: false
    t.string "token_digest", limit: 64, null: false
    t.datetime "expires_at", null: false
    t.datetime "created_at", precision: 6, null: false
    t.datetime "updated_at", precision: 6, null: false
    t.string "vm_run", limit: 64
    t.string "spice_digest", limit: 64
    t.index ["token_digest"], name: "index_console_tokens_on_token_digest", unique: true
    t.index ["user_session_id", "vm_uuid"], name: "index_console_tokens_on_user_session_id_and_vm_uuid"
    t.index ["user_session_id"], name: "index_console_tokens_on_user_session_id"
  end

  create_table "image_imports", force: :cascade do |t|
    t.integer "user_id"
    t.string "source", limit: 16, null: false
    t.string "path", limit: 4096, null: false
    t.string "name", limit: 64, null: false
    t.string "version", limit: 64
    t.string "os", limit: 64
    t.string "status", limit: 16, default: "queued", null: false
    t.bigint "done_bytes", default: 0, null: false
    t.bigint "total_bytes", default: 0, null: false
    t.integer "progress_updates", default: 0, null: false
    t.string "image_uuid", limit: 36
    t.text "error"
    t.datetime "finished_at"
    t.datetime "created_at", precision: 6, null: false
    t.datetime "updated_at", precision: 6, null: false
    t.index ["user_id"], name: "index_image_imports_on_user_id"
  end

  create_table "user_sessions", force: :cascade do |t|
    t.integer "user_id", null: false
    t.string "token_digest", limit: 64, null: false
    t.datetime "expires_at", null: false
    t.datetime "last_seen_at", null: false
    t.string "ip", limit: 64
    t.string "user_agent", limit: 255
    t.datetime "created_at", precision: 6, null: false
    t.datetime "updated_at", precision: 6, null: false
    t.index ["token_digest"], name: "index_user_sessions_on_token_digest", unique: true
    t.index ["user_id"], name: "index_user_sessions_on_user_id"
  end

  create_table "users", force: :cascade do |t|
    t.string "username", limit: 64, null: false
    t.string "password_digest", null: false
    t.boolean "admin", default: false, null: false
    t.string "owner", limit: 64
    t.datetime "created_at", precision: 6, null: false
    t.datetime "updated_at", precision: 6, null: false
    t.index "lower(username)", name: "index_users_on_lower_username", unique: true
    t.index ["owner"], name: "index_users_on_owner", unique: true
    t.index ["username"], name: "index_users_on_username", unique: true
  end

  add_foreign_key "console_connections", "console_tokens", on_delete: :cascade
  add_foreign_key "console_connections", "users", on_delete: :cascade
  add_foreign_key "console_tokens", "user_sessions", on_delete: :cascade
  add_foreign_key "image_imports", "users", on_delete: :nullify
  add_foreign_key "user_sessions", "users", on_delete: :cascade
end
