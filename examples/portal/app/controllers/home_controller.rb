# frozen_string_literal: true

# The home page: the user's desktops and the pools to get one from.
class HomeController < ApplicationController
  def index
    store = Portal.store
    @desktops = Desktop.for_user(current_user)
    @pools = store.pools
    @images = store.images.index_by { |i| i[:uuid] }
    @held = @desktops.map { |v| v[:pool] }.compact.to_set
  end
end
