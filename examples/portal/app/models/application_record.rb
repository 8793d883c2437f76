# frozen_string_literal: true

class ApplicationRecord < ActiveRecord::Base
  self.abstract_class = true

  def self.digest(token)
    OpenSSL::Digest::SHA256.hexdigest(token.to_s)
  end
end
