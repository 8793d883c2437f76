# frozen_string_literal: true

module Portal
  # Keeps pools topped up with spares: one background thread per portal process calls
  # store.refill(pool) for every pool every `refill_interval` seconds, and at once for a pool
  # that was just poked (after an acquire, a release, a pool created or changed). The library's
  # refill is idempotent and safe from several processes at once, so several Puma workers may
  # each run one.
  module Refiller
    @lock = Mutex.new
    @cond = ConditionVariable.new
    @poked = []
    @thread = nil
    @last = {}

    class << self
      attr_reader :last

      def start
        @lock.synchronize do
          return if @thread&.alive?

          @stopping = false
          @thread = Thread.new { run }
          @thread.name = "vmpool-refill"
          # At exit, ask a refill in flight to stop (its progress callback says so), so that the
          # process does not wait for a guest to boot before it can end.
          at_exit { @stopping = true }
        end
      end

      # Stop the thread (tests), after the refill in flight gives up.
      def stop
        t = @lock.synchronize do
          @stopping = true
          @cond.signal
          @thread
        end
        t&.join
        @thread = nil
      end

      def running?
        @thread&.alive? || false
      end

      # Ask for a refill of +pool+ (or of all pools) soon. Cheap; never blocks on the library.
      def poke(pool = nil)
        return unless running?

        @lock.synchronize do
          @poked << (pool || :all)
          @cond.signal
        end
      end

      private

      def run
        loop do
          break if @stopping

          names = @lock.synchronize do
            @cond.wait(@lock, Portal.config.refill_interval) if @poked.empty?
            p = @poked.uniq
            @poked.clear
            p
          end
          names = Portal.store.pools.map { |pl| pl[:name] } if names.empty? || names.include?(:all)
          names.each do |name|
            break if @stopping

            t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
            r = @last[name] = Portal.store.refill(name) { |_ready, _target, _working| @stopping ? :stop : true }
            if r[:created].to_i + r[:removed].to_i > 0 || r[:template_built] || r[:errors].to_a.any?
              ms = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000).round
              Rails.logger.info("refill #{name}: #{r.inspect} in #{ms} ms")
            end
          rescue Vmpool::NotFound
            @last.delete(name)
          rescue StandardError => e
            Rails.logger.warn("refill #{name}: #{e.class}: #{e.message}")
          end
        rescue StandardError => e
          Rails.logger.warn("refill loop: #{e.class}: #{e.message}")
          sleep 1
        end
      end
    end
  end
end
