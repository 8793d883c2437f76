# frozen_string_literal: true

# An image import started by an admin, from a file on the server (under PORTAL_IMPORT_DIRS) or
# an upload. It runs in a background thread of the portal process; the library's progress
# callback writes done/total bytes to this row (at most every 0.2 s, and at the end), which the
# admin page's progress bar polls.
class ImageImport < ApplicationRecord
  belongs_to :user, optional: true

  STATUSES = %w[queued running done failed].freeze # failed also with error "interrupted"
  validates :source, inclusion: { in: %w[path upload] }
  validates :status, inclusion: { in: STATUSES }
  validates :name, format: { with: User::NAME, message: "must be 1-64 letters, digits, . _ - starting with a letter or digit" }
  validates :version, format: { with: User::NAME }, allow_blank: true
  validates :os, format: { with: User::NAME }, allow_blank: true
  validate :path_allowed, if: -> { source == "path" }

  # An allowed server path: absolute, a regular file, inside one of PORTAL_IMPORT_DIRS (after
  # resolving symlinks), so the web page cannot read arbitrary files of the server. Returns the
  # resolved path (what is saved and imported: a symlink changed after the check cannot lead
  # elsewhere), or nil.
  def self.allowed_path?(path)
    return nil unless path.is_a?(String) && path.start_with?("/") && File.file?(path)

    real = File.realpath(path)
    ok = Portal.config.import_dirs.any? do |dir|
      root = File.realpath(dir)
      real.start_with?(root.end_with?("/") ? root : "#{root}/")
    rescue Errno::ENOENT
      false
    end
    ok ? real : nil
  rescue SystemCallError
    nil
  end

  # At the server's start: imports made +before+ it and left queued or running (their thread
  # died with the previous server) are marked failed, so that their pages stop waiting.
  def self.mark_interrupted!(before: Time.current)
    where(status: %w[queued running]).where("created_at < ?", before)
                                     .update_all(status: "failed", error: "interrupted", finished_at: Time.current, updated_at: Time.current)
  end

  def fraction
    return 1.0 if status == "done"
    return 0.0 if total_bytes.zero?

    [done_bytes.to_f / total_bytes, 1.0].min
  end

  def finished?
    %w[done failed].include?(status)
  end

  def as_json(*)
    { id: id, name: name, status: status, done_bytes: done_bytes, total_bytes: total_bytes,
      fraction: fraction.round(4), progress_updates: progress_updates, image_uuid: image_uuid, error: error }
  end

  # Start the import in the background; returns at once. +wait: true+ runs it in the caller's
  # thread instead (tests, rake).
  def start!(wait: false)
    return run! if wait

    id = self.id
    Thread.new do
      Rails.application.executor.wrap { ImageImport.find(id).run! }
    rescue StandardError => e # nothing may leave the row "running" for ever
      ImageImport.fail!(id, e)
    end
    self
  end

  # Mark import +id+ failed with +error+, without loading or validating the row.
  def self.fail!(id, error)
    message = "#{error.is_a?(Vmpool::Error) && error.name ? error.name : error.class}: #{error.message}"
    where(id: id).update_all(status: "failed", error: message, finished_at: Time.current, updated_at: Time.current)
  end

  # Import now, in this thread.
  def run!
    update!(status: "running")
    last = Process.clock_gettime(Process::CLOCK_MONOTONIC) - 1
    manifest = { name: name, version: version.presence, os: os.presence }.compact
    image = Portal.store.import_image(path, **manifest) do |done, total|
      now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      if now - last >= 0.2 || done == total
        last = now
        ImageImport.where(id: id).update_all(["done_bytes = ?, total_bytes = ?, progress_updates = progress_updates + 1, updated_at = ?",
                                              done, total, Time.current])
      end
      true
    end
    reload
    update!(status: "done", image_uuid: image[:uuid], finished_at: Time.current)
    self
  rescue StandardError => e
    self.class.fail!(id, e)
    reload
  ensure
    File.unlink(path) if source == "upload" && path.present? && File.exist?(path)
  end

  private

  def path_allowed
    real = self.class.allowed_path?(path)
    return errors.add(:path, "must be a file under #{Portal.config.import_dirs.join(' or ')}") unless real

    self.path = real
  end
end
