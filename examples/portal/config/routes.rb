# frozen_string_literal: true

Rails.application.routes.draw do
  root "home#index"

  get "login", to: "sessions#new"
  post "login", to: "sessions#create"
  delete "logout", to: "sessions#destroy"
  get "metrics", to: "metrics#show", format: false
  get "signup", to: "users#new"
  post "signup", to: "users#create"

  post "pools/:name/acquire", to: "pools#acquire", as: :acquire_pool, constraints: { name: /[A-Za-z0-9][A-Za-z0-9._-]*/ }

  resources :desktops, only: %i[show destroy] do
    member do
      post :console
      get :vv, path: "console.vv"
      get :thumbnail, path: "thumbnail.png"
      get :status
      post :start
      post :stop
      post :reset
    end
  end

  namespace :admin do
    root "dashboard#index"
    resources :users, only: %i[index new create update destroy]
    resources :vms, only: %i[index destroy] do
      post :stop, on: :member
    end
    resources :images, only: %i[index create destroy]
    resources :imports, only: %i[show]
    # Pool names may contain dots ("win.11"): the id takes the whole segment and there is no
    # ".format" suffix to split off (pool.js asks for JSON with an Accept header).
    resources :pools, constraints: { id: /[A-Za-z0-9][A-Za-z0-9._-]*/ }, format: false do
      post :refill, on: :member
    end
  end

  get "internal/console/resolve", to: "internal/console#resolve"
  post "internal/console/close", to: "internal/console#close"

  # spice-html5's ES modules, straight from the Debian package (or SPICE_HTML5_DIR).
  mount Rack::Files.new(Rails.application.config.x.portal.spice_html5_dir, { "Cache-Control" => "public, max-age=3600" }),
        at: "/spice-html5"
end
