# frozen_string_literal: true

# One Vmpool::Store per process (the handle is thread-safe and shared by Puma's threads).
# Opened lazily, and again after a fork (Puma workers), never inherited across one.
require "portal/store"
require "portal/refiller"
require "portal/guest_user"

# What belongs to the server, not to every process that loads the app (rake tasks, rails runner,
# the tests): the refill thread (PORTAL_REFILL=1) and marking the imports a previous server left
# unfinished (made before this server started: a Puma worker that boots later must not mark its
# siblings' imports). config/puma.rb sets both variables; a Puma worker inherits them and loads
# the app itself, so each worker runs its own refill thread.
Rails.application.config.after_initialize do
  if ENV["PORTAL_SERVER"] == "1"
    begin
      ImageImport.mark_interrupted!(before: Time.zone.at(Float(ENV.fetch("PORTAL_SERVER_STARTED", Time.now.to_f))))
    rescue ActiveRecord::ActiveRecordError => e # no database yet: nothing to mark
      Rails.logger.warn("imports not checked: #{e.class}: #{e.message}")
    end
    Portal::Refiller.start if Rails.application.config.x.portal.refill
  end
end
