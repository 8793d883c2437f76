# frozen_string_literal: true

module Admin
  # Admin pages: only for users with admin set (others get a 404, as for a page that does not
  # exist).
  class BaseController < ApplicationController
    before_action :require_admin
  end
end
