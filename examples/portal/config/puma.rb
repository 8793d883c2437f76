# frozen_string_literal: true

# Puma for the portal. Listens on 127.0.0.1 only (PORTAL_BIND / PORT); bin/portal starts it.
threads_count = Integer(ENV.fetch("RAILS_MAX_THREADS", 5))
threads threads_count, threads_count
bind "tcp://#{ENV.fetch('PORTAL_BIND', '127.0.0.1')}:#{ENV.fetch('PORT', 3000)}"
environment ENV.fetch("RAILS_ENV", "development")
pidfile ENV.fetch("PIDFILE", "tmp/pids/server.pid")
workers Integer(ENV.fetch("WEB_CONCURRENCY", 0))
