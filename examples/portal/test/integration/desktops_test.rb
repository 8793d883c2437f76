# frozen_string_literal: true

require "test_helper"
require "minitest/mock"

# A user's desktop pages, against real VMs; and that nobody else can see, control or open them.
class DesktopsTest < ActionDispatch::IntegrationTest
  setup do
    @alice = create_user("alice#{SecureRandom.hex(2)}")
    @bob = create_user("bob#{SecureRandom.hex(2)}")
    @admin = create_user("root#{SecureRandom.hex(2)}", admin: true)
    @vm = make_vm(@alice, start: true)
  end

  teardown { cleanup_vm(@vm[:uuid]) }

  test "the owner gets the desktop page with a console ticket, a .vv file, a thumbnail and the status" do
    log_in(@alice)
    get desktop_path(@vm[:uuid])
    assert_response :success
    assert_equal "no-store", response.headers["Cache-Control"]
    page = css_select("#desktop").first
    assert page["data-token"].present?
    assert page["data-password"].present?
    assert_equal "ws://www.example.com:#{Portal.config.console_port}/", page["data-ws-url"]
    assert_select "#fullscreen"
    assert_select "#ctrl-alt-del"
    assert_select "a#download-vv[href=?]", vv_desktop_path(@vm[:uuid])
    assert_match "connect-src 'self' ws://www.example.com:#{Portal.config.console_port}", response.headers["Content-Security-Policy"]

    # the token in the page resolves for this session (what the proxy asks), to this VM's socket
    sess = UserSession.find_by!(user: @alice)
    r = ConsoleToken.resolve(page["data-token"], browser_session: sess)
    assert_equal store.vm_status(@vm[:uuid]).dig(:run, :spice, :path), r[:path]

    post console_desktop_path(@vm[:uuid]), headers: { "X-CSRF-Token" => page_token, "Accept" => "application/json" }
    assert_response :success
    t = JSON.parse(response.body)
    refute_equal page["data-token"], t["token"]
    assert_operator t["expires_at_unix"], :<=, Time.now.to_i + Portal.config.console_ttl + 1

    get vv_desktop_path(@vm[:uuid])
    assert_response :success
    assert_match(/\A\[virt-viewer\]\ntype=spice\n/, response.body)
    assert_match %r{unix-path=.*/spice\.sock}, response.body
    assert_match(/^password=\h{32}$/, response.body)
    assert_match(/attachment/, response.headers["Content-Disposition"])

    get thumbnail_desktop_path(@vm[:uuid])
    assert_response :success
    assert_equal "image/png", response.media_type
    assert_equal "\x89PNG".b, response.body.b[0, 4]

    get status_desktop_path(@vm[:uuid])
    assert_equal "running", JSON.parse(response.body)["state"]

    get root_path
    assert_select "#my-desktops li[data-uuid=?]", @vm[:uuid]
    assert_select "#my-desktops img[src=?]", thumbnail_desktop_path(@vm[:uuid])
  end

  test "another user can neither see, control nor open the console of the desktop" do
    log_in(@bob)
    get root_path
    assert_select "li[data-uuid=?]", @vm[:uuid], count: 0
    refute_includes response.body, @vm[:uuid]

    [[:get, desktop_path(@vm[:uuid])], [:get, vv_desktop_path(@vm[:uuid])], [:get, thumbnail_desktop_path(@vm[:uuid])],
     [:get, status_desktop_path(@vm[:uuid])]].each do |verb, path|
      send(verb, path)
      assert_response :not_found, "#{verb} #{path}"
      refute_includes response.body, "password", path
    end
    tokens = ConsoleToken.count
    [console_desktop_path(@vm[:uuid]), stop_desktop_path(@vm[:uuid]), start_desktop_path(@vm[:uuid]),
     reset_desktop_path(@vm[:uuid])].each do |path|
      submit(:post, path)
      assert_response :not_found, "POST #{path}"
    end
    submit(:delete, desktop_path(@vm[:uuid]))
    assert_response :not_found
    assert_equal tokens, ConsoleToken.count, "a console token was issued to another user"
    assert_equal "running", store.vm(@vm[:uuid])[:state], "the VM was touched"
    assert_equal @alice.owner, store.vm(@vm[:uuid])[:owner]
  end

  test "admins manage any VM in the admin pages, but do not get other users' consoles" do
    log_in(@admin)
    get desktop_path(@vm[:uuid])
    assert_response :not_found
    get admin_vms_path
    assert_select "tr[data-uuid=?]", @vm[:uuid]
    assert_select "tr[data-uuid=?] td", @vm[:uuid], text: @alice.username
    get admin_vms_path(format: :json)
    row = JSON.parse(response.body).find { |v| v["uuid"] == @vm[:uuid] }
    assert_equal "running", row["state"]
    assert_operator row.dig("resources", "rss_mib"), :>, 10
  end

  test "a second page, a .vv and a reconnect reuse the VM's still-valid SPICE ticket" do
    log_in(@alice)
    get desktop_path(@vm[:uuid])
    first = css_select("#desktop").first
    get desktop_path(@vm[:uuid])
    second = css_select("#desktop").first
    csrf = page_token
    refute_equal first["data-token"], second["data-token"], "tokens are never handed out twice"
    assert_equal first["data-password"], second["data-password"], "a second page changed the SPICE password"
    get vv_desktop_path(@vm[:uuid])
    assert_match(/^password=#{first['data-password']}$/, response.body)
    assert_match %r{^unix-path=#{Regexp.escape(store.vm_status(@vm[:uuid]).dig(:run, :spice, :path))}$}, response.body
    post console_desktop_path(@vm[:uuid]), headers: { "X-CSRF-Token" => csrf, "Accept" => "application/json" }
    assert_equal first["data-password"], JSON.parse(response.body)["password"]
    sess = UserSession.find_by!(user: @alice)
    assert_equal "unix", ConsoleToken.resolve(second["data-token"], browser_session: sess)[:kind]

    # a page whose connection failed asks for a new password (fresh=1); from then on that one,
    # the VM's current password, is what every page gets (never the replaced one)
    post console_desktop_path(@vm[:uuid], fresh: 1), headers: { "X-CSRF-Token" => csrf, "Accept" => "application/json" }
    replaced = JSON.parse(response.body)["password"]
    refute_equal first["data-password"], replaced
    get desktop_path(@vm[:uuid])
    assert_equal replaced, css_select("#desktop").first["data-password"]

    # a ticket about to expire is not handed out again
    travel(Portal.config.console_ttl - ConsoleToken::REUSE_MIN_LEFT + 1) do
      get desktop_path(@vm[:uuid])
      refute_equal first["data-password"], css_select("#desktop").first["data-password"]
    end

    # nor one of an earlier QEMU of the VM
    get desktop_path(@vm[:uuid])
    before = css_select("#desktop").first["data-password"]
    store.kill_vm(@vm[:uuid])
    store.start_vm(@vm[:uuid])
    get desktop_path(@vm[:uuid])
    refute_equal before, css_select("#desktop").first["data-password"], "a restarted VM got its old QEMU's password"
  end

  test "a ticket another session of the owner replaced is not handed out again" do
    log_in(@alice)
    get desktop_path(@vm[:uuid])
    mine = css_select("#desktop").first["data-password"]
    other = open_session
    other.get login_path
    other.post login_path, params: { username: @alice.username, password: PASSWORD,
                                     authenticity_token: other.css_select('meta[name="csrf-token"]').first["content"] }
    other.get desktop_path(@vm[:uuid])
    theirs = other.css_select("#desktop").first["data-password"]
    refute_equal mine, theirs, "another session got this session's password (it is kept in this session only)"
    get desktop_path(@vm[:uuid])
    again = css_select("#desktop").first["data-password"]
    refute_equal mine, again, "the replaced password was handed out again"
    refute_equal theirs, again
  end

  test "no table keeps a SPICE password: not after the page, a .vv, a reconnect, nor a 'Get a desktop'" do
    log_in(@alice)
    get desktop_path(@vm[:uuid])
    first = css_select("#desktop").first["data-password"]
    csrf = page_token
    get vv_desktop_path(@vm[:uuid])
    assert_match(/^password=#{first}$/, response.body)
    post console_desktop_path(@vm[:uuid], fresh: 1), headers: { "X-CSRF-Token" => csrf, "Accept" => "application/json" }
    fresh = JSON.parse(response.body)["password"]
    refute_equal first, fresh

    pool = "nopw-#{SecureRandom.hex(3)}"
    store.create_pool(name: pool, image: image, vcpus: 1, ram_mib: 256, disk_gib: 1, max_vms: 2, spares: 0,
                      warmth: "disk", on_release: "destroy")
    submit(:post, acquire_pool_path(pool))
    follow_redirect!
    acquired = css_select("#desktop").first["data-password"]
    assert_match(/\A\h{32}\z/, acquired)

    [first, fresh, acquired].each do |pw|
      assert_empty rows_holding(pw), "a SPICE password is kept in the database"
    end
    assert ConsoleToken.where.not(spice_digest: nil).exists?, "no digest kept: the reuse cannot work"
  ensure
    if pool
      store.vms.select { |v| v[:pool] == pool && !v[:owner].to_s.empty? }.each { |v| store.release(v[:uuid]) }
      store.delete_pool(pool) rescue nil
    end
  end

  test "library errors are HTTP statuses: 409 for a state conflict, 503 with Retry-After, 502 for QEMU" do
    log_in(@alice)
    get desktop_path(@vm[:uuid])
    csrf = page_token
    busy = Vmpool::Busy.new("the VM is locked", code: 14, name: "BUSY")
    Desktop.stub(:console, ->(*) { raise busy }) do
      ConsoleToken.where(vm_uuid: @vm[:uuid]).delete_all # no ticket to reuse: the library is asked
      post console_desktop_path(@vm[:uuid]), headers: { "X-CSRF-Token" => csrf, "Accept" => "application/json" }
      assert_response :service_unavailable
      assert_equal "5", response.headers["Retry-After"]
      assert_equal({ "error" => "the VM is locked", "code" => "BUSY" }, JSON.parse(response.body))
    end
    Desktop.stub(:console, ->(*) { raise Vmpool::Hypervisor.new("QMP went away", code: 35, name: "HYPERVISOR") }) do
      get desktop_path(@vm[:uuid])
      assert_response :bad_gateway
      assert_select ".flash.alert", /HYPERVISOR: QMP went away/
    end
    Desktop.stub(:screenshot_png, ->(*) { raise Vmpool::InvalidState.new("stopping", code: 16, name: "INVALID_STATE") }) do
      get thumbnail_desktop_path(@vm[:uuid])
      assert_response :conflict
    end
  end

  test "bad and unknown uuids are plain 404s" do
    log_in(@alice)
    get desktop_path("not-a-uuid")
    assert_response :not_found
    get desktop_path(SecureRandom.uuid)
    assert_response :not_found
  end

  test "stop, start and delete own desktop" do
    wait_for_serial(@vm[:uuid], "VMPOOL-TEST-GUEST: ready")
    log_in(@alice)
    submit(:post, stop_desktop_path(@vm[:uuid]), from: desktop_path(@vm[:uuid]))
    assert_redirected_to desktop_path(@vm[:uuid])
    assert_equal "stopped", store.vm(@vm[:uuid])[:state]
    assert_match "powering off", store.vm_log(@vm[:uuid]), "the guest was not shut down through ACPI"

    get desktop_path(@vm[:uuid])
    assert_select "#desktop-off"
    assert_nil css_select("#desktop").first["data-token"]
    submit(:post, start_desktop_path(@vm[:uuid]), from: desktop_path(@vm[:uuid]))
    assert_equal "running", store.vm(@vm[:uuid])[:state]

    submit(:delete, desktop_path(@vm[:uuid]), from: desktop_path(@vm[:uuid]))
    assert_redirected_to root_path
    assert_raises(Vmpool::NotFound) { store.vm(@vm[:uuid]) }
  end

  test "an asleep desktop says so to its owner, and Wake brings it back where it was" do
    wait_for_serial(@vm[:uuid], "VMPOOL-TEST-GUEST: ready")
    assert_equal "suspended", store.suspend_vm(@vm[:uuid], reason: "idle")[:state]
    log_in(@alice)
    get desktop_path(@vm[:uuid])
    assert_select "#desktop-asleep", text: /asleep since .* \(idle\)/
    wake = css_select("#start").first
    assert_equal "Wake", wake["value"] || wake.text.strip
    assert_nil css_select("#desktop").first["data-token"]
    submit(:post, start_desktop_path(@vm[:uuid]), from: desktop_path(@vm[:uuid]))
    assert_equal "running", store.vm(@vm[:uuid])[:state]
    assert_nil store.vm(@vm[:uuid])[:suspended]
    assert_equal 1, store.vm_log(@vm[:uuid]).scan("VMPOOL-TEST-GUEST: booted").size, "it booted again"
  end

  test "a user with exactly one desktop lands on it at login" do
    log_in(@alice)
    assert_redirected_to desktop_path(@vm[:uuid])
    log_in(@bob)
    assert_redirected_to root_path
  end
end
