# frozen_string_literal: true

module Admin
  # One import's progress: a page with the bar, and the JSON it polls.
  class ImportsController < BaseController
    def show
      @import = ImageImport.find(params[:id])
      respond_to do |f|
        f.html
        f.json { render json: @import }
      end
    end
  end
end
