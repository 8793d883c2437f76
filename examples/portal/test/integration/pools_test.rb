# frozen_string_literal: true

require "test_helper"

# Getting desktops from the library's pools through the pages, and the admin's pool pages.
class PoolsTest < ActionDispatch::IntegrationTest
  setup do
    @alice = create_user
    @bob = create_user
    @admin = create_user("admin#{SecureRandom.hex(2)}", admin: true)
    @pools = []
  end

  teardown do
    @pools.each do |name|
      store.vms.select { |v| v[:pool] == name && !v[:owner].to_s.empty? }.each { |v| store.release(v[:uuid]) }
      store.delete_pool(name)
    rescue Vmpool::NotFound
      nil
    end
  end

  def make_pool(name: "p-#{SecureRandom.hex(3)}", **opts)
    @pools << name
    store.create_pool(name: name, image: image, vcpus: 1, ram_mib: 256, disk_gib: 1, max_vms: 3,
                      warmth: "disk", on_release: "destroy", **opts)
  end

  def acquire(pool)
    submit(:post, acquire_pool_path(pool))
    assert_response :redirect
    follow_redirect!
    response
  end

  test "the home page is a catalog: each system once, its sizes (pools) with a button to get a desktop" do
    p = make_pool(spares: 0)
    q = make_pool(spares: 0)
    log_in(@alice)
    get root_path
    # Other tests' pools may be in the store too: this image's card, once.
    card = "#pools article.os[data-image-uuid='#{image[:uuid]}']"
    assert_select card, 1
    assert_select card do
      assert_select "h2.os-name", text: "test-guest 1"
      assert_select "tr[data-pool]", 2
      [p, q].each do |pool|
        assert_select "tr[data-pool=?]", pool[:name] do
          assert_select "td", text: "1 vCPU · 256 MiB RAM · 1 GiB disk"
          assert_select "input.get-desktop[value=?]", "Get a desktop"
        end
      end
    end
  end

  test "get a desktop: a running VM of the pool, with a console ticket; again: the same VM" do
    p = make_pool(spares: 0)
    log_in(@alice)
    acquire(p[:name])
    uuid = path[%r{/desktops/(\h{8}-\h{4}-\h{4}-\h{4}-\h{12})\z}, 1]
    assert uuid, "not on a desktop page: #{path}"
    vm = store.vm(uuid)
    assert_equal @alice.owner, vm[:owner]
    assert_equal p[:name], vm[:pool]
    assert_equal "running", vm[:state]
    assert_select "#acquire-info", /created/
    page = css_select("#desktop").first
    sess = UserSession.find_by!(user: @alice)
    assert_equal "unix", ConsoleToken.resolve(page["data-token"], browser_session: sess)[:kind],
                 "the ticket acquire returned does not reach the VM"

    acquire(p[:name])
    assert_equal desktop_path(uuid), path, "a second acquire gave another VM"
    assert_select "#acquire-info", /redirect/
    get root_path
    assert_select "#pools tr[data-pool=?] input.get-desktop[value=?]", p[:name], "Open my desktop"
    assert_equal 1, store.vms(owner: @alice.owner).size

    log_out
    log_in(@bob)
    acquire(p[:name])
    refute_equal desktop_path(uuid), path, "bob got alice's VM"
    assert_equal @bob.owner, store.vm(path.split("/").last)[:owner]
  end

  test "a new desktop is made for its user: their login name, their browser's language, keyboard and time zone" do
    p = make_pool(spares: 0)
    carol = create_user("Carol.Smith#{SecureRandom.hex(2)}")
    log_in(carol)
    get root_path
    assert_select "#pools form[data-pool=?] input[type=hidden][name=tz]", p[:name]
    submit(:post, acquire_pool_path(p[:name]), params: { tz: "Europe/Berlin" },
                                               headers: { "Accept-Language" => "de-CH,de;q=0.9,en;q=0.5" })
    assert_response :redirect
    uuid = response.location[%r{/desktops/(\h{8}-\h{4}-\h{4}-\h{4}-\h{12})\z}, 1]
    user = store.vm(uuid)[:user]
    assert_equal({ login: carol.username.downcase.delete("."), full_name: carol.username, locale: "de_CH.UTF-8",
                   keyboard: "ch", timezone: "Europe/Berlin" }, user)

    # What a browser may send that the library would refuse is left out, not a failed hand-out.
    log_out
    log_in(@bob)
    submit(:post, acquire_pool_path(p[:name]), params: { tz: "../../etc/shadow" },
                                               headers: { "Accept-Language" => "\u0000;q=1" })
    uuid = response.location[%r{/desktops/(\h{8}-\h{4}-\h{4}-\h{4}-\h{12})\z}, 1]
    assert uuid, "no desktop: #{response.location} #{flash[:alert]}"
    assert_equal({ login: @bob.username, full_name: @bob.username }, store.vm(uuid)[:user].compact)
  end

  test "a spare is handed out when there is one" do
    p = make_pool(spares: 1)
    r = store.refill(p[:name])
    assert_equal 1, r[:spares], r.inspect
    spare = store.vms.find { |v| v[:pool] == p[:name] }
    assert_equal "", spare[:owner]
    log_in(@alice)
    acquire(p[:name])
    assert_equal desktop_path(spare[:uuid]), path
    assert_select "#acquire-info", /spare/
  end

  test "a full pool says so" do
    p = make_pool(spares: 0, max_vms: 1)
    log_in(@alice)
    acquire(p[:name])
    log_out
    log_in(@bob)
    submit(:post, acquire_pool_path(p[:name]))
    assert_redirected_to root_path
    follow_redirect!
    assert_select ".flash.alert", /No desktop is free/
    assert_empty store.vms(owner: @bob.owner)
  end

  test "an unknown pool is a 404" do
    log_in(@alice)
    submit(:post, acquire_pool_path("no-such-pool"))
    assert_response :not_found
  end

  test "reset gives a fresh VM from the pool; delete gives the VM back" do
    p = make_pool(spares: 0, on_release: "reset")
    log_in(@alice)
    acquire(p[:name])
    first = path.split("/").last
    submit(:post, reset_desktop_path(first), from: desktop_path(first))
    assert_response :redirect
    follow_redirect!
    second = path.split("/").last
    refute_equal first, second
    assert_raises(Vmpool::NotFound) { store.vm(first) }
    assert_equal @alice.owner, store.vm(second)[:owner]

    submit(:delete, desktop_path(second), from: desktop_path(second))
    assert_redirected_to root_path
    assert_raises(Vmpool::NotFound) { store.vm(second) }
    assert_equal 0, store.pool(p[:name]).dig(:status, :owned)
  end

  test "logging out keeps the desktop of a keep pool and refreshes that of a refresh pool" do
    kept = make_pool(spares: 0, on_logout: "keep")
    fresh = make_pool(spares: 0, on_logout: "refresh")
    assert_equal %w[keep refresh], [kept[:on_logout], fresh[:on_logout]]
    log_in(@alice)
    acquire(kept[:name])
    same = path.split("/").last
    acquire(fresh[:name])
    gone = path.split("/").last
    log_out
    assert_redirected_to login_path
    assert_equal @alice.owner, store.vm(same)[:owner], "a keep pool's desktop stays hers"
    assert_raises(Vmpool::NotFound) { store.vm(gone) }
    log_in(@alice)
    acquire(kept[:name])
    assert_equal same, path.split("/").last
    acquire(fresh[:name])
    refute_equal gone, path.split("/").last
  end

  test "a desktop of a pool with a session limit says when its session ends, and what then becomes of it" do
    limited = make_pool(spares: 0, on_logout: "refresh", max_session_s: 3600)
    assert_equal 3600, limited[:max_session_s]
    log_in(@alice)
    t0 = Time.now.to_i
    acquire(limited[:name])
    vm = store.vm(path.split("/").last)
    view = css_select("#desktop").first
    ends = Integer(view["data-session-ends"])
    assert_in_delta t0 + 3600, ends, 5
    assert_equal Time.iso8601(vm[:session_ends_at]).to_i, ends
    assert_equal "refresh", view["data-session-end-policy"]
    assert_equal Portal.config.session_end_warning.to_s, view["data-session-warning"]
    assert_select "#session-ending[hidden]"
    assert_select "script[src='/js/session-end.js']"
    # A pool without a limit: no end, no notice.
    plain = make_pool(spares: 0)
    acquire(plain[:name])
    assert_nil css_select("#desktop").first["data-session-ends"]
    assert_select "#session-ending", count: 0
  end

  test "an admin creates, edits, refills and deletes a pool" do
    log_in(@admin)
    get new_admin_pool_path
    assert_select "select[name='pool[image_uuid]'] option[value=?]", image[:uuid]
    name = "adm-#{SecureRandom.hex(3)}"
    @pools << name
    submit(:post, admin_pools_path, from: new_admin_pool_path,
                                    params: { pool: { name: name, image_uuid: image[:uuid], vcpus: "1", ram_mib: "256", disk_gib: "1",
                                                      spares: "1", max_vms: "4", max_per_owner: "1", warmth: "disk",
                                                      on_release: "reset", ready_marker: "VMPOOL-TEST-GUEST: ready",
                                                      ready_delay_s: "", ready_timeout_s: "", accel: "" } })
    assert_redirected_to edit_admin_pool_path(name)
    p = store.pool(name)
    assert_equal [1, 256, 1, 1, 4, "disk", "reset", "VMPOOL-TEST-GUEST: ready"],
                 p.values_at(:vcpus, :ram_mib, :disk_gib, :spares, :max_vms, :warmth, :on_release, :ready_marker)

    submit(:patch, admin_pool_path(name), from: edit_admin_pool_path(name),
                                          params: { pool: { image_uuid: image[:uuid], vcpus: "1", ram_mib: "256", disk_gib: "1", spares: "2",
                                                            max_vms: "5", max_per_owner: "1", warmth: "disk", on_release: "reset",
                                                            ready_marker: "", ready_delay_s: "0", ready_timeout_s: p[:ready_timeout_s].to_s, accel: "" } })
    assert_redirected_to edit_admin_pool_path(name)
    p = store.pool(name)
    assert_equal [2, 5, nil], p.values_at(:spares, :max_vms, :ready_marker)

    # "Refill now" only pokes the refill thread (a refill boots guests: not in a Puma thread)
    submit(:post, refill_admin_pool_path(name), from: edit_admin_pool_path(name))
    follow_redirect!
    assert_select ".flash.alert", /refill thread does not run/
    Portal::Refiller.start
    begin
      submit(:post, refill_admin_pool_path(name), from: edit_admin_pool_path(name))
      assert_redirected_to edit_admin_pool_path(name)
      follow_redirect!
      assert_select ".flash.notice", /Refill of #{name} requested/
      deadline = Time.now + 60
      sleep 0.2 until store.pool(name)[:status].values_at(:spares_cold, :spares_ready, :spares_warming).map(&:to_i).sum >= 2 || Time.now > deadline
    ensure
      Portal::Refiller.stop
    end
    assert_equal 2, store.pool(name)[:status].values_at(:spares_cold, :spares_ready, :spares_warming).map(&:to_i).sum
    get admin_pool_path(name), headers: { "Accept" => "application/json" }
    assert_equal 2, JSON.parse(response.body)["spares"]

    # held by a user: refused, and said so
    store.acquire(name, owner: @alice.owner)
    submit(:delete, admin_pool_path(name), from: admin_pools_path)
    follow_redirect!
    assert_select ".flash.alert", /IN_USE/
    store.vms(owner: @alice.owner).each { |v| store.release(v[:uuid]) }
    submit(:delete, admin_pool_path(name), from: admin_pools_path)
    assert_raises(Vmpool::NotFound) { store.pool(name) }
    assert_empty store.vms.select { |v| v[:pool] == name }
  end

  test "a dotted pool name is one pool: its page, edit and delete reach it, not the name before the dot" do
    plain = make_pool(spares: 0)[:name]
    dotted = make_pool(spares: 0, name: "#{plain}.11")[:name]
    log_in(@admin)
    get edit_admin_pool_path(dotted)
    assert_response :success
    assert_select "#pool[data-pool=?]", dotted
    get admin_pool_path(dotted), headers: { "Accept" => "application/json" }
    assert_equal dotted, JSON.parse(response.body)["name"]
    submit(:patch, admin_pool_path(dotted), from: edit_admin_pool_path(dotted),
                                            params: { pool: { image_uuid: image[:uuid], vcpus: "1", ram_mib: "256", disk_gib: "1", spares: "0",
                                                              max_vms: "2", max_per_owner: "1", warmth: "disk", on_release: "destroy" } })
    assert_redirected_to edit_admin_pool_path(dotted)
    assert_equal 2, store.pool(dotted)[:max_vms]
    assert_equal 3, store.pool(plain)[:max_vms]
    submit(:delete, admin_pool_path(dotted), from: admin_pools_path)
    assert_redirected_to admin_pools_path
    assert_raises(Vmpool::NotFound) { store.pool(dotted) }
    assert_equal plain, store.pool(plain)[:name]
  end

  test "bad pool input comes back with the library's message" do
    log_in(@admin)
    submit(:post, admin_pools_path, from: new_admin_pool_path,
                                    params: { pool: { name: "bad/name", image_uuid: image[:uuid], vcpus: "1", ram_mib: "256", max_vms: "2", spares: "0",
                                                      max_per_owner: "1", warmth: "disk", on_release: "destroy" } })
    assert_response :unprocessable_entity
    assert_select ".flash.alert", /INVALID_ARGUMENT/
  end

  test "users who are not admins cannot create pools" do
    log_in(@alice)
    submit(:post, admin_pools_path, params: { pool: { name: "sneaky", image_uuid: image[:uuid], vcpus: "1", ram_mib: "256", max_vms: "2" } })
    assert_response :not_found
    assert_raises(Vmpool::NotFound) { store.pool("sneaky") }
  end
end
