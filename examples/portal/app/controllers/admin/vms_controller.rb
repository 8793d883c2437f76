# frozen_string_literal: true

module Admin
  # Every VM in the store, with its owner, state and what its QEMU uses; stop or delete any.
  class VmsController < BaseController
    def index
      @vms = Portal.store.vms
      @users = User.where(owner: @vms.map { |v| v[:owner] }.uniq).index_by(&:owner)
      @resources = @vms.select { |v| %w[running paused].include?(v[:state]) }
                       .to_h { |v| [v[:uuid], Desktop.resources(v[:uuid])] }
      respond_to do |f|
        f.html
        f.json { render json: @vms.map { |v| v.merge(resources: @resources[v[:uuid]]) } }
      end
    end

    def stop
      vm = find_vm
      Desktop.stop(vm)
      redirect_to admin_vms_path, notice: "#{vm[:alias]} stopped."
    rescue Vmpool::Error => e
      redirect_to admin_vms_path, alert: vmpool_message(e)
    end

    def destroy
      vm = find_vm
      Desktop.destroy(vm)
      redirect_to admin_vms_path, notice: "#{vm[:alias]} deleted."
    rescue Vmpool::Error => e
      redirect_to admin_vms_path, alert: vmpool_message(e)
    end

    private

    def find_vm
      Desktop.find_any(params[:id]) || raise(Desktop::NotFound)
    end
  end
end
