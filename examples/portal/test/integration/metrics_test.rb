# frozen_string_literal: true

require "test_helper"
require "open3"

# /metrics: Prometheus text for a scraper with the bearer token or an admin, refused to anyone
# else; it parses with Prometheus' own parser (the prometheus_client Python package) and its
# numbers are the library's vm_stats.
class MetricsTest < ActionDispatch::IntegrationTest
  TOKEN = "m" * 40

  setup { @token_was = Portal.config.metrics_token }
  teardown { Portal.config.metrics_token = @token_was }

  # [name, labels, value, type] of every sample, as prometheus_client reads the text (Debian's
  # python3-prometheus-client, for Debian's own Python).
  def parse(text)
    script = <<~PY
      import json, sys
      from prometheus_client.parser import text_string_to_metric_families
      out = []
      for fam in text_string_to_metric_families(sys.stdin.read()):
          for s in fam.samples:
              out.append([s.name, s.labels, s.value, fam.type])
      print(json.dumps(out))
    PY
    stdout, stderr, status = Open3.capture3("/usr/bin/python3", "-c", script, stdin_data: text)
    assert status.success?, "prometheus_client refused the exposition: #{stderr}\n#{text}"
    JSON.parse(stdout)
  end

  test "anonymous, a wrong token and a user who is no admin get nothing" do
    Portal.config.metrics_token = TOKEN
    get "/metrics"
    assert_response :unauthorized
    assert_match(/Bearer/, response.headers["WWW-Authenticate"])
    get "/metrics", headers: { "Authorization" => "Bearer #{'x' * 40}" }
    assert_response :unauthorized
    get "/metrics", headers: { "Authorization" => "Basic #{TOKEN}" }
    assert_response :unauthorized
    log_in(create_user)
    get "/metrics"
    assert_response :not_found
    # A token too short to be one is never accepted, even if it matches.
    Portal.config.metrics_token = "short"
    log_out
    get "/metrics", headers: { "Authorization" => "Bearer short" }
    assert_response :unauthorized
  end

  test "a scraper with the token and an admin read every VM's numbers, which are vm_stats'" do
    Portal.config.metrics_token = TOKEN
    u = create_user
    vm = make_vm(u, start: true)
    wait_for_serial(vm[:uuid], "VMPOOL-TEST-GUEST: ready")
    before = store.vm_stats(vm[:uuid])
    get "/metrics", headers: { "Authorization" => "Bearer #{TOKEN}" }
    assert_response :success
    assert_match %r{\Atext/plain; version=0\.0\.4}, response.headers["Content-Type"]
    after = store.vm_stats(vm[:uuid])
    samples = parse(response.body)
    mine = ->(name, extra = {}) { samples.find { |n, l, _| n == name && l["uuid"] == vm[:uuid] && extra.all? { |k, v| l[k] == v } } }

    cpu = mine.call("vmpool_vm_cpu_seconds_total")
    assert cpu, response.body
    assert_equal "counter", cpu[3]
    assert_equal [u.owner, vm[:alias]], cpu[1].values_at("owner", "alias")
    assert_operator cpu[2], :>=, before[:cpu_time_us] / 1e6
    assert_operator cpu[2], :<=, after[:cpu_time_us] / 1e6
    read = mine.call("vmpool_vm_disk_read_bytes_total", "drive" => "disk0")
    d0 = ->(s) { s[:disks].find { |d| d[:id] == "disk0" }[:rd_bytes] }
    assert read && read[2].between?(d0.call(before), d0.call(after)), response.body
    pss = mine.call("vmpool_vm_memory_pss_bytes")
    assert pss && pss[2].positive?
    assert_equal 1.0, mine.call("vmpool_vm_state", "state" => "running")&.at(2)

    # An admin's browser reads the same.
    log_in(create_user(admin: true))
    get "/metrics"
    assert_response :success
    assert mine.call("vmpool_vm_cpu_seconds_total")
    assert parse(response.body).any? { |n, l, _| n == "vmpool_vm_cpu_seconds_total" && l["uuid"] == vm[:uuid] }
  ensure
    store.kill_vm(vm[:uuid]) if vm
  end
end
