# frozen_string_literal: true

# The SPICE password a token was issued with, and the QEMU run it belongs to, so that a second
# page of the same desktop reuses the still-valid ticket instead of setting a new password (which
# would break the first page's reconnects).
class AddTicketToConsoleTokens < ActiveRecord::Migration[6.1]
  def change
    add_column :console_tokens, :spice_password, :string, limit: 64
    add_column :console_tokens, :vm_run, :string, limit: 64
    add_index :console_tokens, %i[user_session_id vm_uuid]
  end
end
