# frozen_string_literal: true

module Admin
  # Images (templates): list, import from a server path or an upload (progress bar fed by the
  # library's import progress callback), delete.
  class ImagesController < BaseController
    def index
      @images = Portal.store.images
      @imports = ImageImport.order(created_at: :desc).limit(20)
      @import = ImageImport.new(source: "path")
    end

    def create
      p = params.require(:image_import).permit(:source, :path, :name, :version, :os, :file)
      @import = ImageImport.new(p.slice(:name, :version, :os).merge(user: current_user))
      if p[:file].respond_to?(:path)
        @import.source = "upload"
        @import.path = keep_upload(p[:file])
      else
        @import.source = "path"
        @import.path = p[:path].to_s.strip
      end
      if @import.save
        @import.start!
        redirect_to admin_import_path(@import)
      else
        # a refused upload (bad name, say) is not imported: its kept file goes at once
        FileUtils.rm_f(@import.path) if @import.source == "upload" && @import.path.present?
        @images = Portal.store.images
        @imports = ImageImport.order(created_at: :desc).limit(20)
        render :index, status: :unprocessable_entity
      end
    end

    def destroy
      Portal.store.delete_image(params[:id].to_s)
      redirect_to admin_images_path, notice: "Image deleted."
    rescue Vmpool::Error => e
      redirect_to admin_images_path, alert: vmpool_message(e)
    end

    private

    # Rack deletes the upload's temporary file when the request ends; the import runs longer,
    # so keep a link to it (or a copy across file systems) under the portal's state directory.
    def keep_upload(file)
      dir = Portal.state_path("uploads")
      FileUtils.mkdir_p(dir, mode: 0o700)
      dest = File.join(dir, "#{SecureRandom.hex(8)}.upload")
      begin
        File.link(file.path, dest)
      rescue SystemCallError
        FileUtils.cp(file.path, dest)
      end
      dest
    end
  end
end
