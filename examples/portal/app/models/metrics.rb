# frozen_string_literal: true

# The store's numbers in Prometheus' text format (version 0.0.4): each running VM's counters
# from the library's vm_stats (CPU seconds, disk bytes and requests: counters a scraper rate()s;
# memory: gauges), every VM's state, and each pool's spares and desktops. Names follow
# Prometheus' conventions and, where they overlap, libvirt-exporter's (a uuid label per VM,
# owner and pool beside it).
class Metrics
  Family = Struct.new(:name, :type, :help, :samples)

  def initialize(store)
    @store = store
    @families = {}
  end

  def exposition
    vms
    pools
    @families.values.map { |f| family_text(f) }.join
  end

  private

  def add(name, type, help, labels, value)
    return if value.nil?

    f = (@families[name] ||= Family.new(name, type, help, []))
    f.samples << [labels, value]
  end

  def vms
    @store.vms.each do |vm|
      base = { uuid: vm[:uuid], alias: vm[:alias], owner: vm[:owner], pool: vm[:pool].to_s }
      add("vmpool_vm_state", "gauge", "1 for the state the VM is in.", base.merge(state: vm[:state]), 1)
      add("vmpool_vm_vcpus", "gauge", "Virtual CPUs.", base, vm[:vcpus])
      add("vmpool_vm_ram_bytes", "gauge", "RAM given to the guest.", base, vm[:ram_mib] * 1024 * 1024)
      next unless %w[running paused].include?(vm[:state])

      vm_stats(base, vm[:uuid])
    end
  end

  def vm_stats(base, uuid)
    s = begin
      @store.vm_stats(uuid)
    rescue Vmpool::NotFound
      return # deleted since the list
    end
    return if s[:cpu_time_us].nil?

    add("vmpool_vm_cpu_seconds_total", "counter", "CPU time QEMU used (all its threads), from its start.", base,
        s[:cpu_time_us] / 1e6)
    add("vmpool_vm_uptime_seconds", "gauge", "Seconds since QEMU started.", base, s[:uptime_s])
    mem = s[:memory] || {}
    add("vmpool_vm_memory_rss_bytes", "gauge", "QEMU's resident memory.", base, mem[:rss_bytes])
    add("vmpool_vm_memory_pss_bytes", "gauge", "QEMU's proportional share of memory (shared pages counted once).", base,
        mem[:pss_bytes])
    add("vmpool_vm_zone_memory_bytes", "gauge", "Memory charged to the VM's zone.", base, mem[:zone_bytes])
    add("vmpool_vm_zone_memory_limit_bytes", "gauge", "The VM zone's memory limit.", base, mem[:zone_limit_bytes])
    (s[:disks] || []).each do |d|
      l = base.merge(drive: d[:id])
      add("vmpool_vm_disk_read_bytes_total", "counter", "Bytes the guest read from a drive.", l, d[:rd_bytes])
      add("vmpool_vm_disk_written_bytes_total", "counter", "Bytes the guest wrote to a drive.", l, d[:wr_bytes])
      add("vmpool_vm_disk_read_requests_total", "counter", "Read requests to a drive.", l, d[:rd_operations])
      add("vmpool_vm_disk_write_requests_total", "counter", "Write requests to a drive.", l, d[:wr_operations])
    end
  end

  def pools
    @store.pools.each do |p|
      st = p[:status] || {}
      l = { pool: p[:name] }
      add("vmpool_pool_spares", "gauge", "Spares by warmth: ready, warming, cold.", l.merge(state: "ready"), st[:spares_ready])
      add("vmpool_pool_spares", "gauge", "Spares by warmth: ready, warming, cold.", l.merge(state: "warming"), st[:spares_warming])
      add("vmpool_pool_spares", "gauge", "Spares by warmth: ready, warming, cold.", l.merge(state: "cold"), st[:spares_cold])
      add("vmpool_pool_desktops", "gauge", "VMs handed out to owners.", l, st[:owned])
      add("vmpool_pool_vms", "gauge", "Every VM of the pool.", l, st[:total])
      add("vmpool_pool_customization_failures_total", "counter", "Clones destroyed because their customization failed.",
          l, st[:customization_failures])
    end
  end

  def family_text(f)
    head = "# HELP #{f.name} #{f.help}\n# TYPE #{f.name} #{f.type}\n"
    head + f.samples.map { |labels, v| "#{f.name}{#{label_text(labels)}} #{number(v)}\n" }.join
  end

  # Label values escaped as the format says: backslash, double quote, line feed.
  def label_text(labels)
    labels.map { |k, v| %(#{k}="#{v.to_s.gsub('\\', '\\\\\\\\').gsub('"', '\\"').gsub("\n", '\\n')}") }.join(",")
  end

  def number(v)
    v.is_a?(Float) ? format("%.6f", v) : v.to_s
  end
end
