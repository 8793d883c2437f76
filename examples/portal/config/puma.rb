# frozen_string_literal: true

# Puma for the portal. Listens on 127.0.0.1 only (PORTAL_BIND / PORT); bin/portal starts it.
threads_count = Integer(ENV.fetch("RAILS_MAX_THREADS", 5))
threads threads_count, threads_count
bind "tcp://#{ENV.fetch('PORTAL_BIND', '127.0.0.1')}:#{ENV.fetch('PORT', 3000)}"
environment ENV.fetch("RAILS_ENV", "development")
pidfile ENV.fetch("PIDFILE", "tmp/pids/server.pid")
workers Integer(ENV.fetch("WEB_CONCURRENCY", 0))

# The app starts its refill thread (PORTAL_REFILL) only in the server, and marks imports older
# than the server as interrupted: see config/initializers/vmpool.rb. Set before the app loads
# (here, or in a worker, which inherits it).
ENV["PORTAL_SERVER"] = "1"
ENV["PORTAL_SERVER_STARTED"] = Time.now.to_f.to_s
