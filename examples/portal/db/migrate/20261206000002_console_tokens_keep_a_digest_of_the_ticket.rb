# frozen_string_literal: true

# The SPICE password is no longer kept in the database: a token's row keeps only the password's
# SHA-256 (to tell whether a ticket a browser session holds is still the VM's current one); the
# password itself stays with the session that got it (its encrypted cookie) and the page.
class ConsoleTokensKeepADigestOfTheTicket < ActiveRecord::Migration[6.1]
  def up
    add_column :console_tokens, :spice_digest, :string, limit: 64
    remove_column :console_tokens, :spice_password
  end

  def down
    add_column :console_tokens, :spice_password, :string, limit: 64
    remove_column :console_tokens, :spice_digest
  end
end
