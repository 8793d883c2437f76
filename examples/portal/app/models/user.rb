# frozen_string_literal: true

# A person who logs in. Passwords are bcrypt digests (has_secure_password). Each user owns VMs
# in the store under User#owner, a name made once at creation ("u<id>-<8 hex>") and never reused,
# so a recreated database cannot hand an old user's VMs to a new account with the same id.
class User < ApplicationRecord
  # The library's rule for owner and alias names (src/validate.rs), also used for usernames.
  NAME = /\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\z/.freeze
  MIN_PASSWORD = 8

  has_secure_password
  has_many :user_sessions, dependent: :delete_all

  # Unique whatever the case, also in the database (a unique index on lower(username)): two
  # sign-ups racing past this validation cannot both get in; see #save_unique.
  validates :username, presence: true, format: { with: NAME, message: "must be 1-64 letters, digits, . _ - starting with a letter or digit" },
                       uniqueness: { case_sensitive: false }
  validate { errors.add(:username, "must not contain ..") if username.to_s.include?("..") }
  validates :password, length: { minimum: MIN_PASSWORD, maximum: 72 }, allow_nil: true

  after_create :assign_owner

  # The user with this name and password, or nil. Costs one bcrypt comparison whether or not
  # the name exists, so timing does not tell which names exist.
  def self.authenticate(username, password)
    user = where("LOWER(username) = ?", username.to_s.downcase).first
    if user
      user.authenticate(password.to_s) || nil
    else
      BCrypt::Password.create(password.to_s, cost: BCrypt::Engine.cost) && nil
    end
  end

  def to_param
    id.to_s
  end

  # save, with a name taken by a racing request in the meantime (the database's unique index
  # refused it after the validation passed) reported like the validation would: false, and the
  # error on username.
  def save_unique
    save
  rescue ActiveRecord::RecordNotUnique
    errors.add(:username, :taken, value: username)
    false
  end

  private

  def assign_owner
    update_column(:owner, "u#{id}-#{SecureRandom.hex(4)}")
  end
end
