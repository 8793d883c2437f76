# frozen_string_literal: true

module Admin
  class DashboardController < BaseController
    def index
      store = Portal.store
      @info = store.info
      @pools = store.pools
      @vms = store.vms
      @images = store.images
      @users = User.count
      @refill = Portal::Refiller.running?
    end
  end
end
