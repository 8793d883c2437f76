# frozen_string_literal: true

module Admin
  # Pools: the library's pools (stored in the store, not in the portal's database).
  class PoolsController < BaseController
    FIELDS = %i[image_uuid vcpus ram_mib disk_gib spares max_vms max_per_owner warmth on_release on_logout
                ready_marker ready_delay_s ready_timeout_s accel idle_suspend_after_s
                max_session_s].freeze
    INTEGER = %i[vcpus ram_mib disk_gib spares max_vms max_per_owner ready_delay_s ready_timeout_s
                 idle_suspend_after_s max_session_s].freeze

    def index
      @pools = Portal.store.pools
      @images = Portal.store.images.index_by { |i| i[:uuid] }
      respond_to do |f|
        f.html
        f.json { render json: @pools }
      end
    end

    def show
      @pool = Portal.store.pool(params[:id].to_s)
      respond_to do |f|
        f.html { redirect_to edit_admin_pool_path(@pool[:name]) }
        f.json { render json: @pool }
      end
    rescue Vmpool::NotFound
      raise Desktop::NotFound
    end

    def new
      @pool = { vcpus: 1, ram_mib: 256, disk_gib: 1, spares: 1, max_vms: 10, max_per_owner: 1, warmth: "paused",
                on_release: "destroy", on_logout: "keep", ready_marker: "", accel: "" }
      @images = Portal.store.images
    end

    def create
      attrs = pool_params.compact
      name = params.dig(:pool, :name).to_s
      image = attrs.delete(:image_uuid)
      pool = Portal.store.create_pool(name: name, image: image, **attrs)
      Portal::Refiller.poke(pool[:name])
      redirect_to edit_admin_pool_path(pool[:name]), notice: "Pool #{pool[:name]} created; its spares are being made."
    rescue Vmpool::Error, ::ArgumentError => e
      @pool = params.require(:pool).permit(:name, *FIELDS).to_h.symbolize_keys
      @images = Portal.store.images
      flash.now[:alert] = e.is_a?(Vmpool::Error) ? vmpool_message(e) : e.message
      render :new, status: :unprocessable_entity
    end

    def edit
      @pool = Portal.store.pool(params[:id].to_s)
      @images = Portal.store.images
    rescue Vmpool::NotFound
      raise Desktop::NotFound
    end

    def update
      name = params[:id].to_s
      current = Portal.store.pool(name)
      changes = pool_params.reject { |k, v| current[k] == v }
      pool = changes.empty? ? current : Portal.store.update_pool(name, **changes)
      Portal::Refiller.poke(pool[:name])
      redirect_to edit_admin_pool_path(pool[:name]), notice: "Pool #{pool[:name]} updated."
    rescue Vmpool::NotFound
      raise Desktop::NotFound
    rescue Vmpool::Error, ::ArgumentError => e
      redirect_to edit_admin_pool_path(name), alert: e.is_a?(Vmpool::Error) ? vmpool_message(e) : e.message
    end

    def destroy
      Portal.store.delete_pool(params[:id].to_s)
      redirect_to admin_pools_path, notice: "Pool #{params[:id]} deleted."
    rescue Vmpool::Error => e
      redirect_to admin_pools_path, alert: vmpool_message(e)
    end

    # Asks the refill thread for a refill now and returns at once: a refill boots spares, which
    # takes as long as a guest's boot and must not hold one of Puma's threads.
    def refill
      name = Portal.store.pool(params[:id].to_s)[:name]
      if Portal::Refiller.running?
        Portal::Refiller.poke(name)
        redirect_to edit_admin_pool_path(name), notice: "Refill of #{name} requested; its spares are being made."
      else
        redirect_to edit_admin_pool_path(name), alert: "The refill thread does not run in this process (PORTAL_REFILL=1 starts it)."
      end
    rescue Vmpool::NotFound
      raise Desktop::NotFound
    end

    private

    # The form's fields as the library's types: integers, and nil for blanks.
    def pool_params
      raw = params.require(:pool).permit(*FIELDS).to_h.symbolize_keys
      raw.each_with_object({}) do |(k, v), h|
        v = v.to_s.strip
        h[k] = if v.empty? then nil
               elsif INTEGER.include?(k) then Integer(v, 10)
               else v
               end
      end
    end
  end
end
