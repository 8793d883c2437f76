# frozen_string_literal: true

# One Vmpool::Store per process (the handle is thread-safe and shared by Puma's threads).
# Opened lazily, and again after a fork (Puma workers), never inherited across one.
require "portal/store"
require "portal/refiller"

Rails.application.config.after_initialize do
  Portal::Refiller.start if Rails.application.config.x.portal.refill
end
